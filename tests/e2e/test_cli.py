"""The `strictmx` console as an operator runs it: a real process, real signals, real exits."""

from __future__ import annotations

import json
import re
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.serve_child import ServeChild as Server
from tests.serve_child import command, environment

from .wire import Wire

pytestmark = pytest.mark.e2e


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


Start = Callable[..., Server]


@pytest.fixture
def serve_cli(tmp_path: Path) -> Iterator[Start]:
    """`serve_cli("--grace", "0.5")`: `strictmx serve` in tmp_path, killed at the end if alive."""
    started: list[Server] = []

    def start(*args: str) -> Server:
        server = Server(tmp_path, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def journal_sessions(db: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute("SELECT * FROM sessions ORDER BY started"))


# -- listing commands --------------------------------------------------------------------


def test_policies_lists_each_policy_with_outcomes_and_options(tmp_path: Path) -> None:
    done = run(tmp_path, "policies")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^helo_syntax — ", out, re.M)
    assert re.search(r"^session_limits — ", out, re.M)
    assert re.search(
        r"^    HELO_NOT_FQDN: 504 5\.5\.2 <\{helo\}>: Helo command rejected: "
        r"need fully-qualified hostname$",
        out,
        re.M,
    )
    assert re.search(
        r"^    TOO_MANY_RSETS: 550 Too many RSETs  \[RFC 5321 does not allow", out, re.M
    )
    assert re.search(r"^    hard_error_limit = 20: ", out, re.M)
    assert re.search(r"^    mode = 'rfc1123': ", out, re.M)
    assert done.stderr == ""


def test_scenarios_lists_the_bundled_ones_with_descriptions(tmp_path: Path) -> None:
    done = run(tmp_path, "scenarios")
    assert done.returncode == 0, done.stderr
    rows = dict(line.split(None, 1) for line in done.stdout.splitlines() if line.strip())
    assert rows["default"].startswith("A strict classic receiver")
    assert rows["postfix-strict"].startswith("Postfix with strict restrictions")
    assert not any(text.startswith("(invalid") for text in rows.values())


# -- serve -------------------------------------------------------------------------------


def test_serve_takes_mail_and_stops_cleanly_on_sigterm(tmp_path: Path, serve_cli: Start) -> None:
    server = serve_cli()
    assert "strictmx: scenario default (" in "\n".join(server.started)
    assert server.started[-1].split() == ["connect", "session_limits"]
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="mail.example.net") as client:
        refused = client.sendmail(
            "alice@example.net", ["bob@example.org"], b"Subject: cli\r\n\r\nhi\r\n"
        )
        assert refused == {}
    assert server.terminate() == 0
    assert "Traceback" not in server.stderr()
    (session,) = journal_sessions(tmp_path / "journal.db")
    assert (session["helo"], session["outcome"]) == ("mail.example.net", "accepted")


def test_sigterm_aborts_a_session_left_open_after_the_grace(
    tmp_path: Path, serve_cli: Start
) -> None:
    server = serve_cli("--grace", "0.5")
    with Wire("127.0.0.1", server.port) as wire:
        assert wire.command("EHLO mail.example.net")[-1] == "250 HELP"
        assert server.terminate() == 0
        # RFC 5321 §3.8: a 421 before the close (it used to close without a word).
        assert wire.reply() == ["421 4.3.2 Service shutting down"]
        assert wire.closed_by_server()
    stderr = server.stderr()
    assert "strictmx: stopping; letting sessions finish" in stderr
    assert "Traceback" not in stderr
    (session,) = journal_sessions(tmp_path / "journal.db")
    assert session["outcome"] == "aborted"
    assert session["ended"] is not None
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        chunks = [json.loads(row[0]) for row in conn.execute("SELECT lines FROM transcript")]
    said = [line for chunk in chunks for _, direction, line in chunk if direction == "out"]
    assert said[-1] == "421 4.3.2 Service shutting down"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_client_mid_transaction_gets_421_on_shutdown(
    tmp_path: Path, serve_cli: Start, sig: signal.Signals
) -> None:
    server = serve_cli("--grace", "0.2")
    client = smtplib.SMTP("127.0.0.1", server.port, local_hostname="mail.example.net")
    try:
        assert client.ehlo()[0] == 250
        assert client.mail("alice@example.net")[0] == 250
        server.proc.send_signal(sig)
        assert server.proc.wait(timeout=20) == 0
        # The reply to the next command is the 421 that was waiting on the line.
        assert client.rcpt("bob@example.org") == (421, b"4.3.2 Service shutting down")
    finally:
        client.close()
    (session,) = journal_sessions(tmp_path / "journal.db")
    assert session["outcome"] == "aborted"


