"""A third-party policy that declares its fields and its reproduction is explained and
reproduced like a built-in one, with no change to strictmx: its bounce is recognised, and
the reproduction, played over SMTP, refuses with the customer's exact reply."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import Field

from strictmx.receiver import runner
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.explain import Explainer
from strictmx.receiver.outcome import HOST, NUMBER, ZONE, Outcome
from strictmx.receiver.policy import Context, Policy, PolicyClass, PolicyOptions
from strictmx.receiver.registry import builtin_policies, bundled
from strictmx.receiver.reproduce import ReproduceError, reproduce
from strictmx.receiver.reproduction import Build, Request, dns_world
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Stage, Verdict

pytestmark = pytest.mark.e2e


class FlagOptions(PolicyOptions):
    zone: str = Field("flags.example.org", description="The zone that flags sender domains.")


class DomainFlag(Policy[FlagOptions]):
    """Refuses a sender whose domain has a TXT record (minutes since flagged) in a zone."""

    name = "domain_flag"
    stages = frozenset({Stage.MAIL})
    Options = FlagOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "DOMAIN_FLAGGED",
            "550 5.7.1 <{sender}>: domain {domain} was flagged in {zone} {minutes} minutes ago",
            "The sender's domain is flagged in the operator's zone.",
            fields={"domain": HOST, "zone": ZONE, "minutes": NUMBER},
        ),
    )

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        domain = (session.mail_from or "").rpartition("@")[2].lower()
        if not domain:
            return None
        found = await ctx.dns.txt(f"{domain}.{self.options.zone}")
        if not found:
            return None
        fields = {"domain": domain, "zone": self.options.zone, "minutes": found[0]}
        return self.verdict("DOMAIN_FLAGGED", stage, session, ctx, "flagged", **fields)

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        domain = req.identity.mail_from.rpartition("@")[2]
        zone = req.fields.get("zone", "flags.example.org")
        minutes = req.fields.get("minutes", "5")
        return Build(
            options={"zone": zone},
            world=dns_world({f"{domain}.{zone}": {"TXT": minutes}}),
            bound={"domain": domain, "zone": zone, "minutes": minutes},
        )


class Silent(DomainFlag):
    """The same refusal, from a policy that does not say how to reproduce it."""

    name = "silent_flag"
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome("SILENTLY_FLAGGED", "550 5.7.1 silently flagged, no more said", "flagged"),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build | None:
        return None


PLUGINS: tuple[PolicyClass, ...] = (DomainFlag, Silent)  # type: ignore[assignment]
REGISTRY = {**builtin_policies(), **{cls.name: cls for cls in PLUGINS}}
EXPLAINER = Explainer(bundled().with_policies({n: c.outcomes for n, c in REGISTRY.items()}))
BOUNCE = (
    "550 5.7.1 <bob@shady.example>: domain shady.example was flagged in "
    "flags.example.net 42 minutes ago"
)


def test_explain_recognises_the_plugin_outcome() -> None:
    best = EXPLAINER.explain(BOUNCE).best
    assert best is not None
    assert (best.entry.policy, best.entry.outcome) == ("domain_flag", "DOMAIN_FLAGGED")
    assert best.entry.stage is Stage.MAIL
    assert best.entry.cause == "The sender's domain is flagged in the operator's zone."
    # The control: a built-in refusal is still the built-in's.
    builtin = EXPLAINER.explain("550 5.7.1 Client host rejected: cannot find your hostname")
    assert builtin.best is not None and builtin.best.entry.policy == "reverse_dns"


def test_the_bundled_catalogue_alone_does_not_know_it() -> None:
    alone = Explainer(bundled()).explain(BOUNCE).best
    assert alone is None or alone.entry.policy != "domain_flag"


def test_reproduce_reads_the_fields_by_kind_and_the_refusal_replays() -> None:
    result = reproduce(BOUNCE, explainer=EXPLAINER, registry=REGISTRY)
    assert result.entry.policy == "domain_flag"
    assert result.identity.mail_from == "bob@shady.example"
    listed = result.scenario["policies"]["mail"][0]
    assert listed["zone"] == "flags.example.net"
    # The customer's identifiers became placeholders in the reply the policy is given.
    assert listed["replies"]["DOMAIN_FLAGGED"] == (
        "550 5.7.1 <{sender}>: domain {domain} was flagged in {zone} {minutes} minutes ago"
    )
    scenario = scenarios.from_dict(result.scenario, source="<reproduction>", registry=REGISTRY)
    checks = runner.run(scenario)
    assert [c.problems for c in checks if not c.passed] == []
    assert checks[-1].observed.lines == [BOUNCE] == result.expected


def test_a_policy_without_a_reproduction_says_so() -> None:
    silent = "550 5.7.1 silently flagged, no more said"
    with pytest.raises(ReproduceError, match="'silent_flag' does not say how to reproduce"):
        reproduce(silent, explainer=EXPLAINER, registry=REGISTRY)
