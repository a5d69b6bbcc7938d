"""The reply catalogue: one source of truth for reply texts, consistent with the policies."""

from __future__ import annotations

import re
from dataclasses import replace
from importlib import resources
from typing import Any

import pytest
import yaml

from strictmx.receiver import cli
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.catalogue import Catalogue, CatalogueError, loads
from strictmx.receiver.outcome import HOST, IP
from strictmx.receiver.registry import builtin_outcomes, builtin_policies, bundled
from strictmx.receiver.verdict import Reply, Stage

REGISTRY = builtin_policies()
CATALOGUE = bundled()
OUTCOMES = [(name, o) for name, cls in sorted(REGISTRY.items()) for o in cls.outcomes]
SEED_STAGE = {"DATA": "eod"}  # the seeds say DATA for header checks made at end of data


def seed_replies() -> list[dict[str, Any]]:
    text = (resources.files("strictmx.receiver") / "data" / "seed-replies.yaml").read_text()
    replies: list[dict[str, Any]] = yaml.safe_load(text)["replies"]
    return replies


@pytest.mark.parametrize(("policy", "outcome"), OUTCOMES, ids=lambda v: getattr(v, "id", v))
def test_every_default_reply_is_in_the_catalogue_with_the_same_text(
    policy: str, outcome: Any
) -> None:
    entry = CATALOGUE.default_for(policy, outcome.id)
    assert entry is not None, f"{policy}/{outcome.id} has no entry marked default: true"
    assert entry.template == outcome.default_reply()
    # What the policy declares, every entry of the outcome takes from it.
    for each in CATALOGUE.for_outcome(policy, outcome.id):
        assert each.rfc_allows_refusal is outcome.rfc_allows
        assert each.fields == outcome.all_fields


def test_every_entry_names_a_real_outcome_and_a_reply_its_policy_accepts() -> None:
    for entry in CATALOGUE.entries:
        cls = REGISTRY.get(entry.policy)
        assert cls is not None, f"{entry.id}: no policy {entry.policy}"
        cls.validate_reply(entry.outcome, entry.template)  # raises for a bad one
        assert entry.family == entry.policy


def test_every_outcome_described_is_a_policy_outcome() -> None:
    known = {(name, o.id) for name, o in OUTCOMES}
    assert set(CATALOGUE.outcomes) == known


@pytest.mark.parametrize("seed", seed_replies(), ids=lambda s: s["id"])
def test_every_documented_reply_is_an_entry(seed: dict[str, Any]) -> None:
    entry = CATALOGUE.get(seed["id"])
    documented = seed["reply"] if isinstance(seed["reply"], list) else [seed["reply"]]
    assert list(entry.documented) == documented
    assert entry.family == seed["family"]
    assert entry.stage == Stage(SEED_STAGE.get(seed["stage"], seed["stage"].lower()))
    assert entry.kind == "seed"


def test_seed_entries_name_the_bundled_case_that_reproduces_them() -> None:
    for entry in CATALOGUE.entries:
        if entry.kind != "seed":
            continue
        assert entry.scenario is not None
        cases = {c.name: c for c in scenarios.load(entry.scenario).expect}
        case = cases.get(entry.case or "")
        assert case is not None, f"{entry.id}: no case {entry.case!r} in {entry.scenario}"
        assert case.seed == entry.id
        assert case.result != "accepted"
        refused = case.result.refused
        assert refused.policy in (None, entry.policy)
        assert refused.outcome in (None, entry.outcome)


def test_a_template_only_renames_the_documented_placeholders() -> None:
    for entry in CATALOGUE.entries:
        assert entry.template.code == entry.reply.code
        if entry.template != entry.reply:
            assert entry.kind == "seed", f"{entry.id}: only seeds keep foreign placeholders"


def test_entries_fill_in_their_outcome() -> None:
    entry = CATALOGUE.get("seed-10")
    assert (entry.policy, entry.outcome, entry.stage) == ("reverse_dns", "NO_PTR", Stage.CONNECT)
    assert entry.cause and entry.fix and entry.rfc_note
    assert entry.rfc_allows_refusal is True
    helo = CATALOGUE.get("seed-14")
    assert helo.rfc_allows_refusal is False, "RFC 5321 §4.1.4 forbids refusing on HELO vs DNS"
    # An entry may say more than its outcome.
    spamcop = CATALOGUE.get("seed-29")
    assert "SpamCop" in spamcop.cause
    assert spamcop.cause != CATALOGUE.outcomes[("dnsbl", "DNSBL_LISTED")].cause