def test_a_session_that_ends_in_the_grace_gets_no_421(serve_cli: Start) -> None:
    server = serve_cli("--grace", "5")
    with Wire("127.0.0.1", server.port) as wire:
        assert wire.command("EHLO mail.example.net")[-1] == "250 HELP"
        server.proc.send_signal(signal.SIGTERM)
        # Control: within the grace the session goes on, and ends as the client asks.
        assert wire.command("QUIT") == ["221 Bye"]
        assert wire.closed_by_server()
    assert server.proc.wait(timeout=20) == 0


def test_serve_with_self_signed_tls_announces_starttls(serve_cli: Start) -> None:
    server = serve_cli("--tls", "self-signed")
    assert "strictmx: STARTTLS" in server.started
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo("mail.example.net")
        assert client.has_extn("starttls")
    assert server.terminate() == 0


def test_serve_without_tls_does_not_announce_it(serve_cli: Start) -> None:
    server = serve_cli()
    assert not any("STARTTLS" in line for line in server.started)
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo("mail.example.net")
        assert not client.has_extn("starttls")
    assert server.terminate() == 0


def test_sigterm_as_soon_as_it_is_announced_still_stops_cleanly(serve_cli: Start) -> None:
    # A supervisor may stop the server the moment it reports ready: the start-up lines
    # promise that SIGTERM is handled from then on.
    server = serve_cli()
    assert server.terminate() == 0
    assert "strictmx: stopping; letting sessions finish" in server.stderr()


# -- bad input: exit 2, one line, no traceback -------------------------------------------


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(tmp_path, "serve", "--listen", f"127.0.0.1:{port}", "--db", "j.db")
    line = one_error_line(done)
    assert line == f"strictmx: cannot listen on 127.0.0.1:{port}: address already in use"
    assert done.stdout == ""


def test_a_missing_scenario_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run(tmp_path, "serve", "--scenario", "missing.yaml", "--listen", "127.0.0.1:0")
    assert one_error_line(done) == "strictmx: missing.yaml: no such scenario file"


def test_an_unreadable_scenario_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "folder.yaml").mkdir()
    done = run(tmp_path, "serve", "--scenario", "folder.yaml", "--listen", "127.0.0.1:0")
    assert one_error_line(done).startswith("strictmx: folder.yaml: cannot read scenario: ")


def test_an_invalid_scenario_names_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\npolicies:\n  helo:\n    - policy: helo_syntax\n      mode: rfc9999\n"
    )
    done = run(tmp_path, "serve", "--scenario", "bad.yaml", "--listen", "127.0.0.1:0")
    line = one_error_line(done)
    assert line.startswith("strictmx: bad.yaml:5 policies.helo[0].mode: 'rfc9999' is not one of")
    assert not (tmp_path / "strictmx.db").exists(), "nothing started"


def test_invalid_yaml_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    done = run(tmp_path, "serve", "--scenario", "broken.yaml", "--listen", "127.0.0.1:0")
    assert one_error_line(done).startswith("strictmx: broken.yaml:")


def test_an_unknown_scenario_name_lists_the_bundled_ones(tmp_path: Path) -> None:
    done = run(tmp_path, "serve", "--scenario", "nosuch", "--listen", "127.0.0.1:0")
    line = one_error_line(done)
    assert line.startswith("strictmx: no scenario named 'nosuch'; bundled scenarios: ")
    assert "postfix-strict" in line


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999", "127.0.0.1:"])
def test_a_bad_listen_address_is_a_usage_error(tmp_path: Path, listen: str) -> None:
    done = run(tmp_path, "serve", "--listen", listen)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "argument --listen: expected HOST:PORT" in done.stderr


def test_a_reader_that_stops_early_is_not_an_error() -> None:
    # `strictmx policies | head -1`: the pipe closes while the listing is being written.
    reader = subprocess.Popen(
        ["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    assert reader.stdin is not None
    done = subprocess.run(
        [sys.executable, "-m", "strictmx.receiver.cli", "policies"],
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        env=environment(),
        check=False,
    )
    reader.stdin.close()
    reader.wait(timeout=10)
    assert done.returncode == 0
    assert "Traceback" not in done.stderr
