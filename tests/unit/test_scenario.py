"""Scenario loading: errors name file, line and key path; bundled scenarios load."""

from __future__ import annotations

import os
import re
import time
import typing
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from strictmx.receiver import scenario as scenarios
from strictmx.receiver import trust as trusts
from strictmx.receiver.policy import ClientHistory, Context, PolicyClass
from strictmx.receiver.registry import load_registry
from strictmx.receiver.scenario import ScenarioError
from strictmx.receiver.session import Client, Session
from strictmx.receiver.verdict import Stage
from strictmx.receiver.world import World


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return str(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        scenarios.load(write(tmp_path, text))
    return str(info.value)


def test_bad_option_value_names_file_line_and_path(tmp_path: Path) -> None:
    text = """\
name: x
policies:
  helo:
    - policy: helo_syntax
    - policy: helo_syntax
      mode: rfc1035
    - policy: helo_syntax
      require_fqdn: true
      mode: rfc9999
"""
    message = error_of(tmp_path, text)
    assert message.endswith(
        "x.yaml:9 policies.helo[2].mode: 'rfc9999' is not one of: "
        "'rfc1035', 'rfc1123', 'postfix' or 'exim'"
    ), message


def test_always_accepted_patterns_are_checked_at_load(tmp_path: Path) -> None:
    message = error_of(tmp_path, "receiver:\n  always_accepted: [postmaster, 'a b']\n")
    assert "x.yaml:2 receiver.always_accepted: " in message, message
    assert "a recipient pattern is one word, got 'a b'" in message
    # The control: patterns load lower-cased; [] exempts no one.
    loaded = scenarios.load(write(tmp_path, "receiver:\n  always_accepted: [PostMaster]\n"))
    assert loaded.receiver.always_accepted == ["postmaster"]
    nobody = scenarios.load(write(tmp_path, "receiver: {always_accepted: []}\n"))
    assert nobody.engine().settings.always_accepted == ()
    default = scenarios.load(write(tmp_path, "name: d\n")).engine().settings.always_accepted
    assert default == ("postmaster", "abuse", "postmaster@*", "abuse@*")


def test_unknown_policy_lists_the_known_ones(tmp_path: Path) -> None:
    message = error_of(tmp_path, "policies:\n  helo:\n    - policy: helo_sintax\n")
    assert "x.yaml:3 policies.helo[0].policy: unknown policy 'helo_sintax'" in message
    assert (
        "known policies: " in message and "helo_syntax, " in message and "session_limits" in message
    )


def test_policy_at_a_stage_it_cannot_run(tmp_path: Path) -> None:
    message = error_of(tmp_path, "policies:\n  eod:\n    - policy: helo_syntax\n")
    assert (
        "policies.eod[0].policy: helo_syntax cannot run at eod; it runs at: helo, mail" in message
    )


def test_unknown_stage(tmp_path: Path) -> None:
    message = error_of(tmp_path, "policies:\n  greeting:\n    - policy: helo_syntax\n")
    assert "x.yaml:2 policies.greeting: unknown stage 'greeting'" in message


def test_unknown_option(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, "policies:\n  helo:\n    - policy: helo_syntax\n      strict: yes\n"
    )
    assert "x.yaml:4 policies.helo[0].strict: unknown option; helo_syntax options: mode," in message


def test_bad_option_type(tmp_path: Path) -> None:
    text = "policies:\n  session:\n    - policy: session_limits\n      hard_error_limit: lots\n"
    message = error_of(tmp_path, text)
    assert "x.yaml:4 policies.session[0].hard_error_limit: 'lots'" in message


def test_bad_reply_override(tmp_path: Path) -> None:
    text = """\
policies:
  helo:
    - policy: helo_syntax
      replies:
        HELO_INVALID: "550 4.7.1 inconsistent"
"""
    message = error_of(tmp_path, text)
    assert (
        "x.yaml:5 policies.helo[0].replies.HELO_INVALID: enhanced status 4.7.1 disagrees" in message
    )


def test_reply_override_for_an_unknown_outcome(tmp_path: Path) -> None:
    text = "policies:\n  helo:\n    - policy: helo_syntax\n      replies: {NOPE: '550 x'}\n"
    message = error_of(tmp_path, text)
    assert "replies.NOPE: helo_syntax has no outcome 'NOPE'" in message
    assert "HELO_INVALID" in message


def test_reply_override_with_an_unknown_placeholder(tmp_path: Path) -> None:
    text = (
        "policies:\n  helo:\n    - policy: helo_syntax\n"
        "      replies: {HELO_INVALID: '550 {zone}'}\n"
    )
    message = error_of(tmp_path, text)
    assert "unknown placeholder {zone}" in message


# -- replies from the reply catalogue ---------------------------------------------------

CATALOGUE_REPLIES = """\
policies:
  helo:
    - policy: helo_syntax
      replies:
        HELO_MISSING: {entry: exim-helo-missing}
        HELO_NOT_FQDN:
          entry: seed-13
        HELO_INVALID: "550 5.5.2 {helo} is not a host name"
"""


async def refusal_at_helo(scenario: scenarios.Scenario, helo: str) -> list[str]:
    (policy,) = scenario.chains()[Stage.HELO]
    session = Session(Client("127.0.0.1", address="203.0.113.9"))
    session.helo, session.helo_verb = helo, "EHLO"
    ctx = Context(world=World.from_config(scenario.world), hostname="mx", history=ClientHistory())
    verdict = await policy.check(Stage.HELO, session, ctx)
    assert verdict is not None and verdict.reply is not None
    return verdict.reply.wire_lines()


async def test_a_reply_names_a_catalogue_entry(tmp_path: Path) -> None:
    scenario = scenarios.load(write(tmp_path, CATALOGUE_REPLIES))
    assert await refusal_at_helo(scenario, "") == ["501 Syntactically invalid EHLO argument(s)"]
    assert await refusal_at_helo(scenario, "server01") == ["550 Illegal HELO/EHLO greeting"]
    # An inline text beside it, and an outcome left alone keeps the catalogue's default.
    assert await refusal_at_helo(scenario, "a_b.example") == [
        "550 5.5.2 a_b.example is not a host name"
    ]
    assert await refusal_at_helo(scenario, "[300.1.2.3]") == [
        "501 5.5.2 <[300.1.2.3]>: Helo command rejected: invalid ip address"
    ]


def test_an_unknown_entry_suggests_near_ids_and_the_outcomes_entries(tmp_path: Path) -> None:
    message = error_of(tmp_path, CATALOGUE_REPLIES.replace("seed-13", "seed-131"))
    assert (
        "x.yaml:7 policies.helo[0].replies.HELO_NOT_FQDN.entry: no catalogue entry "
        "'seed-131'; did you mean seed-31, seed-13, seed-11? (entries for "
        "helo_syntax/HELO_NOT_FQDN: seed-13, postfix-helo-not-fqdn," in message
    ), message


def test_an_entry_of_another_outcome_says_whose_it_is_and_what_fits(tmp_path: Path) -> None:
    message = error_of(tmp_path, CATALOGUE_REPLIES.replace("seed-13", "postfix-no-ptr"))
    assert (
        "x.yaml:7 policies.helo[0].replies.HELO_NOT_FQDN.entry: postfix-no-ptr is a reply for "
        "reverse_dns/NO_PTR, not helo_syntax/HELO_NOT_FQDN (entries for "
        "helo_syntax/HELO_NOT_FQDN: seed-13, postfix-helo-not-fqdn," in message
    ), message
    sibling = error_of(tmp_path, CATALOGUE_REPLIES.replace("exim-helo-missing", "seed-12"))
    assert (
        "x.yaml:5 policies.helo[0].replies.HELO_MISSING.entry: seed-12 is a reply for "
        "helo_syntax/HELO_INVALID, not helo_syntax/HELO_MISSING" in sibling
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{entry: seed-13, text: x}", "a reply from the catalogue is {entry: ID}"),
        ("{entry: 13}", "a reply from the catalogue is {entry: ID}"),
        ("{}", "a reply from the catalogue is {entry: ID}"),
        ("42", "a reply is a string, a list of lines or {entry: ID}"),
    ],
)
def test_a_malformed_entry_reference(tmp_path: Path, spec: str, message: str) -> None:
    text = (
        f"policies:\n  helo:\n    - policy: helo_syntax\n      replies: {{HELO_NOT_FQDN: {spec}}}\n"
    )
    assert f"x.yaml:4 policies.helo[0].replies.HELO_NOT_FQDN: {message}" in error_of(tmp_path, text)


