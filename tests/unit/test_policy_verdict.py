"""Every verdict a policy gives comes from `Policy.verdict` or `Policy.note`: a per-verdict
reply and an option's reply class go through the one reply builder, not around it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import ClassVar

import strictmx.policies
from strictmx.receiver.outcome import HOST, Outcome
from strictmx.receiver.policy import ClientHistory, Context, Policy, PolicyOptions
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Action, Reply, Stage
from strictmx.receiver.world import World


class Probe(Policy[PolicyOptions]):
    name = "probe"
    stages = frozenset({Stage.MAIL})
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome("LISTED", "550 5.7.1 {ptr} is listed", "listed", fields={"ptr": HOST}),
        Outcome("LATER", "451 4.7.1 try later", "later", action=Action.DEFER),
    )


def ctx() -> Context:
    return Context(world=World.empty(), hostname="mx.strictmx.test", history=ClientHistory())


def session() -> Session:
    return Session(Client("127.0.0.1", address="192.0.2.7"))


def test_the_outcome_reply_filled_in() -> None:
    v = Probe(PolicyOptions()).verdict("LISTED", Stage.MAIL, session(), ctx(), "r", ptr="a.b")
    assert v.reply == Reply.parse("550 5.7.1 a.b is listed") and v.action is Action.REJECT


def test_a_per_verdict_reply_is_filled_in_and_sets_the_action() -> None:
    own = Reply.parse("450 4.7.1 {ptr} is listed on our zone, from {ip}")
    v = Probe(PolicyOptions()).verdict(
        "LISTED", Stage.MAIL, session(), ctx(), "r", reply=own, ptr="a.b"
    )
    assert v.reply == Reply.parse("450 4.7.1 a.b is listed on our zone, from 192.0.2.7")
    assert v.action is Action.DEFER


def test_a_per_verdict_reply_the_outcome_cannot_send_falls_back_to_its_own() -> None:
    bad = Reply.parse("550 5.7.1 {zone} is not a field of LISTED")
    v = Probe(PolicyOptions()).verdict(
        "LISTED", Stage.MAIL, session(), ctx(), "r", reply=bad, ptr="a.b"
    )
    assert v.reply == Reply.parse("550 5.7.1 a.b is listed")


def test_refuse_as_sets_the_class_and_keeps_the_words() -> None:
    probe = Probe(PolicyOptions())
    soft = probe.verdict("LISTED", Stage.MAIL, session(), ctx(), "r", refuse_as="defer", ptr="x")
    assert soft.reply == Reply.parse("450 4.7.1 x is listed") and soft.action is Action.DEFER
    hard = probe.verdict("LATER", Stage.MAIL, session(), ctx(), "r", refuse_as="reject")
    assert hard.reply is not None and hard.reply.render() == "550 5.7.1 try later"
    assert hard.action is Action.REJECT
    # The control: no class asked, the outcome's own.
    plain = probe.verdict("LATER", Stage.MAIL, session(), ctx(), "r")
    assert plain.reply == Reply.parse("451 4.7.1 try later") and plain.action is Action.DEFER


def test_a_note_has_no_reply() -> None:
    probe = Probe(PolicyOptions())
    allowed = probe.note("ALLOWED", Stage.MAIL, "on the allow list", permit=True, zone="z")
    assert (allowed.action, allowed.reply, allowed.details) == (Action.PERMIT, None, {"zone": "z"})
    assert probe.note("SLOW", Stage.MAIL, "tarpit", delay=2.0).action is Action.DUNNO


def test_no_builtin_policy_makes_or_edits_a_verdict_by_hand() -> None:
    found = []
    for path in sorted(Path(strictmx.policies.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "func", None) and getattr(node.func, "id", "")
            if name == "Verdict" or (
                name == "replace" and any(k.arg == "reply" for k in node.keywords)
            ):
                found.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Assign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Attribute) and t.attr in ("reply", "action"):
                        found.append(f"{path.name}:{node.lineno}")
    assert found == []
