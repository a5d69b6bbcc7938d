"""Matching an extracted reply against the catalogue, and what explain reports."""

from __future__ import annotations

import difflib
import functools
import math
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..catalogue import Catalogue, Entry
from ..outcome import FieldKind
from ..verdict import Stage
from .bounce import DELIVERED_ACTIONS
from .cache import bundled, cached, installed
from .classes import BounceClass, not_emulated, outcome_of
from .extract import ExplainError, Extracted, decode, extract_all
from .normalise import features, tokens
from .signals import Fact, Signals, decide
from .signals import read as read_signals

#: A match at or above this confidence is reported as recognised. Chosen on the labelled
#: corpus (tests/data/explain_corpus/): documented replies score above 0.9, other
#: receivers' words for a check mostly 0.44 to 0.8, and 28 of the corpus's 31 unrelated
#: bounces (unknown user, mailbox full, greylisting, TLS, DKIM, rate limits) 0.39 or less;
#: the three above share a catalogue reply's own phrase ("Access denied", "Recipient
#: address rejected: unverified address", "too many recipients").
THRESHOLD = 0.42
#: Matches within this distance of the best one are listed beside it.
NEAR = 0.12
#: A catalogue match this close is the catalogue's own reply: it wins over every signal
#: (documented replies score above 0.9, see THRESHOLD).
EXACT = 0.9
MAX_MATCHES = 3


@dataclass(frozen=True)
class Match:
    entry: Entry
    confidence: float