def test_an_entry_for_an_unknown_outcome_lists_the_outcomes(tmp_path: Path) -> None:
    text = (
        "policies:\n  helo:\n    - policy: helo_syntax\n      replies: {NOPE: {entry: seed-13}}\n"
    )
    message = error_of(tmp_path, text)
    assert "x.yaml:4 policies.helo[0].replies.NOPE: helo_syntax has no outcome 'NOPE'" in message
    assert "HELO_NOT_FQDN" in message


def test_an_entry_reply_is_held_to_the_policy_in_use() -> None:
    # seed-02, the catalogue's text for reverse_dns/FCRDNS_FAILED, says {ptr}; a registry
    # whose reverse_dns does not fill it in refuses the entry as it would the text inline.
    registry = load_registry()
    base = registry["reverse_dns"]
    outcomes = tuple(replace(o, fields=()) for o in base.outcomes)
    registry["reverse_dns"] = cast(PolicyClass, type("NoPtr", (base,), {"outcomes": outcomes}))
    text = (
        "policies:\n  connect:\n    - policy: reverse_dns\n"
        "      replies: {FCRDNS_FAILED: {entry: %s}}\n"
    )
    with pytest.raises(ScenarioError, match=r"FCRDNS_FAILED: unknown placeholder \{ptr\}"):
        scenarios.loads(text % "seed-02", source="x.yaml", registry=registry)
    assert scenarios.loads(text % "seed-08", source="x.yaml", registry=registry).entries


