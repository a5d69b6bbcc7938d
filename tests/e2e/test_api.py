"""The HTTP API of a real receiver on loopback: real SMTP sessions, real HTTP requests."""

from __future__ import annotations

import json
import logging
import os
import re
import smtplib
import socket
import sqlite3
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as validate_schema
from openapi_spec_validator import validate as validate_openapi

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.api import build_app
from strictmx.receiver.api_contract import PREFIX
from strictmx.receiver.api_openapi import openapi_document
from strictmx.receiver.server import Receiver, ServerOptions

from .conftest import Factory, Running
from .test_cli import Server, run

pytestmark = pytest.mark.e2e

MESSAGE = (
    b"From: Alice <alice@example.net>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: through the API\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <api-1@example.net>\r\n"
    b"\r\n"
    b"Hi Bob.\r\n"
)

#: Refuses a HELO name that is not fully qualified at once; 127.0.0.20 is a known MTA.
SCENARIO: dict[str, Any] = {
    "name": "api-test",
    "receiver": {"delay_reject": False},
    "policies": {"helo": [{"policy": "helo_syntax", "require_fqdn": True}]},
    "world": {"clients": {"127.0.0.20": {"address": "203.0.113.20", "name": "mail.example.net"}}},
}

API = {"api_listen": ("127.0.0.1", 0)}


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        assert self.headers.get_content_type() == "application/json", self.headers
        return json.loads(self.body)


