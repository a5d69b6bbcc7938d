from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.sender_verify import SenderVerify, SenderVerifyOptions, load_verifier
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.server import Receiver, ServerOptions
from strictmx.receiver.session import Client, Session
from strictmx.receiver.trust import UPLOADED, UPLOADED_ALLOWED
from strictmx.receiver.verdict import Action, Reply, ReplyError, Stage, Verdict
from strictmx.receiver.world import World, WorldConfig
from strictmx.receiver.world.callout import Callout, Result, Status
from strictmx.receiver.world.mailserver import MailboxResponder

HOST = "mx.strictmx.test"
CLIENTS = ["203.0.113.9", "2001:db8:feed::9"]
FAST: dict[str, Any] = {"connect_timeout": 1.0, "command_timeout": 1.0}

WORLD: dict[str, Any] = {
    "dns": {
        "records": {
            "example.net": {"MX": "10 mail.example.net."},
            "mail.example.net": {"A": "203.0.113.10"},
            "example.org": {"MX": "10 mx.example.org."},
            "mx.example.org": {"AAAA": "2001:db8::25"},
            "sub.example.org": {"MX": "10 mx.example.org."},
            "a-only.example": {"A": "192.0.2.80"},
            "catchall.example": {"MX": "10 mx.catchall.example."},
            "mx.catchall.example": {"A": "192.0.2.30"},
            "firewalled.example": {"MX": "10 mx.firewalled.example."},
            "mx.firewalled.example": {"A": "192.0.2.40"},
            "no-postmaster.example": {"MX": "10 mx.no-postmaster.example."},
            "mx.no-postmaster.example": {"A": "192.0.2.50"},
            "no-mail.example": {"MX": "0 ."},
        },
        "servfail": ["broken.example"],
        "timeout": ["slow.example"],
    },
    "mailboxes": {
        "example.net": {"exists": ["postmaster", "alice"], "tempfail": ["carol"]},
        "example.org": {"exists": ["postmaster", "alice"]},
        "sub.example.org": {"exists": ["postmaster", "alice"]},
        "a-only.example": {"exists": ["postmaster", "info"]},
        "catchall.example": {"accept_all": True},
        "firewalled.example": {"exists": ["postmaster", "alice"], "null_sender": "reject"},
        "no-postmaster.example": {"exists": ["alice"]},
    },
}


def make_world(records: dict[str, Any] | None = None) -> World:
    cfg = dict(WORLD)
    if records is not None:
        cfg["dns"] = {"records": records}
    return World.from_config(WorldConfig.model_validate(cfg))


class FakeTimer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def world_mx() -> AsyncIterator[tuple[World, Callout]]:
    """The hermetic world with its MX hosts served on loopback, as a receiver runs it."""
    world = make_world()
    callout = Callout(MailboxResponder(world.mailboxes), timer=FakeTimer())
    await callout.start()
    yield world, callout
    await callout.stop()


def make_ctx(world: World, callout: Callout | None) -> Context:
    return Context(world=world, hostname=HOST, history=ClientHistory(), callout=callout)


def policy(replies: dict[str, Reply] | None = None, **options: Any) -> SenderVerify:
    return SenderVerify(SenderVerifyOptions(**{**FAST, **options}), replies)


def make_session(sender: str | None, client: str = CLIENTS[0]) -> Session:
    return Session(Client("127.0.0.1", address=client), helo="mail.example.net", mail_from=sender)


async def check(
    env: tuple[World, Callout] | Context,
    sender: str | None,
    *,
    client: str = CLIENTS[0],
    stage: Stage = Stage.MAIL,
    replies: dict[str, Reply] | None = None,
    **options: Any,
) -> Verdict | None:
    ctx = env if isinstance(env, Context) else make_ctx(*env)
    session = make_session(sender, client)
    return await policy(replies, **options).check(stage, session, ctx.for_session())


def connections(env: tuple[World, Callout]) -> int:
    assert env[1].responder is not None
    return env[1].responder.connections


# -- outcomes: a trigger and a control each ----------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
async def test_existing_sender_passes(world_mx: tuple[World, Callout], client: str) -> None:
    for sender in ("alice@example.net", "alice@example.org", "info@a-only.example"):
        assert await check(world_mx, sender, client=client) is None


