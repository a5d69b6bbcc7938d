"""What `strictmx explain` says about one recipient's reply: as text and as JSON."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .bounce import DELIVERED_ACTIONS
from .classes import BounceClass, not_emulated
from .extract import Extracted
from .match import Match
from .signals import Fact, Signals

#: How many of the features that weighed most for the class are shown as its reasons.
REASONS = 4


@dataclass
class Explanation:
    """What `explain` found: the input's reply, its class and how sure, and the catalogue
    entries of that class whose texts are nearest."""

    input: Extracted
    #: The class: a strictmx family, a class strictmx does not emulate, or None when
    #: nothing is claimed (no class reached the model's claim threshold).
    cls: str | None = None
    #: The class's calibrated probability (the model's), or the text similarity of an
    #: exact catalogue reply of a family the model was not fitted on (a plug-in's).
    confidence: float | None = None
    #: The class's outcomes whose catalogue texts are nearest, best first (`confidence` on a
    #: match is its text similarity: how close the reply is to that outcome's text).
    matches: list[Match] = field(default_factory=list)
    #: Every class with its probability, most probable first (the nearest, when nothing is
    #: claimed).
    classes: list[tuple[str, float]] = field(default_factory=list)
    #: The features that weighed most for the class, with their weight.
    reasons: list[tuple[str, float]] = field(default_factory=list)
    #: The enhanced status code's registry meaning and the providers' codes in the reply.
    signals: Signals | None = None
    #: The class the signals name by themselves, when it agrees with the answer.
    fact: Fact | None = None
    #: This recipient's place among a bounce's (0 for the first, or a single reply):
    #: `strictmx reproduce FILE` reproduces the first, later ones need pinning.
    position: int = 0

    @property
    def not_emulated(self) -> BounceClass | None:
        """The class strictmx does not emulate, if that is the answer."""
        return not_emulated(self.cls) if self.cls is not None else None

    @property
    def recognised(self) -> bool:
        return self.cls is not None

    @property
    def class_name(self) -> str | None:
        return self.cls

    @property
    def families(self) -> list[tuple[str, float]]:
        """The nearest classes other than `unknown`, with their probabilities."""
        return [(name, p) for name, p in self.classes if name != "unknown"]

    @property
    def not_a_refusal(self) -> str | None:
        """Why this recipient's report is no refusal (a delivery, a complaint), or None."""
        action = self.input.action
        if action in DELIVERED_ACTIONS:
            return f"{action}: the message reached this recipient's server; nothing was refused"
        if action == "complaint":
            return (
                "a feedback report (RFC 5965): the message was delivered and the recipient "
                "or their provider reported it as unwanted; nothing was refused"
            )
        return None

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    def _reproduce(self, given: str, match: Match, rank: int) -> str:
        recipient = self.input.recipient if self.position else None
        return reproduce_command(given, match, rank, recipient)

    def to_json(self, reproduce_input: str | None = None) -> dict[str, Any]:
        """The issue's JSON shape, plus `recognised`, `class`, `confidence` and the reasons."""
        data: dict[str, Any] = {
            "input_kind": self.input.kind,
            "code": self.input.code,
            "dsn": self.input.dsn,
            "stage": self.input.stage.value if self.input.stage else None,
            "recognised": self.recognised,
            "class": self.cls,
            "confidence": round(self.confidence, 3) if self.confidence is not None else None,
            "reasons": [{"feature": f, "weight": round(w, 3)} for f, w in self.reasons],
            "text": self.input.text,
            "matches": [
                {
                    "family": m.entry.family,
                    "policy": m.entry.policy,
                    "outcome": m.entry.outcome,
                    "confidence": round(m.confidence, 3),
                    "cause": m.entry.cause,
                    "fix": m.entry.fix,
                    "rfc_allows_refusal": m.entry.rfc_allows_refusal,
                    "entry": m.entry.id,
                    "stage": m.entry.stage.value,
                    "rfc_note": m.entry.rfc_note,
                    "reproduce": self._reproduce(reproduce_input, m, n)
                    if reproduce_input is not None
                    else None,
                }
                for n, m in enumerate(self.matches)
            ],
        }
        if self.input.action is not None:
            data["recipient"] = self.input.recipient
            data["action"] = self.input.action
            data["remote_mta"] = self.input.remote
            data["bounce_format"] = self.input.bounce_format
            data["not_a_refusal"] = self.not_a_refusal
        if not self.recognised and self.not_a_refusal is None:
            data["nearest_families"] = [
                {"family": family, "confidence": round(score, 3)}
                for family, score in self.families[:3]
            ]
        other = self.not_emulated
        data["not_emulated"] = (
            {
                "class": other.name,
                "emulated": other.emulated,
                "statement": other.statement,
                "meaning": other.meaning,
                "fix": other.fix,
            }
            if other is not None
            else None
        )
        data["decided_by"] = self.fact.to_json() if self.fact is not None else None
        data["signals"] = self.signals.to_json() if self.signals is not None else None
        return data

    def _render_signals(self) -> list[str]:
        if self.signals is None:
            return []
        out = []
        if self.signals.status is not None:
            out.append(f"  {self.signals.status.render()}")
        out += [f"  provider code: {hit.render()}" for hit in self.signals.providers]
        if not out:
            return []
        source = self.signals.status.source if self.signals.status else None
        return ["signals:", *out, *([f"  registry: {source}"] if source else []), ""]

    def _render_class(self) -> list[str]:
        sure = f"confidence {self.confidence:.2f}" if self.confidence is not None else ""
        out = [f"class: {self.cls} ({sure})"]
        if self.reasons:
            out.append("  weighed most: " + ", ".join(_reason(f) for f, _ in self.reasons))
        if self.fact is not None:
            out += [f"  because: {self.fact.because}", f"  source:  {self.fact.source}"]
        return out

    def render(self, reproduce_input: str | None = None) -> str:
        got = self.input
        head = [f"input: {got.kind}"]
        if got.code is not None or got.dsn:
            head.append(f"code {got.code or '-'} {got.dsn or ''}".rstrip())
        if got.stage:
            head.append(f"answered at {got.stage.value}")
        out = [", ".join(head)]
        if got.action is not None:
            remote = f" at {got.remote}" if got.remote else ""
            out.append(f"recipient: {got.recipient or '(not named)'}: {got.action}{remote}")
        out += [f"reply: {_clip(got.text, 300)}", ""]
        if self.not_a_refusal is not None:
            out.append(self.not_a_refusal + ".")
            return "\n".join(out)
        out += self._render_signals()
        if not self.recognised:
            out.append("not recognised: no class is likely enough to say what this is.")
            if self.families:
                nearest = ", ".join(f"{f} ({s:.2f})" for f, s in self.families[:3])
                out.append(f"nearest classes: {nearest}")
            return "\n".join(out)
        out += self._render_class()
        other = self.not_emulated
        if other is not None:
            out += [
                f"  {other.statement}; the nearest strictmx families are not claimed",
                f"  meaning: {other.meaning}",
                f"  fix:     {other.fix}",
            ]
            return "\n".join(out)
        out.append("")
        for n, match in enumerate(self.matches):
            entry = match.entry
            title = "best match" if n == 0 else "also close"
            rfc = "allows" if entry.rfc_allows_refusal else "does NOT allow"
            what = (
                entry.policy if entry.family == entry.policy else f"{entry.family} / {entry.policy}"
            )
            out += [
                f"{title}: {what} {entry.outcome} "
                f"(text similarity {match.confidence:.2f}; catalogue entry {entry.id}"
                + (f", {entry.receiver}" if entry.receiver else "")
                + ")",
                f"  stage:  decided at {entry.stage.value}",
                f"  cause:  {entry.cause}",
                f"  fix:    {entry.fix}",
                f"  RFC:    RFC 5321 {rfc} this refusal. {entry.rfc_note}",
            ]
            if reproduce_input is not None:
                out.append(f"  reproduce: {self._reproduce(reproduce_input, match, n)}")
            out.append("")
        return "\n".join(out).rstrip()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: How a feature's name reads in the reasons (model.features names them).
