"""pytest plugin: a strict receiver per test, and assertions over what it journaled.

Registered through the `pytest11` entry point, so installing strictmx is enough:

```python
import smtplib

import pytest


def test_signup_mail_is_clean(strictmx):
    rx = strictmx("postfix-strict")               # bundled name, YAML path, or a dict
    send_signup_mail(smtp_host=rx.host, smtp_port=rx.port)
    rx.assert_clean()                             # accepted, and no policy objected


@pytest.mark.strictmx_scenario("postfix-strict")
def test_bad_helo_is_refused(strictmx_receiver):
    rx = strictmx_receiver
    with smtplib.SMTP(rx.host, rx.port, local_hostname="localhost") as client:
        client.ehlo()
        client.mail("alice@example.net")
        assert client.rcpt("bob@example.org")[0] == 504
    rx.assert_rejected(policy="helo_syntax", stage="helo", at="rcpt", code=504)
```

Each receiver runs on its own event loop in a background thread (`ReceiverThread`) on a
free loopback port, so the fixtures work the same in plain and asyncio tests, and it is
stopped when the test ends. The helpers read the journal after every open session has
ended: close (QUIT) the client's connection before asserting. A failed assertion shows
the session: who connected, its verdicts and its transcript.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from . import scenario as scenarios
from .api import Api, session_detail, session_info
from .scenario import Scenario
from .server import Receiver, ReceiverThread, ServerOptions

MARKER = "strictmx_scenario"

ScenarioSpec = str | Path | Mapping[str, Any] | Scenario


def load_scenario(spec: ScenarioSpec) -> Scenario:
    """A bundled scenario's name, a YAML path, a scenario as a dict, or a loaded one."""
    if isinstance(spec, Scenario):
        return spec
    if isinstance(spec, str | Path):
        return scenarios.load(str(spec))
    return scenarios.from_dict(spec, source="<pytest>")