@pytest.mark.parametrize("client", CLIENTS)
async def test_unknown_sender_is_refused(world_mx: tuple[World, Callout], client: str) -> None:
    verdict = await check(world_mx, "nobody@example.net", client=client)
    assert verdict is not None and verdict.reply is not None
    assert (verdict.outcome, verdict.action) == ("SENDER_UNVERIFIED", Action.REJECT)
    answer = (
        "550 5.1.1 <nobody@example.net>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    why = f"host mail.example.net[203.0.113.10] said: {answer} (in reply to RCPT TO command)"
    assert verdict.reply.wire_lines() == [
        f"550 5.1.7 <nobody@example.net>: Sender address rejected: undeliverable address: {why}"
    ]
    assert verdict.details == {
        "why": why,
        "domain": "example.net",
        "mx": "mail.example.net",
        "mx_ip": "203.0.113.10",
        "sent": "RCPT TO:<nobody@example.net>",
        "response": answer,
    }
    assert verdict.reason.startswith("<nobody@example.net>: host mail.example.net")
    assert verdict.rfc_compliant


async def test_ipv6_mx_is_named_by_its_address(world_mx: tuple[World, Callout]) -> None:
    verdict = await check(world_mx, "nobody@example.org", client=CLIENTS[1])
    assert verdict is not None
    assert verdict.details["mx_ip"] == "2001:db8::25"


@pytest.mark.parametrize(
    ("sender", "why"),
    [
        (
            "alice@nowhere.example",
            "Host or domain name not found. Name service error for name=nowhere.example "
            "type=MX: Host not found",
        ),
        ("alice@no-mail.example", "Domain no-mail.example does not accept mail (nullMX)"),
    ],
)
async def test_unroutable_sender(world_mx: tuple[World, Callout], sender: str, why: str) -> None:
    verdict = await check(world_mx, sender)
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == "SENDER_UNROUTABLE"
    assert verdict.reply.text.endswith(f"undeliverable address: {why}")
    assert connections(world_mx) == 0


@pytest.mark.parametrize("client", CLIENTS)
async def test_mx_refusing_the_null_sender(world_mx: tuple[World, Callout], client: str) -> None:
    verdict = await check(world_mx, "alice@firewalled.example", client=client, style="exim")
    assert verdict is not None
    assert verdict.outcome == "SENDER_CALLOUT_REFUSED"
    assert verdict.details["sent"] == "MAIL FROM:<>"
    # Control: Postfix's probe sender is not the null sender, so the same MX verifies it.
    assert await check(world_mx, "alice@firewalled.example", client=client) is None


@pytest.mark.parametrize("client", CLIENTS)
async def test_temporary_mailbox_failure_defers(
    world_mx: tuple[World, Callout], client: str
) -> None:
    verdict = await check(world_mx, "carol@example.net", client=client)
    assert verdict is not None and verdict.reply is not None
    assert (verdict.outcome, verdict.action, verdict.reply.code) == (
        "SENDER_VERIFY_TEMPFAIL",
        Action.DEFER,
        450,
    )
    assert verdict.reply.wire_lines() == [
        "450 4.1.7 <carol@example.net>: Sender address rejected: unverified address: "
        "host mail.example.net[203.0.113.10] said: 451 4.3.0 <carol@example.net>: "
        "Temporary lookup failure (in reply to RCPT TO command)"
    ]


@pytest.mark.parametrize("sender", ["alice@broken.example", "alice@slow.example"])
async def test_dns_failure_defers(world_mx: tuple[World, Callout], sender: str) -> None:
    verdict = await check(world_mx, sender)
    assert verdict is not None and verdict.reply is not None
    assert (verdict.outcome, verdict.reply.code) == ("SENDER_VERIFY_TEMPFAIL", 450)
    assert verdict.details["why"] == (
        f"Host or domain name not found. Name service error for name={sender[6:]} "
        "type=MX: Host not found, try again"
    )


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


LOOPBACK_MX = {"example.net": {"MX": "10 mx.example.net."}, "mx.example.net": {"A": "127.0.0.1"}}


async def test_refused_connection_defers(closed_port: int) -> None:
    ctx = make_ctx(make_world(LOOPBACK_MX), Callout())
    verdict = await check(ctx, "alice@example.net", port=closed_port, allow_private_targets=True)
    assert verdict is not None and verdict.action is Action.DEFER
    # The reply's {why} does not tell a refused port from a silent one; the journal does.
    assert verdict.details["why"] == "no answer from host mx.example.net[127.0.0.1]"
    assert f"connect to mx.example.net[127.0.0.1]:{closed_port}: Connection refused" in (
        verdict.reason
    )


async def test_mx_that_never_answers_defers(silent_port: int) -> None:
    ctx = make_ctx(make_world(LOOPBACK_MX), Callout())
    verdict = await check(
        ctx, "alice@example.net", port=silent_port, command_timeout=0.2, allow_private_targets=True
    )
    assert verdict is not None and verdict.action is Action.DEFER
    assert "timed out while receiving the initial server greeting" in verdict.reason


async def test_callouts_go_to_the_configured_port(world_mx: tuple[World, Callout]) -> None:
    _, callout = world_mx
    assert callout.responder is not None
    port = callout.responder.address[1]
    records = {"example.net": {"MX": "10 mx.example.net."}, "mx.example.net": {"A": "127.0.0.1"}}
    ctx = make_ctx(make_world(records), Callout())
    assert await check(ctx, "alice@example.net", port=port, allow_private_targets=True) is None
    assert callout.responder.connections == 1


@pytest.mark.parametrize(
    ("accept_all", "action", "code"),
    [("reject", Action.REJECT, 550), ("defer", Action.DEFER, 450)],
)
async def test_accept_all_domain(
    world_mx: tuple[World, Callout], accept_all: str, action: Action, code: int
) -> None:
    verdict = await check(world_mx, "who@catchall.example", random=True, accept_all=accept_all)
    assert verdict is not None and verdict.reply is not None
    assert (verdict.outcome, verdict.action, verdict.reply.code) == (
        "SENDER_ACCEPT_ALL",
        action,
        code,
    )
    assert verdict.reply.wire_lines() == [
        f"{code} {code // 100}.1.7 <who@catchall.example>: Sender address rejected: "
        "unverified address: catchall.example accepts all addresses"
    ]


async def test_accept_all_controls(world_mx: tuple[World, Callout]) -> None:
    # Exim's way: an accept-all domain passes; without the random probe nothing is noticed.
    assert await check(world_mx, "who@catchall.example", random=True) is None
    assert await check(world_mx, "who@catchall.example", accept_all="reject") is None
    assert await check(world_mx, "alice@example.net", random=True, accept_all="reject") is None


async def test_postmaster_missing(world_mx: tuple[World, Callout]) -> None:
    verdict = await check(world_mx, "alice@no-postmaster.example", postmaster=True)
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == "POSTMASTER_MISSING"
    assert verdict.reply.wire_lines(enhanced=False) == [
        "550-Postmaster verification failed while checking <alice@no-postmaster.example>",
        "550-Called:   192.0.2.50",
        "550-Sent:     RCPT TO:<postmaster@no-postmaster.example>",
        "550-Response: 550 5.1.1 <postmaster@no-postmaster.example>: Recipient address "
        "rejected: User unknown in virtual mailbox table",
        "550-Several RFCs state that you are required to have a postmaster",
        "550-mailbox for each mail domain. This host does not accept mail",
        "550-from domains whose servers reject the postmaster address.",
        "550 Sender verify failed",
    ]
    assert await check(world_mx, "alice@example.net", postmaster=True) is None
    assert await check(world_mx, "alice@no-postmaster.example") is None


# -- who is verified ---------------------------------------------------------------------


@pytest.mark.parametrize("sender", [None, "", "alice", "@example.net", "alice@"])
async def test_not_verified(world_mx: tuple[World, Callout], sender: str | None) -> None:
    assert await check(world_mx, sender) is None
    assert connections(world_mx) == 0


async def test_own_probe_sender_is_not_verified(world_mx: tuple[World, Callout]) -> None:
    # Postfix exempts address_verify_sender, so probes between receivers cannot loop.
    assert await check(world_mx, f"double-bounce@{HOST}") is None
    assert await check(world_mx, "probe@mx.strictmx.test", probe_sender="probe@{hostname}") is None
    assert connections(world_mx) == 0


async def test_domains_limit_verification(world_mx: tuple[World, Callout]) -> None:
    scoped: dict[str, Any] = {"domains": ["Example.NET", ".example.org"]}
    assert await check(world_mx, "nobody@example.net", **scoped) is not None
    assert await check(world_mx, "nobody@sub.example.org", **scoped) is not None
    assert await check(world_mx, "nobody@example.org", **scoped) is None  # the parent itself
    assert await check(world_mx, "nobody@nowhere.example", **scoped) is None


async def test_at_rcpt(world_mx: tuple[World, Callout]) -> None:
    verdict = await check(world_mx, "nobody@example.net", stage=Stage.RCPT)
    assert verdict is not None and verdict.stage is Stage.RCPT
    assert await check(world_mx, "alice@example.net", stage=Stage.RCPT) is None


async def test_probe_sender_option(world_mx: tuple[World, Callout]) -> None:
    _, callout = world_mx
    assert callout.responder is not None
    await check(world_mx, "alice@example.net", probe_sender="")
    await check(world_mx, "alice@example.org", probe_sender="verify@{hostname}", style="exim")
    first, second = (p.commands for p in callout.responder.probes)
    assert first[:2] == [f"EHLO {HOST}", "MAIL FROM:<>"]
    assert second[:2] == [f"HELO {HOST}", f"MAIL FROM:<verify@{HOST}>"]


async def test_without_a_callout_client_defers() -> None:
    verdict = await check(make_ctx(make_world(), None), "alice@example.net")
    assert verdict is not None and verdict.action is Action.DEFER
    assert "no callout client" in verdict.reason


# -- the cache, shared by sessions ---------------------------------------------------------


async def test_second_session_uses_the_cache(world_mx: tuple[World, Callout]) -> None:
    ctx = make_ctx(*world_mx)
    first = await check(ctx, "nobody@example.net")
    again = await check(ctx, "nobody@example.net", client=CLIENTS[1])
    assert first is not None and again is not None
    assert again.reply == first.reply
    assert again.reason.endswith("(cached result)") and not first.reason.endswith("(cached result)")
    assert await check(ctx, "alice@example.net") is None
    assert await check(ctx, "alice@example.net") is None
    assert connections(world_mx) == 2


async def test_negative_ttl_expiry(world_mx: tuple[World, Callout]) -> None:
    _, callout = world_mx
    assert isinstance(callout.timer, FakeTimer)
    await check(world_mx, "nobody@example.net", negative_ttl=60)
    callout.timer.now += 59
    await check(world_mx, "nobody@example.net", negative_ttl=60)
    assert connections(world_mx) == 1
    callout.timer.now += 1
    await check(world_mx, "nobody@example.net", negative_ttl=60)
    assert connections(world_mx) == 2


@pytest.mark.parametrize(
    ("style", "positive", "negative"),
    [("postfix", 31 * 86400, 3 * 86400), ("exim", 24 * 3600, 2 * 3600)],
)
async def test_default_ttls_by_style(
    world_mx: tuple[World, Callout], style: str, positive: int, negative: int
) -> None:
    _, callout = world_mx
    assert isinstance(callout.timer, FakeTimer)
    await check(world_mx, "alice@example.net", style=style)
    await check(world_mx, "nobody@example.net", style=style)
    callout.timer.now += negative - 1
    await check(world_mx, "nobody@example.net", style=style)
    assert connections(world_mx) == 2
    callout.timer.now += 1
    await check(world_mx, "nobody@example.net", style=style)
    assert connections(world_mx) == 3
    callout.timer.now = positive - 1
    await check(world_mx, "alice@example.net", style=style)
    assert connections(world_mx) == 3
    callout.timer.now = positive
    await check(world_mx, "alice@example.net", style=style)
    assert connections(world_mx) == 4


# -- custom verifiers ------------------------------------------------------------------------

SEEN: list[tuple[str, str]] = []


def directory(address: str, session: Session) -> Result | None:
    """A verifier whose truth is a directory: it knows directory.example, nothing else."""
    SEEN.append((address, session.client.address))
    if not address.endswith("@directory.example"):
        return None
    if address.startswith("alice@"):
        return Result(Status.VERIFIED, "in the directory")
    return Result(Status.FAILED, "not in the directory")


async def async_directory(address: str, session: Session) -> Result | None:
    return directory(address, session)


def broken(address: str, session: Session) -> Result | None:
    raise RuntimeError("directory unreachable")


def wrong_answer(address: str, session: Session) -> bool:
    return True


NOT_CALLABLE = 42
HERE = __name__


@pytest.mark.parametrize("verifier", [f"{HERE}:directory", f"{HERE}:async_directory"])
async def test_verifier_hook(world_mx: tuple[World, Callout], verifier: str) -> None:
    SEEN.clear()
    assert await check(world_mx, "alice@directory.example", verifier=verifier) is None
    verdict = await check(world_mx, "bob@directory.example", verifier=verifier)
    assert verdict is not None and verdict.reply is not None
    assert verdict.outcome == "SENDER_UNVERIFIED"
    assert verdict.reply.text.endswith("undeliverable address: not in the directory")
    assert [address for address, _ in SEEN] == ["alice@directory.example", "bob@directory.example"]
    assert {client for _, client in SEEN} == {CLIENTS[0]}
    assert connections(world_mx) == 0
    # None leaves the decision to the SMTP callout.
    assert await check(world_mx, "nobody@example.net", verifier=verifier) is not None
    assert connections(world_mx) == 1


@pytest.mark.parametrize(
    ("verifier", "detail"),
    [
        (f"{HERE}:broken", "failed (logged by the receiver)"),
        (f"{HERE}:wrong_answer", "returned bool, not a Result or None"),
    ],
)
async def test_verifier_errors_defer(
    world_mx: tuple[World, Callout], verifier: str, detail: str
) -> None:
    verdict = await check(world_mx, "alice@example.net", verifier=verifier)
    assert verdict is not None and verdict.action is Action.DEFER
    assert verdict.details["why"] == f"verifier {verifier} {detail}"


async def test_verifier_by_dotted_name_and_entry_point(
    world_mx: tuple[World, Callout], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_verifier(f"{HERE}.directory") is directory
    dist = tmp_path / "site_verifiers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: site-verifiers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[strictmx.sender_verifiers]\nsite-directory = {HERE}:directory\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_verifier("site-directory") is directory
    verdict = await check(world_mx, "bob@directory.example", verifier="site-directory")
    assert verdict is not None and verdict.outcome == "SENDER_UNVERIFIED"


def test_an_uploaded_scenario_names_installed_verifiers_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "site_verifiers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: site-verifiers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[strictmx.sender_verifiers]\nsite-directory = {HERE}:directory\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text = "policies: {mail: [{policy: sender_verify, verifier: %s}]}"
    # Control: an installed entry point is the operator's choice, so an upload may name it.
    assert scenarios.loads(text % "site-directory", trust=UPLOADED).entries
    for spec in (f"{HERE}:directory", f"{HERE}.directory", "os:system"):
        with pytest.raises(scenarios.ScenarioError, match="may not name a Python module"):
            scenarios.loads(text % spec, trust=UPLOADED)
        assert scenarios.loads(text % f"{HERE}:directory", trust=UPLOADED_ALLOWED).entries


@pytest.mark.parametrize(
    ("verifier", "message"),
    [
        ("no_such_module_here:f", "cannot load verifier"),
        (f"{HERE}:missing", "cannot load verifier"),
        (f"{HERE}:NOT_CALLABLE", "is int, not callable"),
        ("no-such-entry-point", "no entry point 'no-such-entry-point'"),
    ],
)
def test_verifier_must_load(verifier: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SenderVerifyOptions(verifier=verifier)


# -- options, replies, declaration -------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"style": "sendmail"},
        {"accept_all": "maybe"},
        {"port": 0},
        {"port": 65536},
        {"connect_timeout": 0},
        {"command_timeout": -1},
        {"positive_ttl": -1},
        {"negative_ttl": -5},
        {"max_addresses": 0},
        {"probe_sender": "<double-bounce@example.net>"},
        {"domains": ["bad..example"]},
        {"callout": True},
    ],
)
def test_options_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SenderVerifyOptions(**options)


def test_domains_are_normalised() -> None:
    assert SenderVerifyOptions(domains=["Example.NET.", ".Sub.Example"]).domains == [
        "example.net",
        ".sub.example",
    ]


async def test_reply_overrides(world_mx: tuple[World, Callout]) -> None:
    exim = [
        "550-Verification failed for <{sender}>",
        "550-Called:   {mx_ip}",
        "550-Sent:     {sent}",
        "550-Response: {response}",
        "550 Sender verify failed",
    ]
    SenderVerify.validate_reply("SENDER_UNVERIFIED", Reply.parse(exim))
    verdict = await check(
        world_mx, "nobody@example.net", replies={"SENDER_UNVERIFIED": Reply.parse(exim)}
    )
    assert verdict is not None and verdict.reply is not None
    assert verdict.reply.wire_lines(enhanced=False) == [
        "550-Verification failed for <nobody@example.net>",
        "550-Called:   203.0.113.10",
        "550-Sent:     RCPT TO:<nobody@example.net>",
        "550-Response: 550 5.1.1 <nobody@example.net>: Recipient address rejected: "
        "User unknown in virtual mailbox table",
        "550 Sender verify failed",
    ]
    seed66 = Reply.parse("550 Sender verify failed - upgrade your firewall firmware or settings")
    verdict = await check(
        world_mx,
        "alice@firewalled.example",
        style="exim",
        replies={"SENDER_CALLOUT_REFUSED": seed66},
    )
    assert verdict is not None and verdict.reply == seed66
    # A persona may turn the temporary failure into a permanent one.
    hard = Reply.parse("550 Sender verify failed")
    verdict = await check(world_mx, "carol@example.net", replies={"SENDER_VERIFY_TEMPFAIL": hard})
    assert verdict is not None and verdict.action is Action.REJECT


def test_reply_override_validation() -> None:
    with pytest.raises(ReplyError, match="unknown placeholder"):
        SenderVerify.validate_reply("SENDER_UNVERIFIED", Reply.parse("550 {nonsense}"))
    with pytest.raises(ReplyError, match="no outcome"):
        SenderVerify.validate_reply("NOT_AN_OUTCOME", Reply.parse("550 no"))


def test_declaration() -> None:
    assert SenderVerify in BUILTIN
    assert SenderVerify.name == "sender_verify"
    assert SenderVerify.stages == {Stage.MAIL, Stage.RCPT}
    ids = {o.id for o in SenderVerify.outcomes}
    assert ids == {
        "SENDER_UNVERIFIED",
        "SENDER_UNROUTABLE",
        "SENDER_CALLOUT_REFUSED",
        "SENDER_VERIFY_TEMPFAIL",
        "SENDER_ACCEPT_ALL",
        "POSTMASTER_MISSING",
    }
    for outcome in SenderVerify.outcomes:
        assert outcome.doc and outcome.rfc_allows
        outcome.default_reply()
    for name, field in SenderVerifyOptions.model_fields.items():
        assert field.description, name


# -- the receiver runs the MX hosts only when a scenario calls out ------------------------


async def test_receiver_starts_and_stops_the_responder() -> None:
    calls = scenarios.loads("policies: {mail: [{policy: sender_verify}]}")
    receiver = Receiver(calls, ServerOptions(port=0, db=":memory:"))
    assert receiver.callout is not None and receiver.context.callout is receiver.callout
    responder = receiver.callout.responder
    assert responder is not None and not responder.running
    await receiver.start()
    assert responder.running
    await receiver.stop(grace=0)
    assert not responder.running

    quiet = Receiver(
        scenarios.loads("policies: {mail: [{policy: sender_domain}]}"),
        ServerOptions(port=0, db=":memory:"),
    )
    assert quiet.callout is None and quiet.context.callout is None
