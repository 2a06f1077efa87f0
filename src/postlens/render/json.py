"""JSON: the documented, stable form of the report (docs/json.md)."""

from __future__ import annotations

import json
from typing import Any


def render_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