class Http:
    """urllib against the receiver's API: every status comes back as a Reply."""

    def __init__(self, running: Running, token: str | None = None) -> None:
        assert running.api is not None
        self.base = running.api.url
        self.token = token

    def __call__(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        request = urllib.request.Request(self.base + path, data=body, method=method)
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return Reply(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return Reply(exc.code, exc.headers, exc.read())

    def get(self, path: str) -> Any:
        reply = self("GET", path)
        assert reply.status == 200, reply.body
        return reply.json()

    def put_json(self, path: str, data: object) -> Reply:
        body = json.dumps(data).encode()
        return self("PUT", path, body, {"Content-Type": "application/json"})

    def put_yaml(self, path: str, text: str, kind: str = "application/yaml") -> Reply:
        return self("PUT", path, text.encode(), {"Content-Type": kind})


class Schemas:
    """Checks API answers against the schemas of the API's own OpenAPI document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.components = {"components": document["components"]}

    def check(self, name: str, value: Any) -> None:
        # The document's root holds the components, so "#/components/..." resolves.
        schema = {**self.components, "$ref": f"#/components/schemas/{name}"}
        validate_schema(value, schema, cls=OAS31Validator)


def accepted_session(rx: Running) -> None:
    """127.0.0.20 (203.0.113.20) with a good name delivers a message."""
    with smtplib.SMTP(
        rx.host, rx.port, local_hostname="mail.example.net", source_address=("127.0.0.20", 0)
    ) as client:
        assert client.sendmail("alice@example.net", ["bob@example.org"], MESSAGE) == {}


def rejected_session(rx: Running) -> None:
    """127.0.0.1 greets as `localhost`: refused at EHLO, then gives up."""
    with smtplib.SMTP(rx.host, rx.port, local_hostname="localhost") as client:
        code, _ = client.ehlo()
        assert code == 504  # Postfix's need fully-qualified hostname


@pytest.fixture
def two(serve: Factory) -> Iterator[tuple[Running, Http, dict[str, str], datetime]]:
    """An accepted session, then (after `between`) a rejected one; their ids by outcome."""
    rx = serve(SCENARIO, **API)
    accepted_session(rx)
    rx.settle()
    between = datetime.now(UTC)
    rejected_session(rx)
    rx.settle()
    http = Http(rx)
    ids = {s["outcome"]: s["id"] for s in http.get("/sessions")["sessions"]}
    assert set(ids) == {"accepted", "rejected"}
    yield rx, http, ids, between


# -- sessions -----------------------------------------------------------------------------


def test_sessions_newest_first_with_client_envelope_and_verdicts(
    two: tuple[Running, Http, dict[str, str], datetime],
) -> None:
    _, http, ids, _ = two
    page = http.get("/sessions")
    Schemas(http.get("/openapi.json")).check("SessionPage", page)
    newest, oldest = page["sessions"]
    assert (newest["id"], oldest["id"]) == (ids["rejected"], ids["accepted"])
    assert (page["limit"], page["offset"]) == (50, 0)

    assert oldest["client"] == {
        "peer": "127.0.0.20",
        "port": oldest["client"]["port"],
        "address": "203.0.113.20",
        "name": "mail.example.net",
    }
    assert oldest["helo"] == "mail.example.net"
    assert oldest["envelope"] == {"mail_from": "alice@example.net", "rcpts": ["bob@example.org"]}
    assert oldest["verdicts"] == []
    assert oldest["scenario"] == "api-test"
    assert oldest["ended"] is not None

    assert newest["client"]["address"] == "127.0.0.1"
    assert newest["outcome"] == "rejected"
    (verdict,) = newest["verdicts"]
    assert verdict["policy"] == "helo_syntax"
    assert verdict["outcome"] == "HELO_NOT_FQDN"
    assert (verdict["stage"], verdict["replied_at"]) == ("helo", "helo")
    assert verdict["code"] == 504
    assert verdict["rfc_compliant"] is True
    assert verdict["warned"] is False
    assert "not fully qualified" in verdict["reason"]


@pytest.mark.parametrize(
    ("query", "match", "miss"),
    [
        ("client=203.0.113.20", "accepted", "client=198.51.100.1"),
        ("client=127.0.0.20", "accepted", "client=127.0.0.99"),
        ("client=mail.example.net", "accepted", "client=other.example.net"),
        ("helo=example.net", "accepted", "helo=example.org"),
        ("helo=MAIL.Example", "accepted", "helo=mail.example.org"),
        ("sender=alice", "accepted", "sender=carol"),
        ("rcpt=bob%40example.org", "accepted", "rcpt=dave"),
        ("outcome=accepted", "accepted", "outcome=deferred"),
        ("outcome=rejected", "rejected", "outcome=aborted"),
        ("policy=helo_syntax", "rejected", "policy=dnsbl"),
    ],
)
def test_each_filter_matches_one_session_and_not_others(
    two: tuple[Running, Http, dict[str, str], datetime], query: str, match: str, miss: str
) -> None:
    _, http, ids, _ = two
    assert [s["id"] for s in http.get(f"/sessions?{query}")["sessions"]] == [ids[match]]
    assert http.get(f"/sessions?{miss}")["sessions"] == []


def test_since_keeps_sessions_started_from_then(
    two: tuple[Running, Http, dict[str, str], datetime],
) -> None:
    _, http, ids, between = two
    since = urllib.parse.quote(between.isoformat())
    assert [s["id"] for s in http.get(f"/sessions?since={since}")["sessions"]] == [ids["rejected"]]
    assert http.get("/sessions?since=2999-01-01T00:00:00")["sessions"] == []  # naive: UTC
    assert len(http.get("/sessions?since=2000-01-01T00:00:00Z")["sessions"]) == 2


def test_paging(two: tuple[Running, Http, dict[str, str], datetime]) -> None:
    _, http, ids, _ = two
    first = http.get("/sessions?limit=1")
    assert [s["id"] for s in first["sessions"]] == [ids["rejected"]]
    second = http.get("/sessions?limit=1&offset=1")
    assert [s["id"] for s in second["sessions"]] == [ids["accepted"]]
    assert (second["limit"], second["offset"]) == (1, 1)
    assert http.get("/sessions?limit=1&offset=2")["sessions"] == []


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("offset=-1", "offset"),
        ("outcome=bounced", "outcome"),
        ("since=yesterday", "since"),
        ("colour=blue", "colour"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_parameter(
    serve: Factory, query: str, path: str
) -> None:
    http = Http(serve(SCENARIO, **API))
    reply = http("GET", f"/sessions?{query}")
    assert reply.status == 400
    error = reply.json()
    assert error["error"] == "invalid query parameters"
    assert [d["path"] for d in error["details"]] == [path]


def test_a_repeated_query_parameter_is_400(serve: Factory) -> None:
    reply = Http(serve(SCENARIO, **API))("GET", "/sessions?helo=a&helo=b")
    assert reply.status == 400
    assert "helo" in reply.json()["error"]


def test_one_session_with_transcript_and_raw_message(
    two: tuple[Running, Http, dict[str, str], datetime],
) -> None:
    _, http, ids, _ = two
    session = http.get(f"/sessions/{ids['accepted']}")
    Schemas(http.get("/openapi.json")).check("SessionDetail", session)
    assert session["id"] == ids["accepted"]
    assert session["envelope"]["mail_from"] == "alice@example.net"
    lines = [(t["direction"], t["line"]) for t in session["transcript"]]
    assert ("in", "ehlo mail.example.net") in lines
    assert any(d == "out" and line.startswith("250 2.0.0 Ok: queued") for d, line in lines)
    (message,) = session["messages"]
    assert message["n"] == 1
    assert (message["mail_from"], message["rcpts"]) == ("alice@example.net", ["bob@example.org"])
    assert (message["size"], message["truncated"]) == (len(MESSAGE), False)
    assert message["href"] == f"{PREFIX}/sessions/{ids['accepted']}/messages/1"

    raw = http("GET", message["href"].removeprefix(PREFIX))
    assert raw.status == 200
    assert raw.headers.get_content_type() == "message/rfc822"
    assert raw.body == MESSAGE

    rejected = http.get(f"/sessions/{ids['rejected']}")
    assert rejected["messages"] == []
    assert any(
        t["line"].startswith("504") for t in rejected["transcript"] if t["direction"] == "out"
    )


def test_unknown_session_and_message_are_404_and_a_bad_number_400(
    two: tuple[Running, Http, dict[str, str], datetime],
) -> None:
    _, http, ids, _ = two
    for path in (
        "/sessions/0000000000000000",
        "/sessions/0000000000000000/messages/1",
        f"/sessions/{ids['accepted']}/messages/2",
        f"/sessions/{ids['rejected']}/messages/1",
        "/no/such/route",
    ):
        reply = http("GET", path)
        assert reply.status == 404, path
        assert reply.json()["error"]
    for n in ("0", "one", "-1"):
        reply = http("GET", f"/sessions/{ids['accepted']}/messages/{n}")
        assert reply.status == 400
        assert "positive integer" in reply.json()["error"]


def test_delete_empties_the_journal(two: tuple[Running, Http, dict[str, str], datetime]) -> None:
    rx, http, ids, _ = two
    reply = http("DELETE", "/sessions")
    assert (reply.status, reply.body) == (204, b"")
    assert http.get("/sessions")["sessions"] == []
    assert http("GET", f"/sessions/{ids['accepted']}").status == 404
    accepted_session(rx)  # the receiver goes on journaling after it
    rx.settle()
    assert len(http.get("/sessions")["sessions"]) == 1


def test_wrong_method_is_405_with_allow(serve: Factory) -> None:
    http = Http(serve(SCENARIO, **API))
    for method, path in (("POST", "/sessions"), ("DELETE", "/scenario"), ("PUT", "/health")):
        reply = http(method, path, b"{}", {"Content-Type": "application/json"})
        assert reply.status == 405, (method, path)
        assert reply.json()["error"] == "method not allowed"
        assert method not in reply.headers["Allow"]


# -- scenario -----------------------------------------------------------------------------


def banner_and_ehlo(rx: Running, helo: str) -> tuple[bytes, int]:
    client = smtplib.SMTP()
    try:
        _, banner = client.connect(rx.host, rx.port)
        code, _ = client.ehlo(helo)
        client.quit()
    finally:
        client.close()
    return banner, code


def test_get_scenario(serve: Factory) -> None:
    http = Http(serve(SCENARIO, **API))
    info = http.get("/scenario")
    Schemas(http.get("/openapi.json")).check("ScenarioInfo", info)
    assert info["name"] == "api-test"
    assert info["source"] == "<test>"
    assert info["dns_mode"] == "hermetic"
    assert info["receiver"]["delay_reject"] is False
    assert info["chains"]["helo"] == ["helo_syntax"]


def test_put_scenario_by_name_serves_new_sessions_with_it(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)
    http = Http(rx)
    reply = http.put_json("/scenario", {"name": "postfix-strict"})
    assert reply.status == 200, reply.body
    assert reply.json()["name"] == "postfix-strict"
    assert http.get("/scenario")["name"] == "postfix-strict"
    banner, _ = banner_and_ehlo(rx, "mail.example.net")
    assert banner.endswith(b"ESMTP Postfix")
    rx.settle()
    assert http.get("/sessions")["sessions"][0]["scenario"] == "postfix-strict"


def test_put_scenario_as_yaml_and_sessions_under_way_keep_theirs(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)
    http = Http(rx)
    under_way = smtplib.SMTP(rx.host, rx.port)  # greeted by api-test, EHLO not sent yet
    try:
        yaml_text = "name: lenient\nreceiver:\n  hostname: mx.lenient.test\npolicies: {}\n"
        for kind in ("application/yaml", "text/yaml"):
            reply = http.put_yaml("/scenario", yaml_text, kind)
            assert reply.status == 200, reply.body
            assert reply.json()["name"] == "lenient"
            assert reply.json()["source"] == "<request>"
        code, _ = under_way.ehlo("localhost")
        assert code == 504, "a session under way keeps the scenario it started with"
    finally:
        under_way.close()
    banner, code = banner_and_ehlo(rx, "localhost")
    assert banner.startswith(b"mx.lenient.test")
    assert code == 250, "a new session has no helo_syntax any more"


def test_bad_scenario_yaml_is_422_with_file_line_and_path(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)
    http = Http(rx)
    bad = "name: broken\npolicies:\n  helo:\n    - policy: helo_syntax\n      mode: rfc9999\n"
    reply = http.put_yaml("/scenario", bad)
    assert reply.status == 422
    error = reply.json()
    (detail,) = error["details"]
    assert detail["file"] == "<request>"
    assert detail["line"] == 5
    assert detail["path"] == "policies.helo[0].mode"
    assert "rfc9999" in detail["message"]
    assert "<request>:5 policies.helo[0].mode:" in error["error"]

    reply = http.put_yaml("/scenario", "receiver:\n  hostname: [unclosed\n")
    assert reply.status == 422
    (detail,) = reply.json()["details"]
    assert detail["line"] is not None
    assert detail["message"].startswith("invalid YAML")

    reply = http.put_yaml("/scenario", "receiver:\n  colour: blue\n  warn_only: maybe\n")
    assert reply.status == 422
    paths = {d["path"]: d["line"] for d in reply.json()["details"]}
    assert paths == {"receiver.colour": 2, "receiver.warn_only": 3}

    assert http.get("/scenario")["name"] == "api-test", "nothing was swapped"


def test_bad_scenario_requests(serve: Factory) -> None:
    http = Http(serve(SCENARIO, **API))
    headers = {"Content-Type": "application/json"}
    not_json = http("PUT", "/scenario", b'{"name": ', headers)
    assert not_json.status == 400
    assert not_json.json()["error"].startswith("body is not JSON")
    shapes: list[object] = [[], {"nom": "default"}, {"name": 3}, {"name": "default", "x": 1}]
    for shape in shapes:
        reply = http.put_json("/scenario", shape)
        assert reply.status == 400, shape
        assert reply.json()["details"]
    unknown = http.put_json("/scenario", {"name": "no-such-persona"})
    assert unknown.status == 422
    assert "postfix-strict" in unknown.json()["error"]  # lists what there is
    path = http.put_json("/scenario", {"name": "scenarios/default.yaml"})
    assert path.status == 422, "paths on the server are not loadable through the API"
    assert http("PUT", "/scenario", b"name: x\n", {"Content-Type": "text/plain"}).status == 415
    assert http.put_yaml("/scenario", "  \n").status == 400
    assert http("PUT", "/scenario", b"\xff\xfe", {"Content-Type": "text/yaml"}).status == 400
    assert http.get("/scenario")["name"] == "api-test"


def test_swapped_scenario_dns_server_answers_the_new_records(serve: Factory) -> None:
    first = {**SCENARIO, "world": {"dns": {"records": {"old.example": {"A": "192.0.2.1"}}}}}
    rx = serve(first, dns_listen=("127.0.0.1", 0), **API)
    assert rx.receiver.dns_server is not None
    port = rx.receiver.dns_server.port

    def ask(name: str) -> dns.message.Message:
        query = dns.message.make_query(name, "A")
        return dns.query.udp(query, "127.0.0.1", port=port, timeout=5)

    assert ask("old.example").answer
    yaml_text = "world:\n  dns:\n    records:\n      new.example: {A: 192.0.2.2}\n"
    assert Http(rx).put_yaml("/scenario", yaml_text).status == 200
    answer = ask("new.example")
    assert [r.to_text() for rrset in answer.answer for r in rrset] == ["192.0.2.2"]
    assert ask("old.example").rcode() == dns.rcode.NXDOMAIN


def test_swapped_scenario_gets_a_callout_client_when_it_calls_out(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)  # no sender_verify: no callout client runs
    calls_out = """
receiver: {delay_reject: false}
policies:
  mail: [{policy: sender_verify}]
world:
  dns:
    records:
      example.net: {MX: "10 mail.example.net."}
      mail.example.net: {A: 203.0.113.10}
  mailboxes:
    example.net: {exists: [postmaster, alice]}
"""
    assert Http(rx).put_yaml("/scenario", calls_out).status == 200
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        client.ehlo()
        assert client.mail("alice@example.net")[0] == 250
        client.rset()
        code, _ = client.mail("nobody@example.net")
        assert code == 550, "the simulated MX refused the address: a verdict, not a tempfail"


# -- health -------------------------------------------------------------------------------


def test_health_ready(serve: Factory) -> None:
    http = Http(serve(SCENARIO, **API))
    health = http.get("/health")
    Schemas(http.get("/openapi.json")).check("Health", health)
    assert health == {"status": "ready", "reasons": []}


def test_health_degraded_while_journal_writes_fail(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)
    http = Http(rx)
    with sqlite3.connect(rx.receiver.options.db) as other:
        other.execute(
            "CREATE TRIGGER full BEFORE INSERT ON transcript"
            " BEGIN SELECT RAISE(ABORT, 'disk full, says the test'); END"
        )
    other.close()
    assert http.get("/health")["status"] == "ready"
    rejected_session(rx)
    rx.settle()
    health = http.get("/health")
    assert health["status"] == "degraded"
    (reason,) = health["reasons"]
    assert reason.startswith("journal writes failing:")
    assert "disk full, says the test" in reason


class Nameserver:
    """A UDP DNS server on loopback that answers every query (REFUSED), or stays silent."""

    def __init__(self, silent: bool) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.silent = silent
        self.closing = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            wire, peer = self.sock.recvfrom(4096)
            if self.closing:
                return
            if not self.silent:
                response = dns.message.make_response(dns.message.from_wire(wire))
                response.set_rcode(dns.rcode.REFUSED)
                self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.closing = True
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
            waker.sendto(b"", ("127.0.0.1", self.port))
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.mark.parametrize(("silent", "status"), [(False, "ready"), (True, "degraded")])
def test_health_in_overlay_mode_probes_real_dns(serve: Factory, silent: bool, status: str) -> None:
    nameserver = Nameserver(silent)
    try:
        overlay = {
            **SCENARIO,
            "world": {
                "dns": {
                    "mode": "overlay",
                    "nameservers": [f"127.0.0.1:{nameserver.port}"],
                    "lifetime": 0.3,
                }
            },
        }
        health = Http(serve(overlay, **API)).get("/health")
    finally:
        nameserver.close()
    assert health["status"] == status
    if silent:
        (reason,) = health["reasons"]
        assert reason == f"DNS unreachable: no answer from 127.0.0.1:{nameserver.port} within 0.3s"
    else:
        assert health["reasons"] == []


# -- auth -----------------------------------------------------------------------------------


def test_token_is_required_on_every_endpoint_but_health(serve: Factory) -> None:
    rx = serve(SCENARIO, api_token="s3cret", **API)
    anonymous, wrong, right = Http(rx), Http(rx, "guess"), Http(rx, "s3cret")
    for method, path in (
        ("GET", "/sessions"),
        ("DELETE", "/sessions"),
        ("GET", "/sessions/0000000000000000"),
        ("GET", "/sessions/0000000000000000/messages/1"),
        ("GET", "/scenario"),
        ("PUT", "/scenario"),
        ("GET", "/openapi.json"),
        ("GET", "/no/such/route"),
    ):
        for client, error in ((anonymous, "authentication required"), (wrong, "invalid token")):
            reply = client(method, path)
            assert reply.status == 401, (method, path)
            assert reply.json()["error"].startswith(error)
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert right.get("/sessions")["sessions"] == []
    assert right.get("/scenario")["name"] == "api-test"
    lowercase_scheme = anonymous("GET", "/sessions", headers={"Authorization": "bearer s3cret"})
    assert lowercase_scheme.status == 200
    assert anonymous.get("/health")["status"] == "ready"
    assert "bearer" in right.get("/openapi.json")["components"]["securitySchemes"]


# -- OpenAPI and errors ------------------------------------------------------------------------


def test_openapi_document_validates_and_lists_every_route(serve: Factory) -> None:
    document = Http(serve(SCENARIO, **API)).get("/openapi.json")
    validate_openapi(document)
    validate_openapi(openapi_document(auth=True))
    documented = {
        (method.upper(), PREFIX + path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    app = build_app(Receiver(scenarios.from_dict(SCENARIO), ServerOptions(db=":memory:")))
    routed = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        # The viewer's pages share the application but are not the API (viewer/).
        and route.resource.canonical.startswith(f"{PREFIX}/")
    }
    assert documented == routed


def test_an_unexpected_failure_is_a_json_500_without_traceback(
    serve: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    rx = serve(SCENARIO, **API)
    with sqlite3.connect(rx.receiver.options.db) as other:  # a row no strictmx would write
        other.execute(
            "INSERT INTO sessions (id, started, scenario, peer, peer_port, client_address)"
            " VALUES ('badbadbadbadbad0', 'not a time', 'x', '127.0.0.1', 1, '127.0.0.1')"
        )
    other.close()
    with caplog.at_level(logging.ERROR, logger="strictmx.receiver.api"):
        reply = Http(rx)("GET", "/sessions/badbadbadbadbad0")
    assert reply.status == 500
    assert reply.json() == {"error": "internal error (logged by the server)", "details": []}
    assert b"Traceback" not in reply.body
    (record,) = [r for r in caplog.records if r.name == "strictmx.receiver.api"]
    assert record.exc_info is not None, "the traceback is logged on the server side"


# -- strictmx serve --api-listen -------------------------------------------------------------

API_ON = re.compile(r"^strictmx: API on (http://[\d.]+:\d+/api/v1)$")


@pytest.mark.parametrize(
    ("args", "warned"),
    [
        (("--api-listen", "127.0.0.1:0"), False),
        (("--api-listen", "0.0.0.0:0"), True),
        (("--api-listen", "0.0.0.0:0", "--api-token-file", "token"), False),
    ],
)
def test_serve_announces_the_api_and_warns_when_exposed_without_token(
    tmp_path: Path, args: tuple[str, ...], warned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRICTMX_API_TOKEN", raising=False)
    (tmp_path / "token").write_text("s3cret\n")
    server = Server(tmp_path, *args)
    try:
        (url,) = [m.group(1) for m in map(API_ON.match, server.started) if m]
        port = url.rsplit(":", 1)[1].split("/")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=10) as r:
            assert json.load(r) == {"status": "ready", "reasons": []}
        assert server.terminate() == 0
        stderr = server.stderr()
    finally:
        server.kill()
    assert ("has no token (--api-token-file or $STRICTMX_API_TOKEN)" in stderr) is warned
    assert "Traceback" not in stderr


def test_serve_reports_an_api_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(
            tmp_path, "serve", "--listen", "127.0.0.1:0", "--api-listen", f"127.0.0.1:{port}"
        )
    assert done.returncode == 2
    assert done.stderr == f"strictmx: cannot listen on 127.0.0.1:{port}: address already in use\n"


# -- the API token: from a file or the environment, never from argv ----------------------------


def api_port(server: Server) -> int:
    (url,) = [m.group(1) for m in map(API_ON.match, server.started) if m]
    return int(url.rsplit(":", 1)[1].split("/")[0])


def status_of(port: int, token: str | None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/scenario")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


@pytest.mark.parametrize("source", ["file", "environment"])
def test_serve_takes_the_api_token_from_a_file_or_the_environment(
    tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRICTMX_API_TOKEN", raising=False)
    args: tuple[str, ...] = ("--api-listen", "127.0.0.1:0")
    if source == "file":
        (tmp_path / "token").write_text("s3cret\n")
        args += ("--api-token-file", "token")
    else:
        monkeypatch.setenv("STRICTMX_API_TOKEN", "s3cret")
    server = Server(tmp_path, *args)
    try:
        port = api_port(server)
        assert [status_of(port, t) for t in (None, "guess", "s3cret")] == [401, 401, 200]
        assert server.terminate() == 0
    finally:
        server.kill()


def test_serve_refuses_an_api_token_on_the_command_line_saying_why(tmp_path: Path) -> None:
    done = run(tmp_path, "serve", "--listen", "127.0.0.1:0", "--api-token", "s3cret")
    assert done.returncode == 2
    assert "--api-token is not taken" in done.stderr
    assert "`ps`" in done.stderr and "--api-token-file" in done.stderr
    assert "s3cret" not in done.stderr
    assert not (tmp_path / "strictmx.db").exists(), "nothing started"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: (d / "token").write_text("\n\n"), "holds no token"),
        (lambda d: os.mkfifo(d / "token"), "is a FIFO"),
        (lambda d: (d / "token").mkdir(), "is a directory"),
        (lambda d: None, "does not exist"),
    ],
)
def test_a_bad_token_file_is_a_usage_error(
    tmp_path: Path, setup: Callable[[Path], object], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRICTMX_API_TOKEN", raising=False)
    setup(tmp_path)
    done = run(tmp_path, "serve", "--listen", "127.0.0.1:0", "--api-token-file", "token")
    assert done.returncode == 2
    assert done.stderr.startswith("strictmx: --api-token-file: ")
    assert message in done.stderr


def test_a_token_in_both_file_and_environment_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("one\n")
    monkeypatch.setenv("STRICTMX_API_TOKEN", "two")
    done = run(tmp_path, "serve", "--listen", "127.0.0.1:0", "--api-token-file", "token")
    assert done.returncode == 2
    assert "give the API token once" in done.stderr


# -- uploaded scenarios may not reach outside the process -----------------------------------------


def gadgets(secret: Path) -> dict[str, str]:
    """Key path -> an uploaded scenario whose option there reaches outside the process."""
    mail = "policies: {mail: [{policy: %s, %s: '%s'}]}"
    return {
        "policies.mail[0].file": mail % ("sender_blocklist", "file", secret),
        "policies.mail[0].verifier": mail % ("sender_verify", "verifier", "os:getcwd"),
        "world.registrations.rdap_url": "world: {registrations: {rdap_url: 'http://x/{domain}'}}",
        "world.dns.serve": "world: {dns: {serve: '127.0.0.1:0'}}",
        "world.dns.nameservers[0]": "world: {dns: {nameservers: ['127.0.0.1:53']}}",
        "world.dns.mode": "world: {dns: {mode: system}}",
        "expect[0].message_file": f"expect: [{{name: x, message_file: '{secret}', result: x}}]",
    }


def test_put_scenario_refuses_options_that_reach_outside(serve: Factory, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2.example\n")
    http = Http(serve(SCENARIO, **API))
    for path, text in gadgets(secret).items():
        reply = http.put_yaml("/scenario", text)
        assert reply.status == 422, (path, reply.body)
        (detail,) = [d for d in reply.json()["details"] if d["path"] == path]
        assert detail["file"] == "<request>" and detail["line"] == 1
        assert detail["message"].startswith("a scenario uploaded through the API may not ")
        assert "--api-allow-host-access" in detail["message"]
        assert b"hunter2" not in reply.body
    assert http.get("/scenario")["name"] == "api-test", "nothing was swapped"


def test_put_scenario_with_host_access_allowed_reads_the_file(
    serve: Factory, tmp_path: Path
) -> None:
    listed = tmp_path / "listed.txt"
    listed.write_text("blocked.example\n")
    rx = serve(SCENARIO, api_host_access=True, **API)
    text = f"policies: {{mail: [{{policy: sender_blocklist, file: '{listed}'}}]}}"
    reply = Http(rx).put_yaml("/scenario", text)
    assert reply.status == 200, reply.body
    with smtplib.SMTP(rx.host, rx.port, local_hostname="mail.example.net") as client:
        client.ehlo()
        assert client.mail("a@blocked.example")[0] == 250  # delay_reject: refused at RCPT
        assert client.rcpt("bob@example.org")[0] == 554
    # Even allowed, a bad line is named by number, not repeated back.
    listed.write_text("hunter2@\n")
    refused = Http(rx).put_yaml("/scenario", text)
    assert refused.status == 422
    assert b"hunter2" not in refused.body
    assert f"{listed}:1: the line is not an address".encode() in refused.body


def test_put_scenario_too_large_is_413_before_it_is_read(serve: Factory) -> None:
    rx = serve(SCENARIO, **API)
    assert rx.api is not None
    host, port = rx.api.address
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            b"PUT /api/v1/scenario HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\n"
            b"Content-Length: 99999999\r\n\r\nname: x\n"
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413 "), head