def test_persona_entries_name_their_receiver_and_source() -> None:
    personas = [e for e in CATALOGUE.entries if e.kind == "persona"]
    assert len(personas) > 50
    for entry in personas:
        assert entry.receiver and entry.source


def bundled_overrides() -> list[tuple[str, str, str, Any]]:
    """(scenario, policy, outcome, override as written) for every bundled reply override."""
    found = []
    for path in sorted(scenarios.bundled_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        for items in (data.get("policies") or {}).values():
            for item in items:
                for outcome, spec in (item.get("replies") or {}).items():
                    found.append((path.stem, item["policy"], outcome, spec))
    return found


def test_bundled_scenarios_take_every_reply_from_the_catalogue() -> None:
    overrides = bundled_overrides()
    assert len(overrides) > 100
    inline = [
        f"{name}: {policy}/{outcome}: {spec!r}"
        for name, policy, outcome, spec in overrides
        if not (isinstance(spec, dict) and spec.keys() == {"entry"})
    ]
    assert not inline, "inline reply texts; give them a catalogue entry:\n" + "\n".join(inline)
    for name, policy, outcome, spec in overrides:
        entry = CATALOGUE.get(spec["entry"])
        assert (entry.policy, entry.outcome) == (policy, outcome), f"{name}: {spec}"


def test_an_outcome_has_each_text_once() -> None:
    # So a scenario sending a seed's words names the seed: no other entry has them.
    seen: dict[tuple[str, str, Reply], str] = {}
    for entry in CATALOGUE.entries:
        key = (entry.policy, entry.outcome, entry.template)
        assert key not in seen, f"{entry.id} repeats {seen[key]}"
        seen[key] = entry.id


def test_policies_lists_the_entries_a_scenario_may_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["policies"]) == 0
    out = capsys.readouterr().out
    # The outcome's line, then its entries on lines indented under the reply.
    found = re.search(r"^    HELO_NOT_FQDN: .*\n((?:      +\S.*\n)+)", out, re.M)
    assert found, out
    listed = " ".join(found.group(1).split())
    assert listed.startswith("entries: ")
    ids = listed.removeprefix("entries: ").split(", ")
    assert ids == [e.id for e in CATALOGUE.for_outcome("helo_syntax", "HELO_NOT_FQDN")]


def test_lookups() -> None:
    assert {e.id for e in CATALOGUE.for_outcome("reverse_dns", "NO_PTR")} >= {"seed-10", "seed-67"}
    assert CATALOGUE.default_for("reverse_dns", "NO_PTR") is not None
    assert "dnsbl" in CATALOGUE.families
    with pytest.raises(KeyError, match="no catalogue entry 'nope'"):
        CATALOGUE.get("nope")
    assert len(CATALOGUE) == len(CATALOGUE.entries)


# -- loader errors name the entry -----------------------------------------------------

OUTCOME = """
outcomes:
  - policy: reverse_dns
    outcome: NO_PTR
    rfc_note: local policy
    cause: no PTR
    fix: set a PTR
"""


def load(replies: str, outcomes: str = OUTCOME) -> Catalogue:
    return loads(outcomes + "replies:\n" + replies, source="test.yaml", outcomes=builtin_outcomes())


def test_an_entry_is_looked_up_for_the_outcome_it_stands_for() -> None:
    entry = CATALOGUE.entry_for("seed-13", "helo_syntax", "HELO_NOT_FQDN")
    assert entry.template == Reply.parse("550 Illegal HELO/EHLO greeting")


