"""The explainer: every recipient of an input, its evidence, and the class the model names."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..catalogue import Catalogue
from .cache import bundled, cached, installed
from .classes import outcome_of
from .explanation import REASONS, Explanation
from .extract import ExplainError, Extracted, decode, extract_all
from .match import EXACT, NEAR, Match, Matcher, best_per_family
from .model import CLAIM, UNKNOWN, Model, features, reasons
from .model import bundled as bundled_model
from .signals import Fact, Signals, decide
from .signals import read as read_signals

MAX_MATCHES = 3


@dataclass(frozen=True)
class Evidence:
    """Everything known about one reply before a class is named: the catalogue's texts
    ranked by similarity, the signals, the class they name by themselves, and the features
    the model weighs."""

    ranked: list[Match]
    signals: Signals
    fact: Fact | None
    features: dict[str, float]


@dataclass
class Explainer:
    """Explain inputs against a catalogue (the bundled one unless given) with the fitted
    model (the bundled one unless given; None only to gather evidence for fitting one)."""

    catalogue: Catalogue = field(default_factory=bundled)
    model: Model | None = field(default_factory=bundled_model)
    matcher: Matcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.matcher = Matcher(self.catalogue)

    def explain_bytes(self, data: bytes) -> Explanation:
        return self.explain(decode(data))

    def explain(self, text: str) -> Explanation:
        """The input's reply explained; of a bounce e-mail, its first failed recipient."""
        return self.explain_all(text)[0]

    def explain_all(self, text: str) -> list[Explanation]:
        """One explanation per recipient of a bounce e-mail (failed ones first), or one."""
        if not text.strip():
            raise ExplainError("empty input: give a reply line, a DSN e-mail, or a mail log line")
        out = []
        # A bounce to many recipients often gives them all the same reply: weighed once.
        weighed: dict[tuple[object, ...], Evidence] = {}
        for found in extract_all(text):
            if found.action is not None and found.action not in ("failed", "delayed"):
                out.append(Explanation(found))  # delivered or a complaint
                continue
            if not found.text.strip() and found.code is None:
                if found.action is not None:
                    out.append(Explanation(found))  # a recipient without a reason
                    continue
                raise ExplainError("no SMTP reply found in the input")
            key = (found.text, found.code, found.dsn, found.stage)
            evidence = weighed.get(key)
            if evidence is None:
                evidence = weighed[key] = self.evidence(found)
            out.append(self.decide(found, evidence))
        for position, explanation in enumerate(out):
            explanation.position = position
        return out

    def evidence(self, found: Extracted) -> Evidence:
        words = self.matcher.words(found)
        ranked = self.matcher.score(found, words)
        signals = read_signals(found)
        fact = decide(signals)
        scores = dict(best_per_family(ranked))
        return Evidence(ranked, signals, fact, features(found, signals, fact, scores, words))

    def decide(self, found: Extracted, evidence: Evidence) -> Explanation:
        """The class: the catalogue's own reply when the text is one (exact template matches
        first), else the model's most probable class if it reaches the claim threshold."""
        if self.model is None:
            raise ExplainError("no explain model loaded")
        probabilities = self.model.probabilities(evidence.features)
        ranked = evidence.ranked
        cls: str | None
        model = self.model
        top = ranked[0] if ranked else None
        if top is not None and top.confidence >= EXACT:
            cls = top.entry.family
            confidence = dict(probabilities).get(cls, top.confidence)
        elif (
            top is not None
            and top.entry.family not in model.classes
            and top.confidence >= model.text_claim
        ):
            # A family the model was never fitted on (a plug-in's): its text is all there is
            # to go on, claimed where the fit measured texts this near to be right.
            cls, confidence = top.entry.family, model.text_claim_precision
        else:
            cls, confidence = probabilities[0]
            fact = evidence.fact
            if (cls == UNKNOWN or confidence < CLAIM) and fact is not None:
                # The words are new to the model, but the code names a class that the
                # fitting data showed to be right when named (a 5.7.28, Comcast's BL000001).
                measured = model.fact_claims.get(fact.family)
                if measured is not None:
                    cls, confidence = fact.family, measured
            if cls == UNKNOWN or confidence < CLAIM:
                return Explanation(
                    found, classes=probabilities, signals=evidence.signals, fact=None
                )
        fact = evidence.fact
        if fact is not None and cls not in (fact.cls, fact.family):
            fact = None  # the signals named another class: not this answer's reason
        matches: list[Match] = []
        if cls in self.catalogue.families:
            in_family = [m for m in ranked if m.entry.family == cls]
            outcome = outcome_of(fact.cls) if fact is not None else None
            if outcome is not None:
                # The class is one outcome of the family: that outcome's texts rank first.
                in_family.sort(key=lambda m: m.entry.outcome != outcome)
            matches = _nearest(in_family)
            if matches and matches[0].confidence >= EXACT:
                # Another check that sends this very text is named too (Postfix's
                # reject_rbl_client text is also a policy service's): the reader decides.
                shared = [m for m in ranked if m.entry.family != cls and m.confidence >= EXACT]
                matches = _nearest([*matches, *shared], matches[0].confidence - NEAR)
        return Explanation(
            found,
            cls=cls,
            confidence=confidence,
            matches=matches,
            classes=probabilities,
            reasons=reasons(model, evidence.features, cls, REASONS),
            signals=evidence.signals,
            fact=fact,
        )


def _nearest(ranked: Sequence[Match], floor: float | None = None) -> list[Match]:
    """A class's nearest outcomes: the best match per outcome within NEAR of the best (or
    down to `floor`), at most MAX_MATCHES (the class is decided; the texts rank its outcomes)."""
    out: list[Match] = []
    seen: set[tuple[str, str]] = set()
    if floor is None:
        floor = ranked[0].confidence - NEAR if ranked else 0.0
    for match in ranked:
        if match.confidence < floor or len(out) == MAX_MATCHES:
            break
        key = (match.entry.policy, match.entry.outcome)
        if key not in seen:
            seen.add(key)
            out.append(match)
    return out


@functools.cache
def default_explainer() -> Explainer:
    """The bundled catalogue and the installed plug-ins' outcomes, indexed once and kept
    between runs (cache.py: building it imports every policy)."""
    return cached("explainer", _installed_explainer, Explainer)


def _installed_explainer() -> Explainer:
    return Explainer(installed())


def explain(text: str) -> Explanation:
    return default_explainer().explain(text)
