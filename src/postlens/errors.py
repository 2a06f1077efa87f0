"""Errors postlens reports to its users, and the exit codes that go with them."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # an unexpected failure (a bug)
EXIT_INPUT = 2  # bad input: a missing, unreadable, binary or unknown-compression source
EXIT_USAGE = 2  # bad options
EXIT_NO_MATCH = 3  # trace: nothing in the logs matched the query
EXIT_DATABASE = 4  # the history database is missing, damaged, or from a newer postlens
EXIT_LISTED = 5  # security --check-rbl: one of our addresses is on a blocklist
EXIT_MAIL = 6  # report --mail-to: the SMTP server was unreachable or refused the message


class PostlensError(Exception):
    """A problem to show as one clear line, with its exit code."""

    exit_code = EXIT_FAILURE


class InputError(PostlensError):
    """A source that cannot be read; the other sources are still processed."""

    exit_code = EXIT_INPUT

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}" if source else problem)
        self.source = source
        self.problem = problem

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str]]:
        # worker processes hand these back to the parent (postlens.parallel)
        return (InputError, (self.source, self.problem))


class UsageError(PostlensError):
    exit_code = EXIT_USAGE
