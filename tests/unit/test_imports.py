"""Every command starts without loading the modules only other commands need."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import postlens

LOADED = "import json, sys, postlens.cli; print(json.dumps(sorted(m for m in sys.modules if m.startswith('postlens'))))"


def test_the_command_line_loads_no_other_commands_modules() -> None:
    out = subprocess.run([sys.executable, "-c", LOADED], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert "postlens.pipeline" in loaded
    for heavy in ("postlens.history", "postlens.rollup", "postlens.mail", "postlens.watch", "postlens.anonymize",
                  "postlens.queue", "postlens.analyses.reasons", "postlens.web.app"):  # fmt: skip
        assert heavy not in loaded, heavy


def test_library_functions_stay_functions_when_their_modules_load() -> None:
    for name in ("anonymize", "export", "queue", "trace", "watch"):
        module = importlib.import_module(f"postlens.{name}")
        assert getattr(postlens, name) is not module and callable(getattr(postlens, name))
    assert postlens.CHECKS and postlens.TRACE_STATUSES and postlens.SecurityOptions().brute_force
