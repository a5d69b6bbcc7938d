"""A Persona is built once from a scenario; serve, check and a swap all use it."""

from __future__ import annotations

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.persona import Persona, calls_out
from strictmx.receiver.policy import ClientHistory
from strictmx.receiver.server import Receiver, ServerOptions
from strictmx.receiver.verdict import Stage


def load(policies: str, mode: str = "hermetic", mailboxes: str = "") -> Persona:
    world = f"{{dns: {{mode: {mode}, nameservers: ['127.0.0.1:53']}}{mailboxes}}}"
    return Persona.build(scenarios.loads(f"policies: {policies}\nworld: {world}"))


def test_callout_only_when_a_policy_calls_out() -> None:
    quiet = load("{mail: [{policy: sender_domain}]}")
    assert not calls_out(quiet.scenario)
    assert quiet.callout is None and quiet.context.callout is None
    hermetic = load("{mail: [{policy: sender_verify}]}")
    assert calls_out(hermetic.scenario)
    assert hermetic.callout is not None and hermetic.context.callout is hermetic.callout
    assert hermetic.callout.hermetic and hermetic.callout.responder is not None


def test_simulated_mx_hosts_follow_the_world() -> None:
    overlay = load("{rcpt: [{policy: sender_verify}]}", "overlay")
    assert overlay.callout is not None
    assert not overlay.callout.hermetic and overlay.callout.responder is None
    listed = load(
        "{mail: [{policy: sender_verify}]}",
        "system",
        ", mailboxes: {example.net: {exists: [alice]}}",
    )
    assert listed.callout is not None and listed.callout.responder is not None
    assert not listed.callout.hermetic
    assert listed.callout.simulates("example.net") and not listed.callout.simulates("example.org")


def test_a_running_callout_is_reused_when_it_can_serve_the_new_world() -> None:
    hermetic = load("{mail: [{policy: sender_verify}]}")
    running = hermetic.callout
    assert running is not None
    scenario = scenarios.loads(
        "policies: {mail: [{policy: sender_verify}]}\n"
        "world: {dns: {mode: overlay, nameservers: ['127.0.0.1:53']}}"
    )
    # Its responder can serve a world that needs none: kept.
    assert Persona.build(scenario, callout=running).callout is running
    # A responder is needed and the running client has none: a new one.
    overlay = load("{rcpt: [{policy: sender_verify}]}", "overlay").callout
    assert overlay is not None and overlay.responder is None
    fresh = Persona.build(hermetic.scenario, callout=overlay).callout
    assert fresh is not None and fresh is not overlay and fresh.responder is not None


def test_settings_engine_and_shared_history() -> None:
    scenario = scenarios.load("postfix-strict")
    history = ClientHistory()
    persona = Persona.build(scenario, history=history)
    assert persona.settings is scenario.receiver and persona.name == scenario.name
    assert persona.context.history is history
    assert persona.context.hostname == scenario.receiver.hostname
    assert persona.context.world is persona.world
    assert not persona.engine.settings.warn_only
    assert persona.engine.settings.delay_reject == scenario.receiver.delay_reject
    assert [p.name for p in persona.engine.policies_at(Stage.HELO)] == [
        p.name for p in scenario.chains()[Stage.HELO]
    ]
    assert Persona.build(scenario, warn_only=True).engine.settings.warn_only
    # What a policy may ask of the receiver: delay_reject and SMTPUTF8, each session too.
    assert persona.context.delay_reject and persona.context.smtputf8
    other = Persona.build(scenarios.loads("receiver: {delay_reject: false, smtputf8: false}\n"))
    session_ctx = other.context.for_session()
    assert not session_ctx.delay_reject and not session_ctx.smtputf8
    assert session_ctx.history is other.context.history


async def test_receiver_swap_builds_a_new_persona_and_keeps_history() -> None:
    receiver = Receiver(scenarios.load("default"), ServerOptions(port=0, db=":memory:"))
    before = receiver.persona
    assert receiver.engine is before.engine and receiver.world is before.world
    receiver.use_scenario(scenarios.load("postfix-strict"))
    after = receiver.persona
    assert after is not before and after.name == "postfix-strict"
    assert receiver.scenario is after.scenario and receiver.engine is after.engine
    assert after.context.history is before.context.history is receiver.history


def test_local_recipients_is_implicit_at_the_end_of_rcpt_unless_listed() -> None:
    implicit = Persona.build(
        scenarios.loads(
            "receiver: {local_recipients: ['bob@*']}\n"
            "policies: {rcpt: [{policy: session_limits}]}\n"
        )
    ).engine.policies_at(Stage.RCPT)
    assert [p.name for p in implicit] == ["session_limits", "local_recipients"]
    listed = Persona.build(
        scenarios.loads(
            "policies: {rcpt: [{policy: local_recipients}, {policy: session_limits}]}\n"
        )
    ).engine.policies_at(Stage.RCPT)
    assert [p.name for p in listed] == ["local_recipients", "session_limits"]
    # No RCPT list at all: still checked, as Postfix's reject_unlisted_recipient...
    bare = Persona.build(scenarios.loads("receiver: {local_recipients: ['bob@*']}\n"))
    assert [p.name for p in bare.engine.policies_at(Stage.RCPT)] == ["local_recipients"]
    # ... unless the table lets every address in (the default): nothing to check.
    everyone = Persona.build(scenarios.loads("receiver: {hostname: mx.example.org}\n"))
    assert everyone.engine.policies_at(Stage.RCPT) == ()
