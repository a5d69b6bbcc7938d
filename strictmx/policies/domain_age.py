"""domain_age: refuse senders whose domain was registered only days ago."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field

from strictmx.receiver.outcome import HOST, NUMBER, TEXT
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import CLOCK, Build, Request, domain_of, sender_in
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Action, Stage, Verdict
from strictmx.receiver.world.registrations import RegistrationTempFail
from strictmx.receiver.world.suffixes import registry_domain


class DomainAgeOptions(PolicyOptions):
    min_age_days: int = Field(
        30, ge=1, description="Refuse sender domains registered fewer than this many days ago."
    )
    unknown: Literal["accept", "defer", "reject"] = Field(
        "accept",
        description="A domain whose registration date is unknown (not in the world, RDAP "
        "404): accept it, defer it, or refuse it.",
    )


class DomainAge(Policy[DomainAgeOptions]):
    """Refuse MAIL FROM domains registered more recently than `min_age_days` days.

    Runs at MAIL. The sender's domain is reduced to its registered domain (public suffix
    plus one label: `mail.shop.example.co.uk` -> `example.co.uk`), whose registration date
    comes from the world (`world.registrations`: the scenario's table, or RDAP per
    RFC 9083, the `registration` event). Its age is counted in whole days from that date
    to the scenario clock's today (UTC); an age under `min_age_days` -> DOMAIN_TOO_NEW.
    A registration date in the future counts as new.

    The null sender `<>`, an address literal, and a domain that is itself a public suffix
    have no registration to judge: no opinion.

    A domain with no known registration date (not in a hermetic table, or RDAP answers
    404) is accepted by default; `unknown: reject` refuses it (DOMAIN_AGE_UNKNOWN) and
    `unknown: defer` defers it (DOMAIN_AGE_TEMPFAIL). When the registry cannot be asked
    (timeout, unreachable, HTTP error, malformed answer, or a scripted `tempfail`) the
    mail is deferred (DOMAIN_AGE_TEMPFAIL), never refused.

    Default replies have the shape Postfix gives a sender restriction's REJECT (a
    check_policy_service answer: access_map_reject_code 554, DSN 5.7.1, "<sender>: Sender
    address rejected: text"; DEFER: access_map_defer_code 450). seed-57 ("550 Message not
    sent - New domain not yet verified") is an override of DOMAIN_TOO_NEW.

    RFC 5321 does not forbid refusing mail for who the sender is, so every outcome is
    allowed.
    """

    name = "domain_age"
    summary = "Sender domain must have been registered at least min_age_days ago"
    stages = frozenset({Stage.MAIL})
    Options = DomainAgeOptions
    outcomes = (
        Outcome(
            "DOMAIN_TOO_NEW",
            FROM_CATALOGUE,
            "The sender's registered domain is younger than min_age_days.",
            fields={"domain": HOST, "registered": TEXT, "age": NUMBER, "min_age": NUMBER},
        ),
        Outcome(
            "DOMAIN_AGE_UNKNOWN",
            FROM_CATALOGUE,
            "No registration date is known for the sender's domain (unknown: reject).",
            fields={"domain": HOST},
        ),
        Outcome(
            "DOMAIN_AGE_TEMPFAIL",
            FROM_CATALOGUE,
            "The registry could not be asked now, or the date is unknown (unknown: defer).",
            action=Action.DEFER,
            fields={"domain": HOST},
        ),
    )

    @classmethod
    def read_reply(cls, outcome: str, text: str) -> dict[str, str]:
        """Its refusals name the sender, in angle brackets or bare."""
        return sender_in(text)

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """The sender's registered domain registered days ago, unknown, or its lookup failing."""
        domain = registry_domain(domain_of(req.identity.mail_from)) or "example.net"
        registrations: dict[str, Any] = {"mode": "hermetic"}
        options: dict[str, Any] = {"min_age_days": 30}
        outcome = req.entry.outcome
        if outcome == "DOMAIN_TOO_NEW":
            registrations["domains"] = {domain: (CLOCK - timedelta(days=5)).date().isoformat()}
        elif outcome == "DOMAIN_AGE_UNKNOWN":
            options["unknown"] = "reject"
        else:
            registrations["tempfail"] = [domain]
        return Build(
            options=options,
            world={"clock": {"fixed": CLOCK.isoformat()}, "registrations": registrations},
            bound={"domain": domain},
        )

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        sender = session.mail_from
        if not sender:
            return None
        _, at, domain = sender.rpartition("@")
        name = registry_domain(domain) if at else None
        if name is None:
            return None
        which = name if name == domain.lower() else f"{name} (the registered domain of {domain})"
        try:
            registered = await ctx.world.registrations.registered(name)
        except RegistrationTempFail as exc:
            return self.verdict(
                "DOMAIN_AGE_TEMPFAIL",
                stage,
                session,
                ctx,
                f"cannot learn when {which} was registered: {exc.detail}",
                domain=name,
            )
        if registered is None:
            return self._unknown(stage, session, ctx, name, which)
        age = (ctx.clock.now().date() - registered).days
        limit = self.options.min_age_days
        if age >= limit:
            return None
        when = "in the future" if age < 0 else f"{age} days ago"
        return self.verdict(
            "DOMAIN_TOO_NEW",
            stage,
            session,
            ctx,
            f"{which} was registered on {registered.isoformat()}, {when}; "
            f"domains younger than {limit} days are refused",
            domain=name,
            registered=registered.isoformat(),
            age=age,
            min_age=limit,
        )

    def _unknown(
        self, stage: Stage, session: Session, ctx: Context, name: str, which: str
    ) -> Verdict | None:
        if self.options.unknown == "accept":
            return None
        reason = f"no registration date is known for {which}"
        if self.options.unknown == "defer":
            return self.verdict("DOMAIN_AGE_TEMPFAIL", stage, session, ctx, reason, domain=name)
        return self.verdict("DOMAIN_AGE_UNKNOWN", stage, session, ctx, reason, domain=name)