@pytest.mark.parametrize(
    ("entry_id", "policy", "outcome", "message"),
    [
        (
            "seed-131",
            "helo_syntax",
            "HELO_NOT_FQDN",
            "no catalogue entry 'seed-131'; did you mean seed-31, seed-13, seed-11? (entries "
            "for helo_syntax/HELO_NOT_FQDN: seed-13, postfix-helo-not-fqdn, haraka-helo-fqdn,",
        ),
        (
            "seed-12",
            "helo_syntax",
            "HELO_NOT_FQDN",
            "seed-12 is a reply for helo_syntax/HELO_INVALID, not helo_syntax/HELO_NOT_FQDN "
            "(entries for helo_syntax/HELO_NOT_FQDN: seed-13,",
        ),
        (
            "seed-13",
            "my_plugin",
            "REFUSED",
            "seed-13 is a reply for helo_syntax/HELO_NOT_FQDN, not my_plugin/REFUSED "
            "(the catalogue knows no outcome my_plugin/REFUSED)",
        ),
    ],
)
def test_an_entry_for_another_outcome_is_an_error_that_lists_the_fitting_ones(
    entry_id: str, policy: str, outcome: str, message: str
) -> None:
    with pytest.raises(CatalogueError) as err:
        CATALOGUE.entry_for(entry_id, policy, outcome)
    assert str(err.value).startswith(message), err.value


def test_a_minimal_catalogue_loads() -> None:
    catalogue = load(
        """
  - id: mine
    kind: project
    default: true
    policy: reverse_dns
    outcome: NO_PTR
    reply: "550 5.7.25 no PTR for [{ip}]"
"""
    )
    entry = catalogue.get("mine")
    assert entry.template == Reply.parse("550 5.7.25 no PTR for [{ip}]")
    assert entry.cause == "no PTR" and entry.stage is Stage.CONNECT


@pytest.mark.parametrize(
    ("replies", "message"),
    [
        (
            "  - {id: a, kind: project, policy: reverse_dns, outcome: NOPE, reply: '550 x'}",
            "test.yaml replies[0] (a) outcome: no outcome reverse_dns/NOPE",
        ),
        (
            "  - {id: a, kind: project, policy: reverse_dns, outcome: NO_PTR, reply: '550 x'}\n"
            "  - {id: a, kind: project, policy: reverse_dns, outcome: NO_PTR, reply: '550 y'}",
            "test.yaml replies[1] (a) id: 'a' is used twice",
        ),
        (
            "  - {id: b, kind: project, policy: reverse_dns, outcome: NO_PTR, reply: 'no code'}",
            "test.yaml replies[0] (b) reply: a reply must start with a 2xx-5xx code",
        ),
        (
            "  - {id: c, kind: seed, policy: reverse_dns, outcome: NO_PTR, reply: '550 x'}",
            "test.yaml replies[0] (c): a seed names the scenario and case",
        ),
        (
            "  - {id: d, kind: persona, policy: reverse_dns, outcome: NO_PTR, reply: '550 x'}",
            "test.yaml replies[0] (d): a persona reply names its receiver and source",
        ),
        (
            "  - {id: e, kind: project, policy: reverse_dns, outcome: NO_PTR, reply: '550 x',"
            " stage: later}",
            "test.yaml replies[0] (e) stage:",
        ),
        (
            "  - {id: f, kind: project, default: true, policy: reverse_dns, outcome: NO_PTR,"
            " reply: '550 x'}\n"
            "  - {id: g, kind: project, default: true, policy: reverse_dns, outcome: NO_PTR,"
            " reply: '550 y'}",
            "test.yaml replies[1] (g) default: reverse_dns/NO_PTR already has its default in f",
        ),
        (
            "  - {id: h, kind: project, policy: reverse_dns, outcome: NO_PTR, reply: '550 x',"
            " template: '451 x'}",
            "test.yaml replies[0] (h) template: its code and status must be the documented",
        ),
        (
            "  - {id: Bad_Id, kind: project, policy: reverse_dns, outcome: NO_PTR, reply: '550 x'}",
            "test.yaml replies[0] (Bad_Id) id: ids are lowercase",
        ),
        (
            "  - {id: i, kind: project, policy: reverse_dns, outcome: NO_PTR, reply: '550 x',"
            " colour: red}",
            "test.yaml replies[0] (i) colour: Extra inputs are not permitted",
        ),
    ],
)
def test_errors_name_the_entry(replies: str, message: str) -> None:
    with pytest.raises(CatalogueError) as err:
        load(replies)
    assert message in str(err.value)


