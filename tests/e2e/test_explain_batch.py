"""`strictmx explain --batch PATH`: a folder, an mbox and a Maildir of bounces, written with the
stdlib in a temporary folder, through the real command line."""

from __future__ import annotations

import json
import mailbox
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from strictmx.receiver import cli
from strictmx.receiver.explain import MAX_INPUT, batch, default_explainer

COMMAND = [sys.executable, "-m", "strictmx.receiver.cli"]

RBL = "554 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org"
RDNS = "450 4.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.77]"
FULL = "552 5.2.2 Mailbox full"
#: A reply explain cannot place: no catalogue text near it, no status code that says more.
VAGUE = "554 5.0.0 Transaction failed"


def dsn(recipient: str, remote: str, reply: str) -> str:
    """A Postfix-style RFC 3464 DSN for one recipient refused with `reply`."""
    return f"""\
From: MAILER-DAEMON@out.example.net (Mail Delivery System)
To: alice@example.net
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii

<{recipient}>: host {remote}[198.51.100.25] said: {reply} (in reply to RCPT TO command)

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; out.example.net

Final-Recipient: rfc822; {recipient}
Action: failed
Status: {reply.split()[1]}
Remote-MTA: dns; {remote}
Diagnostic-Code: smtp; {reply}

--b1--
"""


def postfix_log(reply: str, remote: str = "mx.example.org") -> str:
    return (
        "Jun 14 12:40:02 mta postfix/smtp[8812]: 4W0T9k2p4Jz2Abc: to=<billing@example.org>, "
        f"relay={remote}[198.51.100.25]:25, delay=1.2, dsn=5.7.1, status=bounced (host "
        f"{remote}[198.51.100.25] said: {reply} (in reply to RCPT TO command))"
    )


BOUNCES = {
    "a-rbl.eml": dsn("bob@example.org", "mx1.example.org", RBL),
    "b-rdns.eml": dsn("carol@example.com", "gmail-smtp-in.l.google.com", RDNS),
    "c-full.log": postfix_log(FULL, "mx2.example.org"),
    "d-rbl.log": postfix_log(RBL, "mx.example.org"),
}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["explain", *args])
    got = capsys.readouterr()
    return code, got.out, got.err


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    where = tmp_path / "bounces"
    where.mkdir()
    for name, text in BOUNCES.items():
        (where / name).write_text(text)
    return where


def test_a_folder_gives_a_summary_by_class_and_receiver(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "--batch", str(folder))
    assert (code, err) == (0, "")
    assert f"{folder} (folder): 4 bounces, 4 explained, 0 not readable" in out
    assert "by class (rows are recipients: 4 recipients of 4 bounces):" in out
    classes = section(out, "by class (")
    # A class strictmx does not emulate is counted by its name.
    assert classes == ["2 50.0% dnsbl", "1 25.0% mailbox_full", "1 25.0% reverse_dns"]
    receivers = section(out, "by receiver")
    assert receivers == ["3 75.0% example.org", "1 25.0% google.com"]


def test_a_bounce_explain_cannot_place_is_counted_as_not_recognised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "vague.log").write_text(postfix_log(VAGUE))
    (tmp_path / "rbl.log").write_text(postfix_log(RBL))
    code, out, err = run_cli(capsys, "--batch", str(tmp_path))
    assert (code, err) == (0, "")
    assert section(out, "by class (") == ["1 50.0% dnsbl", "1 50.0% not recognised"]


def section(out: str, title: str) -> list[str]:
    lines = out.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(title)) + 1
    end = next((n for n in range(start, len(lines)) if not lines[n].strip()), len(lines))
    return [" ".join(line.split()) for line in lines[start:end]]  # the columns' padding aside


def test_json_lines_carry_the_answer_single_mode_gives(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "--batch", str(folder), "--format", "json")
    assert code == 0
    lines = json_lines(out)
    assert [line["source"] for line in lines] == [str(folder / name) for name in BOUNCES]
    for line in lines:
        single_code, single_out, _ = run_cli(capsys, line["source"], "--format", "json")
        single = json.loads(single_out)
        assert {k: v for k, v in line.items() if k not in ("source", "receiver")} == single
        assert single_code == (0 if single["recognised"] else 1)
    assert [line["recognised"] for line in lines] == [True, True, True, True]
    assert [line["class"] for line in lines] == ["dnsbl", "reverse_dns", "mailbox_full", "dnsbl"]
    assert lines[0]["matches"][0]["family"] == "dnsbl"
    assert [line["receiver"] for line in lines] == [
        "example.org",
        "google.com",
        "example.org",
        "example.org",
    ]


