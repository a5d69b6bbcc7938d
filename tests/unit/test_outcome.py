"""An outcome declares its stage and its fields' kinds; the class checks them when defined."""

from __future__ import annotations

import re
from typing import ClassVar

import pytest

from strictmx.receiver import outcome as kinds
from strictmx.receiver.outcome import HOST, IP, NUMBER, TEXT, Outcome
from strictmx.receiver.policy import Policy, PolicyOptions
from strictmx.receiver.registry import builtin_policies
from strictmx.receiver.session import BASE_FIELDS
from strictmx.receiver.verdict import Stage


def test_the_session_fields_have_kinds() -> None:
    assert set(kinds.BASE) == BASE_FIELDS


def test_every_builtin_outcome_has_a_stage_of_its_policy_and_typed_fields() -> None:
    for cls in builtin_policies().values():
        for o in cls.outcomes:
            assert o.decided_at in cls.stages, f"{cls.name}/{o.id}"
            assert o.also_at <= cls.stages - {o.decided_at}, f"{cls.name}/{o.id}"
            assert all(kind in kinds.KINDS for kind in o.all_fields.values())


def test_each_kind_reads_its_own_sample() -> None:
    for kind in kinds.KINDS:
        assert re.fullmatch(kind.pattern, kind.sample), kind
    assert not re.fullmatch(IP.pattern, "host.example.net")
    assert not re.fullmatch(NUMBER.pattern, "ten")


def test_a_field_of_no_kind_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match=r"field 'zone' has kind 'a zone'; use one of .*HOST"):

        class Bad(Policy[PolicyOptions]):
            name = "bad"
            stages = frozenset({Stage.CONNECT})
            outcomes: ClassVar[tuple[Outcome, ...]] = (
                Outcome("BAD", "550 {zone}", "bad", fields={"zone": "a zone"}),  # type: ignore[dict-item]
            )


def test_a_stage_the_policy_does_not_run_at_is_refused() -> None:
    with pytest.raises(TypeError, match="stage mail is not one of the policy's stages"):

        class Bad(Policy[PolicyOptions]):
            name = "bad"
            stages = frozenset({Stage.CONNECT})
            outcomes: ClassVar[tuple[Outcome, ...]] = (
                Outcome("BAD", "550 no", "bad", also_at=frozenset({Stage.MAIL})),
            )


def test_undeclared_stage_and_bare_names_are_read_leniently() -> None:
    class Old(Policy[PolicyOptions]):
        name = "old"
        stages = frozenset({Stage.MAIL, Stage.CONNECT})
        outcomes: ClassVar[tuple[Outcome, ...]] = (
            Outcome("OLD", "550 {why} {where}", "old", fields=("why",)),
            Outcome("NEW", "550 {ptr}", "new", fields={"ptr": HOST}, stage=Stage.MAIL),
        )

    old, new = Old.outcomes
    assert old.decided_at is Stage.CONNECT and old.also_at == {Stage.MAIL}
    assert old.all_fields["why"] is TEXT and old.all_fields["ip"] is IP
    assert new.decided_at is Stage.MAIL and new.also_at == frozenset()
    assert new.all_fields["ptr"] is HOST