def test_bad_yaml_names_the_line_and_where_in_the_keys(tmp_path: Path) -> None:
    message = error_of(tmp_path, "receiver:\n  hostname: [unclosed\npolicies: {}\n")
    assert "x.yaml:3 receiver.hostname[1]: invalid YAML: did not find expected ','" in message


def test_bad_record_names_the_record(tmp_path: Path) -> None:
    text = "world:\n  dns:\n    records:\n      mx.example.com:\n        A: 1.2.3\n"
    message = error_of(tmp_path, text)
    assert "x.yaml:" in message and "world.dns.records" in message
    assert "1.2.3" in message


def test_unknown_top_level_section(tmp_path: Path) -> None:
    message = error_of(tmp_path, "recever:\n  hostname: x\n")
    assert "x.yaml:1 recever: unknown key" in message


def test_not_a_mapping(tmp_path: Path) -> None:
    assert "must be a mapping" in error_of(tmp_path, "- a\n- b\n")


def test_missing_file_and_unknown_name() -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        scenarios.load("/nonexistent/x.yaml")
    with pytest.raises(ScenarioError, match="no scenario named 'nope'; bundled scenarios: "):
        scenarios.load("nope")


def test_session_policies_run_first_at_their_stages(tmp_path: Path) -> None:
    text = """\
policies:
  helo:
    - policy: helo_syntax
  session:
    - policy: session_limits
"""
    scenario = scenarios.load(write(tmp_path, text))
    chains = scenario.chains()
    assert [p.name for p in chains[Stage.HELO]] == ["session_limits", "helo_syntax"]
    assert [p.name for p in chains[Stage.ERROR]] == ["session_limits"]
    assert Stage.EOD not in chains


@pytest.mark.parametrize("name", scenarios.bundled_names())
def test_every_bundled_scenario_loads(name: str) -> None:
    scenario = scenarios.load(name)
    assert scenario.description, "each bundled scenario has a one-line description"
    assert scenario.engine() is not None


def test_the_default_and_postfix_scenarios_are_bundled() -> None:
    assert {"default", "postfix-strict"} <= set(scenarios.bundled_names())


def test_delay_reject_per_entry(tmp_path: Path) -> None:
    text = """\
receiver: {delay_reject: true}
policies:
  helo:
    - policy: helo_syntax
      delay_reject: false
      mode: exim
"""
    scenario = scenarios.load(write(tmp_path, text))
    (policy,) = scenario.chains()[Stage.HELO]
    assert policy.delay_reject is False
    message = error_of(tmp_path, text.replace("delay_reject: false", "delay_reject: later"))
    assert "x.yaml:5 policies.helo[0].delay_reject: 'later': expected true or false" in message


