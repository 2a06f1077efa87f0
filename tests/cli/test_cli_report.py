import gzip
import json
import os
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from postlens.cli import main

MIXED = Path(__file__).parents[1] / "data" / "mixed.log"
BASE = ["report", "--year", "2026", "--tz", "UTC"]


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, [*BASE, *args], input=input)


def test_text_report_has_pflogsumm_sections() -> None:
    r = run(str(MIXED))
    assert r.exit_code == 0, r.output
    for title in ("Grand Totals", "Per-Hour Traffic Summary", "Host/Domain Summary: Message Delivery",
                  "Senders by message count", "message reject detail", "Warnings", "Fatal Errors",
                  "Master daemon messages", "Coverage", "SASL authentication", "TLS"):  # fmt: skip
        assert title in r.output


@pytest.mark.parametrize("fmt", ["json", "markdown", "html", "text"])
def test_every_format_renders(fmt: str) -> None:
    r = run("--format", fmt, str(MIXED))
    assert r.exit_code == 0, r.output
    if fmt == "json":
        assert json.loads(r.output)["totals"]["received"] == 3


def test_stdin_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = run("--format", "json", "-o", str(out), "-", input=MIXED.read_bytes())
    assert r.exit_code == 0
    assert r.output == ""
    assert json.loads(out.read_text())["totals"]["delivered"] == 5
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_output_to_a_pipe_writes_into_it_and_leaves_it_a_pipe(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = run("--format", "json", "-o", str(fifo), str(MIXED))
    reader.join(timeout=30)
    assert r.exit_code == 0, r.output
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert json.loads(got[0])["totals"]["delivered"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


def test_bad_inputs_exit_2_and_good_ones_still_count(tmp_path: Path) -> None:
    binary = tmp_path / "binary.log"
    binary.write_bytes(b"\x00\x01\x02" * 1000)
    unknown = tmp_path / "packed.log"
    unknown.write_bytes(b"PK\x03\x04xxxx")
    empty = tmp_path / "nolog"
    empty.mkdir()
    gz = tmp_path / "mail.log.1.gz"
    gz.write_bytes(gzip.compress(MIXED.read_bytes()))
    r = CliRunner().invoke(
        main,
        [
            *BASE,
            "--format",
            "json",
            str(tmp_path / "missing.log"),
            str(binary),
            str(unknown),
            str(empty),
            str(gz),
        ],
    )
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 4
    assert all(line.startswith("postlens: ") for line in lines)
    assert "Traceback" not in r.stderr
    assert json.loads(r.stdout)["totals"]["received"] == 3


def test_unreadable_file() -> None:
    """Root reads every file, so as root the command runs as nobody."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        locked, good = Path(tmp) / "mail.log.1", Path(tmp) / "mail.log"
        locked.write_bytes(MIXED.read_bytes())
        locked.chmod(0)
        good.write_bytes(MIXED.read_bytes())
        good.chmod(0o644)
        code, stderr, stdout = run_unprivileged("--format", "json", str(locked), str(good))
    assert code == 2
    assert stderr.strip() == f"postlens: {locked}: Permission denied"
    assert json.loads(stdout)["totals"]["received"] == 3


def run_unprivileged(*args: str) -> tuple[int, str, str]:
    """Run the command in a child that dropped root, if we are root; (exit code, stderr, stdout)."""
    if os.geteuid() != 0:
        r = run(*args)
        return r.exit_code, r.stderr, r.stdout
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, run, report back, and leave without cleanup
        try:
            os.setgid(65534)
            os.setuid(65534)
            r = run(*args)
            os.write(write_end, json.dumps([r.exit_code, r.stderr, r.stdout]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    code, stderr, stdout = json.loads(data)
    return code, stderr, stdout


def test_usage_errors() -> None:
    assert run("-d", "someday", str(MIXED)).exit_code == 2
    assert run("--tz", "Mars/Olympus", str(MIXED)).exit_code == 2
    r = run("--syslog-name", "(", str(MIXED))
    assert r.exit_code == 2 and "regular expression" in r.stderr
    r = run("--content-filter", "198.51.100.7,amavis", str(MIXED))
    assert (r.exit_code, r.stderr) == (2, "postlens: --content-filter: not an address or network: 'amavis'\n")


def test_content_filters_given_twice_or_with_commas_are_all_named() -> None:
    log = str(Path(__file__).parents[1] / "data" / "remote-filter.log")
    for named in (["--content-filter", "192.0.2.99,198.51.100.7"], ["--content-filter", "192.0.2.99",
                  "--content-filter", "198.51.100.7"]):  # fmt: skip
        r = run("--format", "json", *named, log)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["messages"]["hops"] == 2


def test_text_output_carries_no_control_characters(tmp_path: Path) -> None:
    evil = tmp_path / "mail.log"
    evil.write_bytes(
        b"Nov  5 14:00:01 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from evil\x1b[31mred[192.0.2.1]: 554 5.7.1 "
        b"<a@b.example>: Relay access denied\x07; from=<x\x1b]0;title\x07@example.org> to=<a@b.example> "
        b"proto=ESMTP helo=<\x1b[2J>\n"
        b"Nov  5 14:00:02 mx postfix/smtpd[1]: warning: strange \x1b[5mblink\x9b text\n"
    )
    r = run("--rej-add-from", str(evil))
    assert r.exit_code == 0
    assert not any(c in r.output for c in "\x1b\x07\x9b")
    assert "\\x1b" in r.output


def test_sample_log() -> None:
    r = CliRunner().invoke(main, ["report", "--sample"])
    assert r.exit_code == 0, r.output
    assert "Grand Totals" in r.output


def test_detail_limits_rows() -> None:
    r = run("--format", "text", "-u", "1", str(MIXED))
    section = r.output.split("Recipients by message count")[1].split("\n\n")[0]
    assert len([line for line in section.splitlines() if line.startswith(" ") and "@" in line]) == 1


SAMPLE = ["--sample", "--year", "2026"]


def _titles(text: str) -> list[str]:
    """The section titles of a text report: each line above a row of dashes."""
    lines = text.splitlines()
    return [lines[i - 1] for i, line in enumerate(lines) if i and line and set(line) == {"-"}]


def test_pflogsumm_command_lines_work_unchanged() -> None:
    """A crontab's pflogsumm line: underscores for dashes, per-section limits, -q and the
    older --no-...-detail forms."""
    plain = CliRunner().invoke(main, ["report", *SAMPLE])
    cron = CliRunner().invoke(
        main, ["report", *SAMPLE, "--problems_first", "--rej_add_from", "--verp_mung", "--iso-date-time",
               "--bounce_detail=0", "--reject-detail", "1", "--no-smtpd-warnings", "-q"],
    )  # fmt: skip
    assert plain.exit_code == 0 and cron.exit_code == 0, cron.output
    before, after = _titles(plain.output), _titles(cron.output)
    assert "message bounce detail (by relay)" in before and "message bounce detail (by relay)" not in after
    assert "Warnings" in before and "Warnings" not in after
    assert after.index("message reject detail") < after.index("Per-Hour Traffic Summary")  # problems first
    rejects = cron.output.split("message reject detail\n")[1].split("\n\n")[0]
    assert len([line for line in rejects.splitlines() if line.startswith("  ") and "(total:" in line]) == 1
    assert len([line for line in rejects.splitlines() if line.startswith("    ")]) == 1
    same = CliRunner().invoke(
        main, ["report", *SAMPLE, "--problems-first", "--rej-add-from", "--verp-mung", "--bounce-detail", "0",
               "--reject_detail=1", "--smtpd-warning-detail", "0", "--quiet"],
    )  # fmt: skip
    assert same.output == cron.output
    none = CliRunner().invoke(main, ["report", *SAMPLE, "--detail", "0"])
    gone = {"message deferral detail", "message reject detail", "Warnings", "Senders by message count",
            "Host/Domain Summary: Message Delivery"}  # fmt: skip
    assert not gone & set(_titles(none.output))
    assert "Master daemon messages" in _titles(none.output)  # shown whole, as pflogsumm does
    assert "127.0.0.10" in none.output.split("SASL authentication")[1]  # postlens's own sections keep rows
    markdown = CliRunner().invoke(main, ["report", *SAMPLE, "--detail", "0", "--format", "markdown"]).output
    assert "showing 0 of" not in markdown and "Other Actions" not in markdown


def test_verp_mung_takes_its_level_only_after_an_equals_sign() -> None:
    """As pflogsumm: ``--verp_mung /var/log/mail.log`` is the flag and a log, not a level."""
    plain = run("--format", "json", "--verp-mung", str(MIXED))
    assert plain.exit_code == 0, plain.output
    assert run("--format", "json", "--verp_mung", str(MIXED)).output == plain.output
    assert run("--format", "json", "--verp-mung=1", str(MIXED)).output == plain.output
    assert run("--format", "json", "--verp_mung=2", str(MIXED)).exit_code == 0
    assert run("--verp-mung=3", str(MIXED)).exit_code == 2


def test_quiet_leaves_out_empty_sections_only() -> None:
    loud = run(str(MIXED)).output
    quiet = run("-q", str(MIXED)).output
    assert " none" in loud and " none" not in quiet
    empty = {t for t in _titles(loud) if f"{t}\n{'-' * len(t)}\n none" in loud}
    assert empty and set(_titles(quiet)) == set(_titles(loud)) - empty
    assert "Grand Totals" in quiet and "Coverage" in quiet


def test_quiet_leaves_out_postlens_sections_with_nothing_counted(tmp_path: Path) -> None:
    """A log without TLS, postscreen or logins: -q leaves those sections out, not the rest."""
    log = tmp_path / "mail.log"
    log.write_text("".join(line + "\n" for line in MIXED.read_text().splitlines() if "postfix/qmgr" in line))
    loud, quiet = _titles(run(str(log)).output), _titles(run("-q", str(log)).output)
    assert {"TLS", "Postscreen", "SASL authentication", "Notifications"} <= set(loud)
    assert not {"TLS", "Postscreen", "SASL authentication", "Notifications"} & set(quiet)
    assert {"Grand Totals", "Coverage", "Per-Hour Traffic Summary"} <= set(quiet)


def test_mailq_adds_the_queue_and_keeps_the_report() -> None:
    r = CliRunner().invoke(main, ["report", *SAMPLE, "--mailq"])
    assert r.exit_code == 0, r.output
    assert "Grand Totals" in r.output and _titles(r.output)[-1] == "Current Mail Queue"
    assert r.output.split("Current Mail Queue\n------------------\n")[1].strip()  # the queue, or why not
    wrong = CliRunner().invoke(main, ["report", *SAMPLE, "--mailq", "--format", "json"])
    assert wrong.exit_code == 2 and "--mailq is for the printed text report" in wrong.output
    mailed = CliRunner().invoke(main, ["report", *SAMPLE, "--mailq", "--mail-to", "a@example.org"])
    assert mailed.exit_code == 2 and "--mailq is for the printed text report" in mailed.output


def test_zero_fill_shows_days_without_traffic(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    lines = MIXED.read_text().splitlines()
    later = [line.replace("Nov  5", "Nov  8", 1) for line in lines if "smtpd[160]" in line]
    log.write_text("\n".join(lines + later) + "\n")
    plain = run(str(log)).output
    filled = run("--zero-fill", str(log)).output
    assert "2026-11-06" not in plain
    assert "2026-11-06" in filled and "2026-11-07" in filled


def test_jobs_give_the_same_report(tmp_path: Path) -> None:
    one = run("--format", "json", str(MIXED))
    two = run("--format", "json", "-j", "2", str(MIXED))
    assert one.exit_code == two.exit_code == 0
    assert one.output == two.output
