from tests.browser import browser, page, screenshot  # noqa: F401  (fixtures and a helper for these tests)