# -- YAML bounds: checked before anything is built ---------------------------------------------


def laughs(levels: int, width: int = 9) -> str:
    """Nested aliases: each level lists the previous one `width` times."""
    text = "a: &l0 [x, x, x, x, x, x, x, x, x]\n"
    for n in range(1, levels + 1):
        text += f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * width) + "]\n"
    return text


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (laughs(9), "<request>:5 l4[5]: ", "more than 50000 nodes, aliases expanded"),
        (
            "x-big: &b " + "x" * 100_000 + "\nreceiver: {local_recipients: [" + "*b, " * 50 + "]}",
            "<request>:2 receiver.local_recipients[40]: ",
            "more than 4194304 characters of values, aliases expanded",
        ),
        ("".join(f"k{n}: v\n" for n in range(30_000)), "<request>:25000 k24999: ", "50000 nodes"),
        ("name: " + "x" * 3_000_000 + "\n", "<request>:1 name: ", "at most 200 characters"),
        ("a: &a [b, *a]\n", "<request>:1 a[1]: ", "*a refers to a collection it is in"),
        (
            "k0:\n" + "".join("  " * n + f"k{n}:\n" for n in range(1, 80)) + "  " * 80 + "v\n",
            "<request>:65 k0.k1.k2.",
            "nested deeper than 64 levels",
        ),
        ("a: " + "[" * 70 + "]" * 70 + "\n", "<request>:1 a", "nested deeper than 64 levels"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "<request>:1 a[0]: ", "nested deeper than 64"),
        (
            "x: &x y\n" + "".join(f"k{n}: *x\n" for n in range(1001)),
            "<request>:1002 k1000",
            "more than 1000 aliases",
        ),
        ("name: " + "x" * (4 * 1024 * 1024), "<request> ", "the limit is 4194304"),
        ("d: 2024-13-45\n", "<request> ", "invalid YAML value: month must be in 1..12"),
        ("n: " + "9" * 5000 + "\n", "<request> ", "invalid YAML value: Exceeds the limit"),
    ],
    ids=[
        "laughs",
        "long-values-aliased",
        "many-keys",
        "long-name",
        "recursive",
        "deep-block",
        "deep-flow",
        "deeper-than-libyaml",
        "aliases",
        "huge",
        "date",
        "digits",
    ],
)
def test_hostile_yaml_is_refused_quickly_with_file_line_and_path(
    text: str, where: str, message: str
) -> None:
    started = time.monotonic()
    with pytest.raises(ScenarioError) as raised:
        scenarios.loads(text, source="<request>")
    assert time.monotonic() - started < 2
    assert str(raised.value).startswith(where), str(raised.value)
    assert message in str(raised.value)
    assert len(str(raised.value)) < 400, "the input is not repeated back"


def test_aliases_within_bounds_load() -> None:
    # Control: anchors shared by a few entries are ordinary YAML.
    text = """\
base: &strict {policy: helo_syntax, mode: rfc1035}
policies:
  helo: [*strict]
""".replace("base: ", "x-base: ")
    with pytest.raises(ScenarioError, match="x-base: unknown key"):
        scenarios.loads(text, source="x.yaml")  # the parse got as far as validation
    shared = laughs(3)  # 9**4 = 6561 nodes: well within the bound
    with pytest.raises(ScenarioError, match="a: unknown key"):
        scenarios.loads(shared, source="x.yaml")


