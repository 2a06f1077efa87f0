"""Builds postlens. The modules every log line passes through are compiled to C with mypyc.

Set POSTLENS_PURE=1 to install plain Python (for editing the code in place with
``pip install -e .``); without a C compiler or Python's headers the build falls back to
plain Python by itself. Both give the same output; the compiled one is faster.
"""

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup

# the per-line pipeline: sources -> lines -> events -> messages -> analyses
COMPILED = [
    "addresses.py",
    "lines.py",
    "events/__init__.py",
    "events/model.py",
    "events/postfix.py",
    "events/dovecot.py",
    "events/companions.py",
    "messages.py",
    "analyses/tally.py",
    "analyses/normalize.py",
    "analyses/report.py",
    "analyses/pflogsumm.py",
    "analyses/summaries.py",
    "pipeline.py",
]


def _can_compile() -> bool:
    if os.environ.get("POSTLENS_PURE", "") not in ("", "0"):
        return False
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if shutil.which(compiler) and headers.exists():
        return True
    print("postlens: no C compiler or Python headers: installing plain Python", file=sys.stderr)
    return False


def _extensions() -> list:
    if not _can_compile():
        return []
    from mypyc.build import mypycify

    # the commonest line shapes taken apart in C (each function falls back to its Python twin)
    fastparse = Extension("postlens._fastparse", ["src/postlens/_fastparse.c"], extra_compile_args=["-O2"])
    return [*mypycify([f"src/postlens/{m}" for m in COMPILED], opt_level="3"), fastparse]


setup(ext_modules=_extensions())
