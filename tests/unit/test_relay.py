"""relay (Postfix reject_unauth_destination), recipient_syntax (reject_non_fqdn_recipient) and
local_recipients (reject_unlisted_recipient): each outcome triggered, each with its control.
Expected replies are Postfix 3.7.11's, recorded live (see the policies' docstrings)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from strictmx.policies import BUILTIN
from strictmx.policies.local_recipients import (
    LocalRecipients,
    LocalRecipientsOptions,
    without_root_dot,
)
from strictmx.policies.recipient_syntax import RecipientSyntax, RecipientSyntaxOptions
from strictmx.policies.relay import Relay, RelayOptions
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Stage, Verdict
from strictmx.receiver.world import World, WorldConfig

HOST = "mx.strictmx.test"


def ctx() -> Context:
    world = World.from_config(WorldConfig.model_validate({}))
    return Context(world=world, hostname=HOST, history=ClientHistory()).for_session()


def session(rcpt: str) -> Session:
    return Session(
        Client("127.0.0.1", address="203.0.113.10"),
        helo="mail.example.net",
        mail_from="alice@example.net",
        rcpt=rcpt,
    )


async def relay(rcpt: str, **options: Any) -> Verdict | None:
    return await Relay(RelayOptions(**options)).check(Stage.RCPT, session(rcpt), ctx())


async def fqdn(rcpt: str) -> Verdict | None:
    policy = RecipientSyntax(RecipientSyntaxOptions())
    return await policy.check(Stage.RCPT, session(rcpt), ctx())


def wire(verdict: Verdict | None) -> str:
    assert verdict is not None and verdict.reply is not None
    return verdict.reply.render()


# -- relay ----------------------------------------------------------------------------------

LOCAL = {"domains": ["strictmx.test", ".sub.example", "[127.0.0.1]"]}


@pytest.mark.parametrize(
    "rcpt",
    [
        "bob@other.example",
        "bob",  # no domain: no destination this receiver serves
        "bob@mx.strictmx.test",  # a name below a domain listed without its dot
        "bob@sub.example",  # '.sub.example' is the names below it, not itself
        "bob@[192.0.2.1]",
        "bob%other.example@strictmx.test",  # untrusted routing, as Postfix refuses it
        "other.example!bob@strictmx.test",
        '"bob@other.example"@strictmx.test',
        "postmaster@other.example",  # the engine's exemption, not this policy, decides
    ],
)
async def test_a_recipient_elsewhere_is_relay_access_denied(rcpt: str) -> None:
    verdict = await relay(rcpt, **LOCAL)
    assert verdict is not None and verdict.outcome == "RELAY_DENIED", verdict
    assert wire(verdict) == f"554 5.7.1 <{rcpt}>: Relay access denied"


@pytest.mark.parametrize(
    "rcpt",
    [
        "bob@strictmx.test",
        "Bob@STRICTMX.TEST",
        "bob@strictmx.test.",  # one trailing dot, as Postfix ignores it
        "nobody@strictmx.test",  # unknown users are local_recipients' to refuse
        "bob@a.sub.example",
        "bob@[127.0.0.1]",
        "@relay.example:bob@strictmx.test",  # a source route is ignored
    ],
)
async def test_control_a_recipient_here_passes(rcpt: str) -> None:
    assert await relay(rcpt, **LOCAL) is None


async def test_by_default_the_receivers_hostname_is_its_domain() -> None:
    assert await relay(f"bob@{HOST}") is None
    verdict = await relay("bob@strictmx.test")
    assert verdict is not None and "not one of this receiver's domains" in verdict.reason


def test_relay_options_are_checked() -> None:
    assert RelayOptions(domains=("StrictMX.test.", ".Sub.Example")).domains == (
        "strictmx.test",
        ".sub.example",
    )
    for bad in ((), ("a b",), ("bob@strictmx.test",), (".",)):
        with pytest.raises(ValidationError):
            RelayOptions(domains=bad)


# -- recipient_syntax -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rcpt",
    ["bob", "bob@localhost", "bob@localhost.", "bob@strictmx", "abuse", "@a.example:bob"],
)
async def test_a_recipient_not_fully_qualified_is_refused(rcpt: str) -> None:
    verdict = await fqdn(rcpt)
    assert verdict is not None and verdict.outcome == "RCPT_NOT_FQDN", verdict
    assert wire(verdict) == (
        f"504 5.5.2 <{rcpt}>: Recipient address rejected: need fully-qualified address"
    )


@pytest.mark.parametrize(
    "rcpt", ["bob@strictmx.test", "bob@strictmx.test.", "bob@[127.0.0.1]", "bob@other.example"]
)
async def test_control_a_fully_qualified_recipient_passes(rcpt: str) -> None:
    assert await fqdn(rcpt) is None


def test_declarations() -> None:
    for cls, outcome in ((Relay, "RELAY_DENIED"), (RecipientSyntax, "RCPT_NOT_FQDN")):
        assert cls in BUILTIN
        assert cls.stages == {Stage.RCPT}
        assert cls.summary and "\n" not in cls.summary
        assert [o.id for o in cls.outcomes] == [outcome]
        assert all(o.rfc_allows for o in cls.outcomes)
    for name, spec in RelayOptions.model_fields.items():
        assert spec.description, name


# -- local_recipients -------------------------------------------------------------------------

TABLE = ("postmaster@strictmx.test", "bob@strictmx.test")


async def unlisted(rcpt: str) -> Verdict | None:
    policy = LocalRecipients(LocalRecipientsOptions(recipients=TABLE))
    return await policy.check(Stage.RCPT, session(rcpt), ctx())


@pytest.mark.parametrize(
    "rcpt",
    [
        "bob@strictmx.test",
        "BOB@StrictMX.Test",
        # Postfix's trivial-rewrite drops one trailing dot before the table lookup
        # (rewrite.c rewrite_tree); Postfix 3.7.11 answers RCPT TO:<bob@strictmx.test.>
        # with 250 2.1.5 Ok, recorded live.
        "bob@strictmx.test.",
        "postmaster@STRICTMX.TEST.",
    ],
)
async def test_control_a_listed_recipient_passes(rcpt: str) -> None:
    assert await unlisted(rcpt) is None


@pytest.mark.parametrize(
    "rcpt",
    ["nobody@strictmx.test", "nobody@strictmx.test.", "bob@strictmx.test..", "bob@other.example"],
)
async def test_an_unlisted_recipient_is_user_unknown(rcpt: str) -> None:
    verdict = await unlisted(rcpt)
    assert verdict is not None and verdict.outcome == "UNKNOWN_USER", verdict
    # The reply quotes the address as sent, trailing dot and all (Postfix 3.7.11, live:
    # `550 5.1.1 <nobody@strictmx.test.>: ... User unknown in local recipient table`).
    assert wire(verdict) == (
        f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local recipient table"
    )


def test_only_one_root_dot_is_dropped() -> None:
    assert without_root_dot("bob@strictmx.test.") == "bob@strictmx.test"
    assert without_root_dot("bob@strictmx.test") == "bob@strictmx.test"
    # Postfix leaves `..` and `@.` alone ("bogus addresses"), and a local part's dot.
    assert without_root_dot("bob@strictmx.test..") == "bob@strictmx.test.."
    assert without_root_dot("bob@.") == "bob@."
    assert without_root_dot("bob.") == "bob."