def test_a_long_bad_value_is_cut_short_in_errors() -> None:
    with pytest.raises(ScenarioError) as raised:
        scenarios.loads("receiver: {warn_only: " + "y" * 10_000 + "}\n", source="x.yaml")
    assert "x.yaml:1 receiver.warn_only: 'yyy" in str(raised.value)
    assert len(str(raised.value)) < 300


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "too-big"])
def test_a_scenario_file_must_be_a_regular_file_within_the_limit(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "s.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "too-big":
        path.write_text("# " + "x" * (4 * 1024 * 1024) + "\n")
    target = "/dev/zero" if kind == "device" else str(path)
    started = time.monotonic()
    with pytest.raises(ScenarioError, match="cannot read scenario: scenario file "):
        scenarios.load(target)
    assert time.monotonic() - started < 2


# -- what a scenario may reach outside the process ------------------------------------------------

GADGETS = {
    "policies.mail[0].file": "policies: {mail: [{policy: sender_blocklist, file: /etc/hostname}]}",
    "policies.mail[0].verifier": "policies: {mail: [{policy: sender_verify, verifier: os:getcwd}]}",
    "policies.mail[0].allow_private_targets": (
        "policies: {mail: [{policy: sender_verify, allow_private_targets: true}]}"
    ),
    "world.registrations.rdap_url": "world: {registrations: {rdap_url: 'http://x/{domain}'}}",
    "world.registrations.rdap_bootstrap": "world: {registrations: {rdap_bootstrap: 'http://x/'}}",
    # RDAP modes fetch IANA's bootstrap file, then the registries it names.
    "world.registrations.mode": "world: {registrations: {mode: system}}",
    "world.dns.serve": "world: {dns: {serve: '127.0.0.1:0'}}",
    "world.dns.nameservers[0]": "world: {dns: {nameservers: ['127.0.0.1:53']}}",
    "world.dns.mode": "world: {dns: {mode: overlay}}",
    "expect[0].message_file": "expect: [{name: x, message_file: /etc/hostname, result: accepted}]",
}


@pytest.mark.parametrize("path", GADGETS)
def test_an_uploaded_scenario_may_not_reach_outside_the_process(path: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        scenarios.loads(GADGETS[path], source="<request>", trust=trusts.UPLOADED)
    (issue,) = raised.value.issues
    assert (issue.file, issue.line, issue.path) == ("<request>", 1, path)
    assert issue.message.startswith("a scenario uploaded through the API may not ")
    assert issue.message.endswith("started with --api-allow-host-access")


@pytest.mark.parametrize("path", GADGETS)
def test_a_trusted_scenario_may(path: str, tmp_path: Path) -> None:
    listed = tmp_path / "listed.txt"
    listed.write_text("spam.example\n")
    for trust in (trusts.UPLOADED_ALLOWED, trusts.from_file(tmp_path / "x.yaml"), trusts.CODE):
        text = GADGETS[path].replace("/etc/hostname", str(listed))
        assert scenarios.loads(text, trust=trust) is not None


def _marked(annotation_metadata: list[object]) -> bool:
    return any(
        getattr(getattr(m, "func", None), "__qualname__", "").startswith("reaches.")
        for m in annotation_metadata
    )


REACHING = re.compile(
    r"(^|_)(file|path|url|uri|module|verifier|listen|serve|nameservers?|socket|dir)$"
)


def _fields(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo, str]]:
    for name, info in model.model_fields.items():
        yield f"{prefix}{name}", info, repr(info.annotation) + repr(info.metadata)
        for inner in _models_in(info.annotation):
            yield from _fields(inner, f"{prefix}{name}.")


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def test_every_option_that_names_something_outside_is_marked() -> None:
    """Options whose names say they name a file, module, URL or address carry `reaches`
    (in their own metadata or their type's), so a new one cannot forget it silently."""
    roots: list[tuple[type[BaseModel], str]] = [(scenarios.ScenarioModel, "")]
    roots += [(cls.Options, f"{name}.") for name, cls in load_registry().items()]
    found = []
    for root, prefix in roots:
        for path, _info, shown in _fields(root, prefix):
            if REACHING.search(path.rsplit(".", 1)[-1]):
                found.append(path)
                assert "reaches" in shown, f"{path} names something outside but is not marked"
    assert {"sender_blocklist.file", "sender_verify.verifier", "world.dns.serve"} <= set(found)


def test_an_error_lists_twenty_problems_and_counts_the_rest() -> None:
    text = "".join(f"unknown{n}: x\n" for n in range(30))
    with pytest.raises(ScenarioError) as raised:
        scenarios.loads(text, source="x.yaml")
    issues = raised.value.issues
    assert [i.path for i in issues[:20]] == [f"unknown{n}" for n in range(20)]
    assert issues[20].message == "... and 10 more problems"
    assert len(issues) == 21


def test_an_uploaded_scenario_may_keep_registrations_hermetic() -> None:
    text = "world: {registrations: {mode: hermetic, domains: {example.net: 2020-01-01}}}"
    assert scenarios.loads(text, source="<request>", trust=trusts.UPLOADED) is not None