_READ = {
    "code": "reply code {}",
    "code_class": "reply class {}xx",
    "status": "enhanced status X.{}",
    "status_subject": "status subject X.{}.x",
    "status_class": "status class {}.x.x",
    "stage": "answered at {}",
    "fact": "the signals name {}",
    "provider": "a provider code names {}",
    "text": "how near the catalogue's {} texts are",
    "no_near_text": "no catalogue text is near",
    "w": "the words '{}'",
}


def _reason(name: str) -> str:
    kind, _, value = name.partition(":")
    template = _READ.get(kind)
    return template.format(value) if template else name


def reproduce_command(
    given: str | None, match: Match, rank: int, recipient: str | None = None
) -> str:
    """The `strictmx reproduce` command line for a match (`given` is how the input came);
    with `recipient`, for that recipient of a bounce rather than its first failed one."""
    source = "-" if given in (None, "-") else shlex.quote(given)
    pin = f" --entry {match.entry.id}" if rank or recipient else ""
    if recipient:
        pin += f" --rcpt {shlex.quote(recipient)}"
    return f"strictmx reproduce {source}{pin} -o reproduce-{match.entry.id}.yaml"


def render_all(explanations: Sequence[Explanation], given: str | None = None) -> str:
    """Several recipients' explanations as text; one is rendered as it always was."""
    if len(explanations) == 1:
        return explanations[0].render(given)
    parts = []
    for n, explanation in enumerate(explanations, 1):
        who = explanation.input.recipient or "(recipient not named)"
        parts.append(
            f"== recipient {n} of {len(explanations)}: {who} ==\n" + (explanation.render(given))
        )
    return "\n\n".join(parts)


def json_all(explanations: Sequence[Explanation], given: str | None = None) -> dict[str, Any]:
    """Several recipients' explanations as JSON; one gives its own object as always."""
    if len(explanations) == 1:
        return explanations[0].to_json(given)
    first = explanations[0].input
    return {
        "input_kind": first.kind,
        "bounce_format": first.bounce_format,
        "sender": first.sender,
        "recipients": [e.to_json(given) for e in explanations],
    }


def all_recognised(explanations: Sequence[Explanation]) -> bool:
    """Every refusal recognised (deliveries and complaints are known for what they are)."""
    return all(e.recognised or e.not_a_refusal is not None for e in explanations)
