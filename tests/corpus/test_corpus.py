"""postlens against ../shared/corpus: real logs from 35 projects, and the real pflogsumm."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

import postlens
from postlens.analyses.pflogsumm import REUSE_AFFECTED, as_printed, parse_grand_totals, reuses_queue_ids
from postlens.events import EventParser, Unknown
from postlens.lines import KIND_POSTFIX, LineParser, YearGuess, zone
from postlens.render import render
from tests.property.test_properties import split_run


def logs(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.glob("*.log") if "message-bodies" not in p.name)


def test_every_corpus_line_is_recognised(corpus: Path) -> None:
    utc = zone("UTC")
    events = EventParser()
    total = unknown = 0
    leftovers: list[str] = []
    for path in logs(corpus):
        parser = LineParser(YearGuess(2024, None, utc), utc)
        for text in path.read_text(errors="replace").splitlines():
            line = parser.parse(text)
            if line is None or events.tags.read(line.program).kind != KIND_POSTFIX:
                continue
            total += 1
            if type(events.parse(line)) is Unknown:
                unknown += 1
                leftovers.append(f"{path.name}: {text}")
    share = 1 - unknown / total
    print(f"\n{total} Postfix lines, {unknown} unrecognised, {share:.4%} recognised")
    print("\n".join(leftovers))
    assert total > 100000
    assert share >= 0.99


def test_whole_corpus_reports_without_error(corpus: Path) -> None:
    result, problems = postlens.report([str(p) for p in logs(corpus)], year=2024)
    assert problems == []
    c = result["coverage"]
    assert c["lines"] > 110000
    assert c["malformed"] < 100
    render(result, "html")


def test_pflogsumm_view_equals_pflogsumm(corpus: Path, pflogsumm: str) -> None:
    mismatches = []
    for path in logs(corpus):
        report = subprocess.run([pflogsumm, str(path)], capture_output=True, text=True, errors="replace")
        theirs = parse_grand_totals(report.stdout)
        ours, _ = postlens.report([str(path)], year=2024)
        skip = REUSE_AFFECTED if reuses_queue_ids(path) else set()
        for field, value in theirs.items():
            if field not in skip and as_printed(ours["pflogsumm"][field]) != value:
                mismatches.append(
                    f"{path.name}: {field} pflogsumm={value} postlens={ours['pflogsumm'][field]}"
                )
    assert mismatches == []


@pytest.mark.parametrize(
    "name",
    [
        "lightmeterio__ControlCenter__complete-mail.log",
        "fonylew__config-mailgateway__maillog.log",
        "kdent__postfix_log_analysis__mail3.log",
        "lightmeterio__ControlCenter__scenario-14_reuse_of_queueid.log",
    ],
)
def test_split_and_merge_equals_one_pass_on_real_logs(corpus: Path, name: str) -> None:
    lines = (corpus / name).read_text(errors="replace").splitlines()
    whole = split_run(lines, [])
    rng = random.Random(name)
    for _ in range(4):
        cuts = sorted(rng.sample(range(1, len(lines)), rng.choice([1, 3, 7])))
        assert split_run(lines, cuts) == whole, cuts
