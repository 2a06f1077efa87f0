"""postlens anonymize on a real Postfix's log: the real pflogsumm and postlens count the same
before and after, and none of the lab's addresses, logins or Message-IDs is left."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import postfixlab

import postlens


def _anonymise(lab: postfixlab.LabResult, tmp_path: Path) -> Path:
    out = tmp_path / "anonymised.log"
    done = subprocess.run(
        [sys.executable, "-m", "postlens", "anonymize", "--key", str(tmp_path / "key"), "--new-key",
         "-o", str(out), str(lab.log_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def _auth(result: dict[str, Any]) -> dict[str, Any]:
    """The login counts, without the names and addresses they are counted by."""
    counts = {}
    for side in ("failures", "successes"):
        got = result["auth"][side]
        counts[side] = (got["total"], sorted(got["by_username"].values()), sorted(got["by_ip"].values()))
    return counts


def test_pflogsumm_and_postlens_count_the_same(lab_small: postfixlab.LabResult, tmp_path: Path) -> None:
    out = _anonymise(lab_small, tmp_path)
    assert postfixlab.run_pflogsumm(out) == postfixlab.run_pflogsumm(lab_small.log_path)
    before, _ = postlens.report([str(lab_small.log_path)])
    after, _ = postlens.report([str(out)])
    assert after["totals"] == before["totals"]
    assert after["pflogsumm"] == before["pflogsumm"]
    assert after["messages"] == before["messages"]  # hops into the filter, notices: still linked
    assert _auth(after) == _auth(before)


def test_nothing_of_the_lab_s_mail_is_left(lab_small: postfixlab.LabResult, tmp_path: Path) -> None:
    text = _anonymise(lab_small, tmp_path).read_text()
    log = lab_small.log_path.read_text()
    values = set(re.findall(r"(?:from|to|orig_to)=<([^<>]+)>", log))
    values |= set(re.findall(r"message-id=<([^<>]+)>", log))
    values |= set(re.findall(r"sasl_username=([^,\s]+)", log))
    assert len(values) > 100
    for value in values:
        assert f"<{value}>" not in text and f"={value}" not in text, value
    planned = json.loads(lab_small.messages_path.read_text())
    for m in planned:
        for address in (m["sender"], *m["rcpts"]):
            assert f"<{address}>" not in text, address
        assert m["message_id"].strip("<>") not in text
