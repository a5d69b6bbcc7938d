"""The pytest plugin as a project's tests use it: receivers per test, assertions over the
journal whose failures show the session, a marker, sync and asyncio tests."""

from __future__ import annotations

import asyncio
import importlib.metadata
import smtplib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: hello\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.net>\r\n"
    b"\r\n"
    b"Hi Bob.\r\n"
)


def send(
    rx: StrictmxReceiver, helo: str, source: str = "127.0.0.1"
) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(rx.host, rx.port, local_hostname=helo, source_address=(source, 0)) as client:
        return client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE)


def test_a_compliant_message_is_accepted_and_clean(strictmx_receiver: StrictmxReceiver) -> None:
    rx = strictmx_receiver
    assert rx.scenario.name == "default"
    assert send(rx, "mail.example.net", source="127.0.0.10") == {}
    session = rx.assert_clean()
    assert rx.assert_accepted() == session
    assert session["client_address"] == "203.0.113.10"
    assert rx.message(session["id"]) == MESSAGE
    assert [s["id"] for s in rx.sessions()] == [session["id"]]


def test_a_failed_assertion_shows_the_session(strictmx: StrictmxFactory) -> None:
    rx = strictmx("default")
    with smtplib.SMTP(rx.host, rx.port, local_hostname="localhost") as client:
        client.ehlo()
    with pytest.raises(AssertionError) as raised:
        rx.assert_clean()
    text = str(raised.value)
    assert text.startswith("expected a clean session (accepted, no objection): the session was")
    assert "helo_syntax HELO_NOT_FQDN (reject, decided at helo, sent at helo): 550" in text
    assert "reason: no dot: 'localhost' is not fully qualified" in text
    assert "  transcript:\n" in text
    assert "    C: ehlo localhost\n" in text
    assert "    S: 550 Illegal HELO/EHLO greeting\n" in text
    with pytest.raises(AssertionError, match="expected a message to be accepted"):
        rx.assert_accepted()


@pytest.mark.strictmx_scenario("postfix-strict")
def test_a_delayed_refusal_is_found_by_stage_and_command(
    strictmx_receiver: StrictmxReceiver,
) -> None:
    rx = strictmx_receiver
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(rx, "localhost", source="127.0.0.10")
    verdict = rx.assert_rejected(policy="helo_syntax", stage="helo", at="rcpt", code=504)
    assert verdict["outcome"] == "HELO_NOT_FQDN"
    with pytest.raises(AssertionError) as raised:
        rx.assert_rejected(policy="helo_syntax", stage="rcpt", code=504)
    assert str(raised.value).startswith(
        "expected a refusal sent to the client with policy='helo_syntax', stage='rcpt', "
        "code=504, none was\n"
    )
    assert "decided at helo, sent at rcpt" in str(raised.value)


@pytest.mark.strictmx_scenario(
    {
        "receiver": {"warn_only": True},
        "policies": {"helo": [{"policy": "helo_syntax", "require_fqdn": True}]},
    }
)
def test_warn_only_objections_are_not_clean(strictmx_receiver: StrictmxReceiver) -> None:
    rx = strictmx_receiver
    assert rx.scenario.source == "<pytest>"
    assert send(rx, "localhost") == {}
    rx.assert_accepted()
    with pytest.raises(AssertionError, match=r"1 objection\(s\)"):
        rx.assert_clean()
    with pytest.raises(AssertionError, match="none was"):
        rx.assert_rejected(policy="helo_syntax")  # warned, never sent


def test_sessions_are_chosen_by_filters(strictmx: StrictmxFactory) -> None:
    rx = strictmx("default")
    send(rx, "mail.example.net", source="127.0.0.10")
    with smtplib.SMTP(rx.host, rx.port, local_hostname="localhost") as client:
        client.ehlo()
    rx.assert_clean(client="203.0.113.10")
    # The newest: its only HELO was refused, and the journal keeps the name it sent.
    assert rx.last()["helo"] == "localhost"
    with pytest.raises(AssertionError, match="no session was journaled matching client='x'"):
        rx.last(client="x")
    rx.clear()
    with pytest.raises(AssertionError, match=r"^no session was journaled$"):
        rx.last()


def test_an_open_session_is_named_instead_of_hanging(strictmx: StrictmxFactory) -> None:
    rx = strictmx("default")
    with socket.create_connection(rx.address) as open_session:
        assert open_session.recv(100).startswith(b"220 ")
        with pytest.raises(AssertionError, match=r"still open after 0\.2s: close the SMTP"):
            rx.settle(timeout=0.2)


async def test_the_fixtures_work_in_asyncio_tests(strictmx_receiver: StrictmxReceiver) -> None:
    rx = strictmx_receiver
    reader, writer = await asyncio.open_connection(rx.host, rx.port)

    async def command(line: bytes) -> bytes:
        if line:
            writer.write(line + b"\r\n")
        reply = await reader.readline()
        while reply[3:4] == b"-":
            reply = await reader.readline()
        return reply

    assert (await command(b"")).startswith(b"220")
    assert (await command(b"EHLO localhost")).startswith(b"550 ")
    assert (await command(b"QUIT")).startswith(b"221")
    writer.close()
    await writer.wait_closed()
    rx.assert_rejected(policy="helo_syntax", outcome="HELO_NOT_FQDN", at="helo", code=550)


def test_server_options_pass_through_and_unknown_ones_are_refused(
    strictmx: StrictmxFactory,
) -> None:
    assert strictmx(proxy_protocol=True).receiver.options.proxy_protocol
    with pytest.raises(TypeError, match="unknown receiver option 'colour'"):
        strictmx(colour="blue")


def plugin_args() -> list[str]:
    """Installed, pytest loads the plugin itself; naming it again would register it twice."""
    installed = any(
        ep.value == "strictmx.receiver.pytest_plugin"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "strictmx.receiver.pytest_plugin"]


def test_a_project_using_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\naddopts = --strict-markers\nasyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_mail="""
        import smtplib
        from pathlib import Path

        import pytest


        @pytest.mark.strictmx_scenario("exchange-classic")
        def test_marker(strictmx_receiver):
            assert strictmx_receiver.scenario.name == "exchange-classic"
            Path("port").write_text(str(strictmx_receiver.port))


        async def test_async(strictmx):
            rx = strictmx()
            assert rx.scenario.name == "default"


        def test_bounced(strictmx):
            rx = strictmx("default")
            with smtplib.SMTP(rx.host, rx.port, local_hostname="localhost") as client:
                client.ehlo()
            rx.assert_clean()
        """
    )
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E * expected a clean session (accepted, no objection): the session was *",
            "E *helo_syntax HELO_NOT_FQDN (reject, decided at helo, sent at helo): 550 *",
            "E *C: ehlo localhost",
            "E *S: 550 Illegal HELO/EHLO greeting",
        ]
    )
    # The helper's own frames are hidden: the failure points at the test's line.
    assert "def assert_clean" not in result.stdout.str()
    port = int((pytester.path / "port").read_text())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_the_projects_conftest_does_not_load_an_installed_plugin_twice(tmp_path: Path) -> None:
    # A distribution declaring the entry point, as `pip install strictmx` leaves behind.
    dist = tmp_path / "strictmx-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: strictmx\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[pytest11]\nstrictmx = strictmx.receiver.pytest_plugin\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider", "tests/e2e"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "strictmx_receiver -- strictmx/receiver/pytest_plugin.py" in done.stdout
