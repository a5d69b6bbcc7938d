"""A session refused early keeps what the client sent: the HELO name of a refused EHLO, the
sender of a refused MAIL, the recipient of a refused RCPT -- in the journal's row, the API's
JSON and filters, and the pytest plugin's reads. Real smtplib clients over loopback."""

from __future__ import annotations

import smtplib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from .conftest import Factory, Running
from .test_api import API, Http

pytestmark = pytest.mark.e2e

#: Refused at the stage itself (no delay_reject): a HELO name that is not fully qualified,
#: a sender at blocked.example, any recipient but bob@example.org.
SCENARIO: dict[str, Any] = {
    "name": "early-refusals",
    "receiver": {"delay_reject": False, "local_recipients": ["bob@example.org"]},
    "policies": {
        "helo": [{"policy": "helo_syntax", "require_fqdn": True}],
        "mail": [{"policy": "sender_blocklist", "domains": ["blocked.example"]}],
    },
}


def journal_row(rx: Running, session_id: str) -> sqlite3.Row:
    rx.settle()
    with sqlite3.connect(Path(rx.receiver.options.db)) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    assert row is not None
    return row


def good_session(rx: Running) -> None:
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        assert client.ehlo()[0] == 250
        assert client.mail("alice@example.net")[0] == 250
        assert client.rcpt("bob@example.org")[0] == 250


def test_a_refused_ehlo_keeps_the_name_it_sent(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)
    good_session(rx)
    with smtplib.SMTP(rx.host, rx.port, local_hostname="localhost") as client:
        assert client.ehlo()[0] == 504
    rx.settle()
    http = Http(rx)
    found = http.get("/sessions?helo=localhost")["sessions"]
    assert [(s["helo"], s["outcome"]) for s in found] == [("localhost", "rejected")]
    assert journal_row(rx, found[0]["id"])["helo"] == "localhost"
    assert [s["id"] for s in rx.sessions(helo="localhost")] == [found[0]["id"]]
    # Control: the accepted session keeps its own name, and the filter tells them apart.
    (other,) = http.get("/sessions?helo=mail.example.net")["sessions"]
    assert other["outcome"] != "rejected"
    assert other["helo"] == "mail.example.net"


def test_a_refused_ehlo_after_an_accepted_one_does_not_replace_it(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        assert client.ehlo()[0] == 250
        assert client.ehlo("localhost")[0] == 504
    rx.settle()
    http = Http(rx)
    assert http.get("/sessions?helo=localhost")["sessions"] == []
    (found,) = http.get("/sessions?helo=mail.example.net")["sessions"]
    assert found["helo"] == "mail.example.net"


def test_refused_names_before_any_accepted_one_keep_the_last(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)
    with smtplib.SMTP(rx.host, rx.port, local_hostname="localhost") as client:
        assert client.ehlo()[0] == 504
        assert client.ehlo("otherhost")[0] == 504
    rx.settle()
    (found,) = Http(rx).get("/sessions?helo=otherhost")["sessions"]
    assert found["helo"] == "otherhost"


def test_a_refused_mail_keeps_the_sender(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)
    good_session(rx)
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        assert client.ehlo()[0] == 250
        assert client.mail("spam@blocked.example")[0] == 554
    rx.settle()
    http = Http(rx)
    (found,) = http.get("/sessions?sender=blocked.example")["sessions"]
    assert found["envelope"]["mail_from"] == "spam@blocked.example"
    assert found["helo"] == "mail.example.net"
    assert journal_row(rx, found["id"])["mail_from"] == "spam@blocked.example"
    assert [s["id"] for s in rx.sessions(sender="blocked.example")] == [found["id"]]
    # Control: the accepted sender is there too, and not under the blocked one.
    (other,) = http.get("/sessions?sender=alice")["sessions"]
    assert other["envelope"]["mail_from"] == "alice@example.net"


def test_a_refused_mail_with_bad_syntax_records_no_sender(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        assert client.ehlo()[0] == 250
        # No address could be read from it: nothing to keep.
        assert client.docmd("MAIL", "FROM:<a@@b>")[0] in (501, 553)
    rx.settle()
    (found,) = Http(rx).get("/sessions")["sessions"]
    assert found["envelope"]["mail_from"] is None


def test_a_refused_rcpt_keeps_the_recipient(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        assert client.ehlo()[0] == 250
        assert client.mail("alice@example.net")[0] == 250
        assert client.rcpt("nobody@example.org")[0] == 550
        assert client.rcpt("bob@example.org")[0] == 250
    rx.settle()
    (found,) = Http(rx).get("/sessions?rcpt=nobody")["sessions"]
    assert found["envelope"]["rcpts"] == ["nobody@example.org", "bob@example.org"]
    assert Http(rx).get("/sessions?rcpt=carol")["sessions"] == []
