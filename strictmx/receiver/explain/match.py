"""How close a reply's text is to each catalogue entry's: the text evidence explain weighs.

A TF-IDF cosine over word unigrams and bigrams, blended with difflib's sequence ratio over
the same tokens (word order matters in short replies), against every entry's template and
documented reply. Both sides are normalised first (normalise.py). The enhanced status code,
Postfix's restriction class and the stage nudge the score where they fit or contradict an
entry. These similarities are evidence: the class is named by the fitted model (model.py),
which weighs them beside the status codes, the providers' codes and the words.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..catalogue import Catalogue, Entry
from ..outcome import FieldKind
from ..verdict import Stage
from .extract import Extracted
from .normalise import features, tokens

#: A catalogue match this close is the catalogue's own reply (documented replies score
#: above 0.9): it names the class before the model is asked.
EXACT = 0.9
#: Outcomes within this similarity of the best one are listed beside it.
NEAR = 0.12


@dataclass(frozen=True)
class Match:
    entry: Entry
    confidence: float


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

    def words(self, found: Extracted) -> list[str]:
        """The reply's normalised words, as the catalogue's were normalised."""
        return tokens(found.text, self.labels, self.fields)

    def score(self, found: Extracted, words: list[str] | None = None) -> list[Match]:
        """Every entry with its similarity to the reply, most similar first."""
        if words is None:
            words = self.words(found)
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


def best_per_family(ranked: Iterable[Match]) -> list[tuple[str, float]]:
    """Each family's best similarity, best first."""
    best: dict[str, float] = {}
    for match in ranked:
        best.setdefault(match.entry.family, match.confidence)
    return sorted(best.items(), key=lambda item: item[1], reverse=True)