def test_an_mbox_is_read_message_by_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    for text in BOUNCES.values():
        box.add(text.encode() if text.startswith("From:") else f"Subject: x\n\n{text}\n".encode())
    box.close()
    code, out, _ = run_cli(capsys, "--batch", str(path), "--format", "json")
    assert code == 0
    lines = json_lines(out)
    assert [line["source"] for line in lines] == [f"{path}#{n}" for n in range(1, 5)]
    families = [line["matches"][0]["family"] if line["matches"] else None for line in lines]
    assert families == ["dnsbl", "reverse_dns", None, "dnsbl"]
    # No file to name for one message of an mbox: no reproduce command, the answer unchanged.
    assert lines[0]["matches"][0]["reproduce"] is None
    code, out, _ = run_cli(capsys, "--batch", str(path))
    assert f"{path} (mbox): 4 bounces, 4 explained" in out


def test_a_maildir_is_read_from_cur_and_new(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "Maildir"
    box = mailbox.Maildir(path)
    keys = [box.add(dsn("bob@example.org", "mx1.example.org", RBL).encode()) for _ in range(2)]
    seen = mailbox.MaildirMessage(dsn("carol@example.com", "mx.example.com", RDNS).encode())
    seen.set_subdir("cur")
    keys.append(box.add(seen))
    box.close()
    assert len(list((path / "new").iterdir())) == 2 and len(list((path / "cur").iterdir())) == 1
    code, out, _ = run_cli(capsys, "--batch", str(path), "--format", "json")
    assert code == 0
    lines = json_lines(out)
    assert sorted(line["source"] for line in lines) == sorted(f"{path}/{k}" for k in keys)
    families = sorted(line["matches"][0]["family"] for line in lines)
    assert families == ["dnsbl", "dnsbl", "reverse_dns"]
    code, out, _ = run_cli(capsys, "--batch", str(path))
    assert f"{path} (maildir): 3 bounces, 3 explained" in out


def test_broken_files_are_named_and_skipped_among_good_ones(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "e-binary.bin").write_bytes(b"\x00\x01\x02 not text")
    (folder / "f-empty.eml").write_bytes(b"")
    (folder / "g-huge.eml").write_bytes(b"550 " + b"x" * MAX_INPUT)
    (folder / "h-folder").mkdir()
    os.mkfifo(folder / "i-fifo")  # opening it would wait for a writer forever: never opened
    (folder / "j-dangling").symlink_to(folder / "nowhere")
    code, out, err = run_cli(capsys, "--batch", str(folder))
    assert (code, err) == (1, "")
    assert "7 bounces, 4 explained, 3 not readable" in out
    assert section(out, "not readable:") == [
        f"{folder / 'e-binary.bin'}: binary input (NUL bytes): give the bounce as text",
        f"{folder / 'f-empty.eml'}: empty input: give a reply line, a DSN e-mail, or a mail log"
        " line",
        f"{folder / 'g-huge.eml'}: input too large: {MAX_INPUT + 1} bytes, the limit is"
        f" {MAX_INPUT} (give the reply line, the DSN's delivery-status part, or the log line)",
    ]
    assert section(out, "skipped") == [
        str(folder / n) for n in ("h-folder", "i-fifo", "j-dangling")
    ]
    assert "3 42.9% unreadable" in section(out, "by class (")
    code, out, _ = run_cli(capsys, "--batch", str(folder), "--format", "json")
    errors = [line for line in json_lines(out) if "error" in line]
    assert [e["source"] for e in errors] == [
        str(folder / n) for n in ("e-binary.bin", "f-empty.eml", "g-huge.eml")
    ]


REAL = Path(__file__).resolve().parent.parent / "data" / "bounces"


def test_every_recipient_of_a_bounce_is_a_row_and_its_json_line_holds_them_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real Postfix DSNs: two recipients refused in one bounce, one relayed; and an ARF
    report. Each recipient is a row; each bounce is one JSON line."""
    for name in ("postfix-helo-two-recipients.eml", "local-recipients-relayed.eml"):
        (tmp_path / name).write_bytes((REAL / name).read_bytes())
    (tmp_path / "arf.eml").write_bytes((REAL / "samples" / "arf.eml").read_bytes())
    code, out, err = run_cli(capsys, "--batch", str(tmp_path))
    assert (code, err) == (0, "")
    assert f"{tmp_path} (folder): 3 bounces, 3 explained, 0 not readable" in out
    assert "by class (rows are recipients: 4 recipients of 3 bounces):" in out
    assert section(out, "by class (") == [
        "2 50.0% helo_syntax",
        "1 25.0% complaint",
        "1 25.0% delivered",
    ]
    code, out, _ = run_cli(capsys, "--batch", str(tmp_path), "--format", "json")
    assert code == 0
    lines = {Path(line["source"]).name: line for line in json_lines(out)}
    assert len(lines) == 3
    two = lines["postfix-helo-two-recipients.eml"]["recipients"]
    assert [(r["recipient"], r["class"]) for r in two] == [
        ("bob@strictmx.test", "helo_syntax"),
        ("carol@strictmx.test", "helo_syntax"),
    ]
    # A bounce of one recipient keeps the one-object shape `strictmx explain` gives it.
    assert "recipients" not in lines["arf.eml"] and lines["arf.eml"]["action"] == "complaint"


def test_the_control_a_bounce_of_one_recipient_is_one_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "one.eml").write_text(dsn("bob@example.org", "mx1.example.org", RBL))
    code, out, _ = run_cli(capsys, "--batch", str(tmp_path))
    assert code == 0
    assert "by class (rows are recipients: 1 recipient of 1 bounce):" in out
    assert section(out, "by class (") == ["1 100.0% dnsbl"]


def test_an_empty_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--batch", str(tmp_path))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{tmp_path} (folder): 0 bounces, 0 explained, 0 not readable",
        "no bounces found",
    ]
    code, out, _ = run_cli(capsys, "--batch", str(tmp_path), "--format", "json")
    assert (code, out) == (0, "")


def test_one_bounce_file_is_a_batch_of_one(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "--batch", str(folder / "a-rbl.eml"))
    assert code == 0
    assert "(file): 1 bounce, 1 explained" in out


def test_a_path_that_does_not_exist_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    done = subprocess.run(
        [*COMMAND, "explain", "--batch", str(missing)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"strictmx: {missing}: no such file or folder\n"


def test_a_bounce_and_batch_together_are_refused(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, RBL, "--batch", str(folder))
    assert (code, out) == (2, "")
    assert err == "strictmx: give either a bounce or --batch PATH, not both\n"


def test_progress_shows_on_a_terminal_for_a_large_input_only(tmp_path: Path) -> None:
    path = tmp_path / "many.mbox"
    box = mailbox.mbox(path)
    for n in range(batch.PROGRESS_ABOVE + 1):
        box.add(f"Subject: {n}\n\n{RBL}\n".encode())
    box.close()
    assert _progress_on_a_terminal(path).startswith("\rexplaining ")
    assert f"{batch.PROGRESS_ABOVE + 1}/{batch.PROGRESS_ABOVE + 1} (100%)" in (
        _progress_on_a_terminal(path)
    )
    # The control: the same input with stderr not a terminal, and a small one on a terminal.
    with open(tmp_path / "err.txt", "w+") as err, open(os.devnull, "w") as out:
        assert batch.run(str(path), default_explainer(), "text", out, err) == 0
        err.seek(0)
        assert err.read() == ""
    small = tmp_path / "small"
    small.mkdir()
    (small / "one.eml").write_text(RBL)
    assert _progress_on_a_terminal(small) == ""


def _progress_on_a_terminal(path: Path) -> str:
    controller, terminal = pty.openpty()
    try:
        with open(terminal, "w", closefd=False) as err, open(os.devnull, "w") as out:
            assert err.isatty()
            assert batch.run(str(path), default_explainer(), "text", out, err) == 0
        os.set_blocking(controller, False)
        got = b""
        for _ in range(1000):  # bounded: the terminal holds a few hundred bytes at most
            try:
                chunk = os.read(controller, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            got += chunk
        return got.decode()
    finally:
        os.close(controller)
        os.close(terminal)
