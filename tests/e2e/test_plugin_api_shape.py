"""The pytest plugin's session objects are the API's JSON: the same keys, nested the same
way, the same values, for the same session (smtplib over loopback, urllib to the API)."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest

from strictmx.receiver.pytest_plugin import StrictmxFactory

from .test_api import API, MESSAGE, SCENARIO, Http

pytestmark = pytest.mark.e2e


def keys(value: Any) -> Any:
    """The key structure of a JSON value: dicts' keys, recursively; lists item by item."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys(v) for v in value]
    return None


def test_the_plugin_and_the_api_give_the_same_session(strictmx: StrictmxFactory) -> None:
    rx = strictmx(SCENARIO, **API)
    with smtplib.SMTP(
        rx.host, rx.port, local_hostname="mail.example.net", source_address=("127.0.0.20", 0)
    ) as client:
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    with smtplib.SMTP(rx.host, rx.port, local_hostname="localhost") as client:
        assert client.ehlo()[0] == 504
    http = Http(rx)
    listed = http.get("/sessions")["sessions"]
    mine = rx.sessions()
    assert [keys(s) for s in mine] == [keys(s) for s in listed]
    assert mine == listed  # the values too: one function builds both
    for item in listed:
        detail = http.get(f"/sessions/{item['id']}")
        assert keys(rx.session(item["id"])) == keys(detail)
        assert rx.session(item["id"]) == detail
    refused = rx.last(outcome="rejected")
    assert refused["verdicts"][0]["policy"] == "helo_syntax"  # nested as the API nests it
    accepted = rx.last(outcome="accepted")
    assert accepted["client"]["address"] == "203.0.113.20"
    assert accepted["envelope"] == {"mail_from": "alice@example.net", "rcpts": ["bob@example.org"]}


def test_the_flat_names_of_before_still_read_but_are_not_keys(strictmx: StrictmxFactory) -> None:
    rx = strictmx(SCENARIO)
    with smtplib.SMTP(
        rx.host, rx.port, local_hostname="mail.example.net", source_address=("127.0.0.20", 0)
    ) as client:
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}
    session = rx.last()
    assert (session["client_address"], session["peer"]) == ("203.0.113.20", "127.0.0.20")
    assert (session["mail_from"], session["rcpts"]) == ("alice@example.net", ["bob@example.org"])
    assert session.get("client_name") == "mail.example.net"
    assert "client_address" not in session and "mail_from" not in list(session)
    with pytest.raises(KeyError):
        session["no_such_key"]  # control: only those aliases
    assert session.get("no_such_key", 7) == 7