class StrictmxReceiver:
    """A running receiver: its address, and reads and assertions over its journal.

    Sessions are chosen as the journal's filters choose them (`client`, `helo`, `sender`,
    `rcpt`, `outcome`, `policy`, `since`); the assertions judge the newest matching
    session, or the one passed as `session=` (a session dict or id).
    """

    def __init__(self, thread: ReceiverThread, api: Api | None = None) -> None:
        self.thread = thread
        self.receiver = thread.receiver
        #: The HTTP API, when the receiver was started with `api_listen=`.
        self.api = api
        self.host = "127.0.0.1"
        self.port = thread.port

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def scenario(self) -> Scenario:
        return self.receiver.scenario

    # -- reads ------------------------------------------------------------------------
    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every session has ended and the journal has committed it."""
        try:
            self.thread.call(self.receiver.settle(timeout), timeout=timeout + 5)
        except TimeoutError:
            raise AssertionError(
                f"a session to the receiver on port {self.port} is still open after "
                f"{timeout:g}s: close the SMTP connection (QUIT) before asserting"
            ) from None

    def sessions(self, **filters: Any) -> list[dict[str, Any]]:
        """Sessions, newest first, each with its verdicts and recipients: the API's
        `GET /sessions` items (`SessionView`)."""
        self.settle()
        found: list[dict[str, Any]] = self.thread.call(self.receiver.journal.sessions(**filters))
        return [SessionView(session_info(row).model_dump(mode="json")) for row in found]

    def session(self, session_id: str) -> dict[str, Any]:
        """One session with its verdicts, recipients, transcript and messages: the API's
        `GET /sessions/{id}` (`SessionView`)."""
        self.settle()
        found: dict[str, Any] | None = self.thread.call(self.receiver.journal.session(session_id))
        assert found is not None, f"no session {session_id!r} in the journal"
        return SessionView(session_detail(found).model_dump(mode="json"))

    def last(self, **filters: Any) -> dict[str, Any]:
        """The newest (matching) session, with its transcript."""
        newest = self.sessions(limit=1, **filters)
        if not newest:
            raise AssertionError(_nothing_found(filters))
        return self.session(newest[0]["id"])

    def message(self, session_id: str, n: int = 1) -> bytes | None:
        """The raw bytes of message `n` of a session, as stored."""
        self.settle()
        raw: bytes | None = self.thread.call(self.receiver.journal.message_raw(session_id, n))
        return raw

    def clear(self) -> None:
        """Empty the journal (between steps of one test)."""
        self.settle()
        self.thread.call(self.receiver.journal.clear())

    # -- assertions -------------------------------------------------------------------
    def assert_accepted(
        self, session: dict[str, Any] | str | None = None, **filters: Any
    ) -> dict[str, Any]:
        """The session delivered a message (objections in warn_only do not matter here)."""
        __tracebackhide__ = True
        found = self._pick(session, filters)
        if found["outcome"] != "accepted":
            raise AssertionError(
                f"expected a message to be accepted, the session was {found['outcome']}\n"
                + describe(found)
            )
        return found

    def assert_rejected(
        self,
        *,
        policy: str | None = None,
        outcome: str | None = None,
        stage: str | None = None,
        at: str | None = None,
        code: int | None = None,
        session: dict[str, Any] | str | None = None,
        **filters: Any,
    ) -> dict[str, Any]:
        """A policy's refusal was sent to the client; returns that verdict.

        `stage` is where the policy decided, `at` the command whose reply carried it (they
        differ under delay_reject: a HELO rejection is sent in reply to RCPT).
        """
        __tracebackhide__ = True
        found = self._pick(session, filters)
        wanted: dict[str, str | int | None] = {
            "policy": policy,
            "outcome": outcome,
            "stage": stage,
            "replied_at": at,
            "code": code,
        }
        for verdict in found["verdicts"]:
            if verdict["replied_at"] is None or verdict["code"] is None:
                continue  # decided but never sent (warn_only, or a RCPT never came)
            if all(v is None or verdict[k] == v for k, v in wanted.items()):
                return dict(verdict)
        shown = [f"{k}={v!r}" for k, v in wanted.items() if v is not None]
        raise AssertionError(
            "expected a refusal sent to the client"
            + (f" with {', '.join(shown)}" if shown else "")
            + ", none was\n"
            + describe(found)
        )

    def assert_clean(
        self, session: dict[str, Any] | str | None = None, **filters: Any
    ) -> dict[str, Any]:
        """The message was accepted and no policy objected at all, warn_only included."""
        __tracebackhide__ = True
        found = self._pick(session, filters)
        objections = [v for v in found["verdicts"] if v["action"] in _OBJECTIONS]
        if found["outcome"] != "accepted" or objections:
            problem = (
                f"{len(objections)} objection(s)"
                if found["outcome"] == "accepted"
                else f"the session was {found['outcome']}"
                + (f", with {len(objections)} objection(s)" if objections else "")
            )
            raise AssertionError(
                f"expected a clean session (accepted, no objection): {problem}\n" + describe(found)
            )
        return found

    def _pick(
        self, session: dict[str, Any] | str | None, filters: dict[str, Any]
    ) -> dict[str, Any]:
        if session is None:
            return self.last(**filters)
        return self.session(session if isinstance(session, str) else session["id"])

    def __repr__(self) -> str:
        return f"<StrictmxReceiver {self.scenario.name} on {self.host}:{self.port}>"


_OBJECTIONS = frozenset({"reject", "defer", "disconnect"})

#: The flat names sessions had here before they took the API's shape, and where each is now.
_FLAT: dict[str, tuple[str, str]] = {
    "peer": ("client", "peer"),
    "peer_port": ("client", "port"),
    "client_address": ("client", "address"),
    "client_name": ("client", "name"),
    "mail_from": ("envelope", "mail_from"),
    "rcpts": ("envelope", "rcpts"),
}


class SessionView(dict[str, Any]):
    """A session as the HTTP API's JSON has it: the same keys, nested the same way
    (`client.address`, `envelope.mail_from`, ...), times as ISO 8601 text. The flat names
    of earlier releases (`client_address`, `mail_from`, `rcpts`, `peer`, `peer_port`,
    `client_name`) still read, as aliases of their nested places; they are not keys."""

    def __missing__(self, key: str) -> Any:
        where = _FLAT.get(key)
        if where is None:
            raise KeyError(key)
        return self[where[0]][where[1]]

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self or key in _FLAT else default


def _nothing_found(filters: Mapping[str, Any]) -> str:
    which = ", ".join(f"{k}={v!r}" for k, v in filters.items())
    return "no session was journaled" + (f" matching {which}" if which else "")


def describe(session: Mapping[str, Any]) -> str:
    """A session as a person reads it in a failed test: who, verdicts, transcript."""
    who = session["client"]
    client = who["address"]
    if who["peer"] != client:
        client += f" (peer {who['peer']})"
    if who.get("name"):
        client += f", name {who['name']}"
    envelope = session["envelope"]
    lines = [
        f"session {session['id']} ({session['scenario']}): {session['outcome']}",
        f"  client {client}, HELO {session['helo']!r}, MAIL FROM {envelope['mail_from']!r}, "
        f"RCPT {', '.join(envelope['rcpts']) or '-'}",
    ]
    verdicts = session.get("verdicts") or []
    lines.append("  verdicts:" if verdicts else "  verdicts: none")
    for v in verdicts:
        sent = f"sent at {v['replied_at']}" if v["replied_at"] else "not sent"
        if v["warned"]:
            sent = "warned only"
        text = (v["text"] or "").replace("\n", " | ")
        reply = f"{v['code']} {v['status'] + ' ' if v['status'] else ''}{text}"
        lines.append(
            f"    {v['policy']} {v['outcome']} ({v['action']}, decided at {v['stage']}, {sent}):"
            f" {reply.strip()}"
        )
        if v["reason"]:
            lines.append(f"      reason: {v['reason']}")
    transcript = session.get("transcript")
    if transcript:
        arrows = {"in": "C: ", "out": "S: ", "note": "-- "}
        lines.append("  transcript:")
        lines.extend("    " + arrows.get(t["direction"], "   ") + t["line"] for t in transcript)
    return "\n".join(lines)


class StrictmxFactory:
    """`strictmx(spec=None, **server_options)`: start a receiver for this test.

    `spec` is a bundled name, a YAML path, a dict or a Scenario; None takes the test's
    `@pytest.mark.strictmx_scenario(...)`, else `default`. Server options are
    `ServerOptions` fields (`proxy_protocol=True`, `tls_context=...`, `db=...`), and
    `api_listen=(host, port)` (with `api_token=`, `api_host_access=`) serves the HTTP API
    too, as `strictmx serve --api-listen` does; its URL is then `rx.api.url`.
    """

    def __init__(self, default: ScenarioSpec) -> None:
        self.default = default
        self.started: list[ReceiverThread] = []

    def __call__(
        self,
        spec: ScenarioSpec | None = None,
        *,
        api_listen: tuple[str, int] | None = None,
        api_token: str | None = None,
        api_host_access: bool = False,
        **options: Any,
    ) -> StrictmxReceiver:
        scenario = load_scenario(self.default if spec is None else spec)
        settings = ServerOptions(host="127.0.0.1", port=0, db=":memory:")
        for key, value in options.items():
            if not hasattr(settings, key):
                raise TypeError(f"unknown receiver option {key!r}")
            setattr(settings, key, value)
        receiver = Receiver(scenario, settings)
        api = None
        if api_listen is not None:
            api = Api(receiver, *api_listen, token=api_token, host_access=api_host_access)
            receiver.attach(api)
        thread = ReceiverThread(receiver).start()
        self.started.append(thread)
        return StrictmxReceiver(thread, api)

    def stop(self) -> None:
        for thread in self.started:
            thread.stop()
        self.started.clear()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(spec): the scenario (bundled name, YAML path or dict) the strictmx "
        "fixtures serve in this test",
    )


def _marked(request: pytest.FixtureRequest) -> ScenarioSpec:
    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return "default"
    if len(marker.args) != 1 or marker.kwargs:
        raise pytest.UsageError(f"@pytest.mark.{MARKER} takes one scenario: a name, path or dict")
    spec: ScenarioSpec = marker.args[0]
    return spec


@pytest.fixture
def strictmx(request: pytest.FixtureRequest) -> Iterator[StrictmxFactory]:
    """A factory starting strict receivers for this test; they stop when it ends."""
    factory = StrictmxFactory(_marked(request))
    try:
        yield factory
    finally:
        factory.stop()


@pytest.fixture
def strictmx_receiver(strictmx: StrictmxFactory) -> StrictmxReceiver:
    """A receiver serving the test's `strictmx_scenario` marker (or `default`)."""
    return strictmx()