@dataclass
class Explanation:
    """What `explain` found: the input's reply, and the catalogue entries it matches."""

    input: Extracted
    matches: list[Match]
    #: Best score per family, best first (the nearest families when not recognised).
    families: list[tuple[str, float]]
    #: The enhanced status code's registry meaning and the providers' codes in the reply.
    signals: Signals | None = None
    #: The class the signals named, when it decided the answer (not the catalogue's text).
    fact: Fact | None = None

    @property
    def not_emulated(self) -> BounceClass | None:
        """The class strictmx does not emulate that the signals named, if that is the answer."""
        return not_emulated(self.fact.cls) if self.fact is not None else None

    #: This recipient's place among a bounce's (0 for the first, or a single reply):
    #: `strictmx reproduce FILE` reproduces the first, later ones need pinning.
    position: int = 0

    def _reproduce(self, given: str, match: Match, rank: int) -> str:
        recipient = self.input.recipient if self.position else None
        return reproduce_command(given, match, rank, recipient)

    @property
    def recognised(self) -> bool:
        return bool(self.matches) or self.not_emulated is not None

    @property
    def class_name(self) -> str | None:
        """The answer's class: a strictmx family, or a class strictmx does not emulate."""
        if self.not_emulated is not None:
            return self.not_emulated.name
        return self.matches[0].entry.family if self.matches else None

    @property
    def basis(self) -> str | None:
        """What decided the class: the catalogue's texts, or the signals' facts."""
        if not self.recognised:
            return None
        return "signals" if self.fact is not None else "catalogue"

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

    def to_json(self, reproduce_input: str | None = None) -> dict[str, Any]:
        """The issue's JSON shape, plus `recognised`, `text` and `nearest_families`."""
        data: dict[str, Any] = {
            "input_kind": self.input.kind,
            "code": self.input.code,
            "dsn": self.input.dsn,
            "stage": self.input.stage.value if self.input.stage else None,
            "recognised": self.recognised,
            "class": self.class_name,
            "basis": self.basis,
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
        other = self.not_emulated
        if other is not None and self.fact is not None:
            return "\n".join(
                [
                    *out,
                    f"class: {other.name} ({other.statement}; nearest strictmx families are "
                    "not claimed)",
                    f"  because: {self.fact.because}",
                    f"  source:  {self.fact.source}",
                    f"  meaning: {other.meaning}",
                    f"  fix:     {other.fix}",
                ]
            )
        if self.fact is not None and self.matches:
            out.append(
                f"class: {self.fact.family} (from the signals: {self.fact.because}; "
                "the outcomes below are that family's nearest texts)"
            )
            out.append("")
        if not self.recognised:
            out.append("not recognised: no catalogue reply is close enough to say what this is.")
            if self.families:
                nearest = ", ".join(f"{f} ({s:.2f})" for f, s in self.families[:3])
                out.append(f"nearest families: {nearest}")
            return "\n".join(out)
        for n, match in enumerate(self.matches):
            entry = match.entry
            title = "best match" if n == 0 else "also close"
            rfc = "allows" if entry.rfc_allows_refusal else "does NOT allow"
            what = (
                entry.policy if entry.family == entry.policy else f"{entry.family} / {entry.policy}"
            )
            out += [
                f"{title}: {what} {entry.outcome} "
                f"(confidence {match.confidence:.2f}; catalogue entry {entry.id}"
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


@dataclass(frozen=True)
class _Doc:
    """One form of an entry's reply: the template, or the documented text if it differs."""

    entry: Entry
    words: tuple[str, ...]
    vector: dict[str, float]
    norm: float
    detail: str | None  # the enhanced status code's subject.detail ("7.25")
    rclass: str | None  # Postfix's reply class ("sender address"), if the text has one


class Matcher:
    """The catalogue indexed for matching; build once, match many."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        texts = [
            (entry, tokens(" ".join(form.lines), fields=entry.fields))
            for entry in catalogue.entries
            for form in dict.fromkeys((entry.template, entry.reply))
        ]
        df: Counter[str] = Counter()
        for _, words in texts:
            df.update(set(features(words)))
        n = len(texts)
        self.idf = {term: math.log((n + 1) / (count + 1)) + 1.0 for term, count in df.items()}
        self.unknown_idf = math.log(n + 1) + 1.0
        self.docs = [self._doc(entry, words) for entry, words in texts]
        families_by_detail: dict[str, set[str]] = {}
        families_by_label: dict[str, set[str]] = {}
        for doc in self.docs:
            family = doc.entry.family
            if doc.detail:
                families_by_detail.setdefault(doc.detail, set()).add(family)
            for word in doc.words:
                if word.startswith("@"):
                    families_by_label.setdefault(word, set()).add(family)
        self.families_by_detail = families_by_detail
        self.labels = frozenset(w for w, fams in families_by_label.items() if len(fams) == 1)
        # A pasted template ("<{helo}>: Helo command rejected") reads as the same reply with
        # sample values: every field any entry names, with its kind.
        self.fields: dict[str, FieldKind] = {}
        for entry in catalogue.entries:
            for name, kind in entry.fields.items():
                self.fields.setdefault(name, kind)

    def _doc(self, entry: Entry, words: list[str]) -> _Doc:
        vector = {t: c * self.idf[t] for t, c in features(words).items()}
        norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        text = " ".join(entry.template.lines)
        return _Doc(
            entry, tuple(words), vector, norm, _detail(entry.template.status), _reply_class(text)
        )

    def score(self, found: Extracted) -> list[Match]:
        words = tokens(found.text, self.labels, self.fields)
        query: dict[str, float] = {}
        for term, count in features(words).items():
            idf = self.idf.get(term)
            if idf is None:
                if " " in term:
                    continue  # an unseen word pair is how paraphrases differ; skip it
                idf = self.unknown_idf  # an unseen word is content no entry explains
            query[term] = count * idf
        rclass = _reply_class(found.text)
        qnorm = math.sqrt(sum(v * v for v in query.values())) or 1.0
        detail = _detail(found.dsn)
        raw: dict[str, float] = {}
        for doc in self.docs:
            dot = sum(w * doc.vector.get(t, 0.0) for t, w in query.items())
            cosine = dot / (qnorm * doc.norm)
            ratio = difflib.SequenceMatcher(None, words, doc.words, autojunk=False).ratio()
            score = 0.65 * cosine + 0.35 * ratio
            score *= self._signals(found, detail, rclass, doc)
            if score > raw.get(doc.entry.id, -1.0):
                raw[doc.entry.id] = score
        # Ranked by the raw score, so a signal still orders two entries capped at 1.
        ranked = sorted(raw.items(), key=lambda item: item[1], reverse=True)
        return [Match(self.catalogue.get(i), max(0.0, min(1.0, s))) for i, s in ranked]

    def _signals(
        self, found: Extracted, detail: str | None, rclass: str | None, doc: _Doc
    ) -> float:
        factor = 1.0
        if rclass is not None and doc.rclass is not None and rclass != doc.rclass:
            factor *= 0.7  # Postfix names the restriction class that refused; it differs
        if doc.entry.borrowed:
            factor *= 0.97  # the text is another check's: rank its owner first
        if detail is not None:
            families = self.families_by_detail.get(detail)
            if families is None:
                factor *= 0.8  # a code no strict-receiver check uses: likely something else
            elif len(families) <= 2 and detail not in ("7.1", "7.0", "0.0"):
                factor *= 1.12 if doc.entry.family in families else 0.9
            elif doc.detail == detail:
                factor *= 1.03
        if found.stage is not None and not _stage_fits(found.stage, doc.entry):
            factor *= 0.85
        if found.code is not None and str(found.code)[0] != str(doc.entry.template.code)[0]:
            factor *= 0.95
        return factor


#: Postfix's reply classes (smtpd_check.c, smtpd_dsn_fix.h): which restriction list refused.
_CLASS = re.compile(
    r"\b(unverified client host|client host|helo command|sender address|recipient address|"
    r"data command|end-of-data|etrn command) rejected\b",
    re.I,
)


def _reply_class(text: str) -> str | None:
    found = _CLASS.search(text)
    return found.group(1).lower() if found else None


def _detail(status: str | None) -> str | None:
    if not status:
        return None
    return status.split(".", 1)[1]


def _stage_fits(stage: Stage, entry: Entry) -> bool:
    """Could a receiver refusing for this entry's reason answer at `stage`?"""
    decided = entry.stage
    if stage == decided:
        return True
    early = (Stage.CONNECT, Stage.HELO, Stage.MAIL)
    if stage == Stage.RCPT and decided in early:
        return True  # delay_reject: Postfix gives client, HELO and sender refusals at RCPT
    if stage in (Stage.DATA, Stage.EOD) and decided in early:
        return True  # large providers decide client and sender checks after the data
    return stage in early and decided in early and early.index(stage) > early.index(decided)


@dataclass
class Explainer:
    """Explain inputs against a catalogue (the bundled one unless given)."""

    catalogue: Catalogue = field(default_factory=bundled)
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
        # A bounce to many recipients often gives them all the same reply: scored once.
        scored: dict[tuple[object, ...], list[Match]] = {}
        for found in extract_all(text):
            if found.action is not None and found.action not in ("failed", "delayed"):
                out.append(Explanation(found, [], []))  # delivered or a complaint
                continue
            if not found.text.strip() and found.code is None:
                if found.action is not None:
                    out.append(Explanation(found, [], []))  # a recipient without a reason
                    continue
                raise ExplainError("no SMTP reply found in the input")
            key = (found.text, found.code, found.dsn, found.stage)
            ranked = scored.get(key)
            if ranked is None:
                ranked = scored[key] = self.matcher.score(found)
            signals = read_signals(found)
            matches, fact = self._choose(ranked, decide(signals))
            out.append(Explanation(found, matches, _by_family(ranked), signals, fact))
        for position, explanation in enumerate(out):
            explanation.position = position
        return out

    def _choose(
        self, ranked: Sequence[Match], fact: Fact | None
    ) -> tuple[list[Match], Fact | None]:
        """The catalogue's matches, or the class the signals name where they disagree.

        A catalogue text that matches exactly wins, and so does a match in a family that
        the fact names or whose own replies carry the same enhanced status code (Postfix's
        `reject_unknown_helo_hostname` text with 5.7.25 is helo_dns, not reverse_dns).
        Otherwise the fact decides: for a strictmx family its nearest outcomes are listed;
        for a class strictmx does not emulate, no family is claimed.
        """
        picked = _pick(ranked)
        if fact is None or (ranked and ranked[0].confidence >= EXACT):
            return picked, None
        family = fact.family
        compatible = {family} | self.matcher.families_by_detail.get(fact.detail or "", set())
        if picked and picked[0].entry.family in compatible:
            return picked, None
        if family in self.catalogue.families:
            in_family = [m for m in ranked if m.entry.family == family]
            outcome = outcome_of(fact.cls)
            if outcome is not None:
                # The class is one outcome of the family: that outcome's texts rank first.
                in_family.sort(key=lambda m: m.entry.outcome != outcome)
            return _pick_family(in_family), fact
        return [], fact


def _pick(ranked: Sequence[Match]) -> list[Match]:
    """The best match per outcome, at the threshold and near the best."""
    if not ranked or ranked[0].confidence < THRESHOLD:
        return []
    return _nearest(ranked, max(THRESHOLD, ranked[0].confidence - NEAR))


def _pick_family(ranked: Sequence[Match]) -> list[Match]:
    """A family's nearest outcomes, when the signals named the family: no threshold, since
    the text only ranks the family's outcomes and the class is not in doubt."""
    if not ranked:
        return []
    return _nearest(ranked, ranked[0].confidence - NEAR)


def _nearest(ranked: Sequence[Match], floor: float) -> list[Match]:
    """The best match per outcome down to `floor`, at most MAX_MATCHES."""
    out: list[Match] = []
    seen: set[tuple[str, str]] = set()
    for match in ranked:
        if match.confidence < floor or len(out) == MAX_MATCHES:
            break
        key = (match.entry.policy, match.entry.outcome)
        if key not in seen:
            seen.add(key)
            out.append(match)
    return out


def _by_family(ranked: Iterable[Match]) -> list[tuple[str, float]]:
    best: dict[str, float] = {}
    for match in ranked:
        best.setdefault(match.entry.family, match.confidence)
    return sorted(best.items(), key=lambda item: item[1], reverse=True)


@functools.cache
def default_explainer() -> Explainer:
    """The bundled catalogue and the installed plug-ins' outcomes, indexed once and kept
    between runs (cache.py: building it imports every policy)."""
    return cached("explainer", _installed_explainer, Explainer)


def _installed_explainer() -> Explainer:
    return Explainer(installed())


def explain(text: str) -> Explanation:
    return default_explainer().explain(text)


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