def test_an_outcome_described_twice_is_an_error() -> None:
    with pytest.raises(CatalogueError, match=r"outcomes\[1\]: reverse_dns/NO_PTR is described"):
        load("  []", OUTCOME + OUTCOME.removeprefix("\noutcomes:\n"))


def test_an_incomplete_outcome_names_it() -> None:
    broken = OUTCOME.replace("    fix: set a PTR\n", "")
    with pytest.raises(CatalogueError, match=r"outcomes\[0\] \(reverse_dns/NO_PTR\) fix"):
        load("  []", broken)


def test_not_yaml_and_not_a_mapping() -> None:
    with pytest.raises(CatalogueError, match="invalid YAML"):
        loads("outcomes: [", source="test.yaml", outcomes=builtin_outcomes())
    with pytest.raises(CatalogueError, match="must be a mapping"):
        loads("- 1", source="test.yaml", outcomes=builtin_outcomes())


# -- the catalogue and the policies cannot disagree -----------------------------------


def test_what_the_policy_declares_is_not_written_twice() -> None:
    # The stage and the RFC flag are the policy's: the catalogue may not state them.
    for key, value in (("stage", "connect"), ("rfc_allows_refusal", "true")):
        stated = OUTCOME.replace("    rfc_note:", f"    {key}: {value}\n    rfc_note:")
        with pytest.raises(CatalogueError) as err:
            load("  []", stated)
        assert f"outcomes[0] (reverse_dns/NO_PTR) {key}: Extra inputs are not permitted" in str(
            err.value
        )


def test_an_outcome_the_policy_does_not_have_is_an_error() -> None:
    unknown = OUTCOME.replace("outcome: NO_PTR", "outcome: NO_SUCH")
    with pytest.raises(CatalogueError) as err:
        load("  []", unknown)
    assert "test.yaml outcomes[0] (reverse_dns/NO_SUCH) outcome: policy reverse_dns has no " in (
        str(err.value)
    )
    assert "its outcomes: NO_PTR, FCRDNS_FAILED" in str(err.value)
    nobody = OUTCOME.replace("policy: reverse_dns", "policy: my_plugin")
    with pytest.raises(CatalogueError, match=r"outcomes\[0\] \(my_plugin/NO_PTR\) outcome: no "):
        load("  []", nobody)


def test_a_reply_naming_a_field_its_outcome_lacks_is_an_error() -> None:
    with pytest.raises(CatalogueError) as err:
        load(
            "  - {id: z, kind: project, policy: reverse_dns, outcome: NO_PTR, reply: '550 {zone}'}"
        )
    assert "test.yaml replies[0] (z) reply: reverse_dns/NO_PTR has no field {zone}" in str(
        err.value
    )
    # The control: a field of the outcome, and a session field, are fine.
    ok = load(
        "  - {id: y, kind: project, policy: reverse_dns, outcome: FCRDNS_FAILED, "
        "reply: '550 {ptr} [{ip}]'}",
        OUTCOME.replace("outcome: NO_PTR", "outcome: FCRDNS_FAILED"),
    )
    assert ok.get("y").fields["ptr"] is HOST


def test_entries_take_stage_flag_and_fields_from_the_policy() -> None:
    reverse = REGISTRY["reverse_dns"]
    no_ptr = next(o for o in reverse.outcomes if o.id == "NO_PTR")
    entry = load(
        "  - {id: x, kind: project, policy: reverse_dns, outcome: NO_PTR, reply: '550 x'}"
    ).get("x")
    assert entry.stage is no_ptr.decided_at is Stage.CONNECT
    assert entry.rfc_allows_refusal is no_ptr.rfc_allows
    assert entry.fields["ip"] is IP
    # Checked against other outcomes, the same text says what those declare.
    other = replace(no_ptr, stage=Stage.MAIL, rfc_allows=not no_ptr.rfc_allows)
    moved = loads(
        OUTCOME + "replies:\n  - {id: x, kind: project, policy: reverse_dns, outcome: NO_PTR,"
        " reply: '550 x'}",
        source="test.yaml",
        outcomes={"reverse_dns": (other,)},
    ).get("x")
    assert moved.stage is Stage.MAIL
    assert moved.rfc_allows_refusal is not no_ptr.rfc_allows
