"""How well `explain` names the class of labelled bounces: the figures issue #15 asks for.

For each item of a corpus split, the class explain names for its first failed recipient
(`unknown` when nothing is claimed or no reply is found) is compared with the label. The
report gives the overall accuracy, the accuracy per class, the precision of claims (a claim
is a class named at the claim threshold: how often a claim is right), the recall of policy
refusals (of the bounces a strictmx policy emulates, how many are named right), the
calibration of the confidences (expected calibration error over 10 bins), the accuracy per
source, and the confusion matrix.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .classes import family_of
from .corpus import Item
from .explainer import Explainer
from .extract import ExplainError
from .model import UNKNOWN

_BINS = 10


@dataclass(frozen=True)
class Scored:
    item: Item
    truth: str  # the label as a class explain can name (recipient_unknown is local_recipients)
    predicted: str  # the class named, or `unknown`
    confidence: float | None  # of a claim

    @property
    def right(self) -> bool:
        return self.truth == self.predicted

    @property
    def claimed(self) -> bool:
        return self.predicted != UNKNOWN


def score(explainer: Explainer, items: Iterable[Item]) -> list[Scored]:
    out = []
    for item in items:
        try:
            found = explainer.explain(item.input)
        except ExplainError:
            out.append(Scored(item, family_of(item.label), UNKNOWN, None))
            continue
        predicted = found.class_name if found.recognised else None
        out.append(Scored(item, family_of(item.label), predicted or UNKNOWN, found.confidence))
    return out


@dataclass(frozen=True)
class Report:
    scored: Sequence[Scored]
    #: The strictmx families (a label in one of them is a policy refusal).
    families: frozenset[str]

    def only(self, files: Iterable[str]) -> Report:
        """The report on the items of some corpus files only."""
        keep = set(files)
        return Report([s for s in self.scored if s.item.file in keep], self.families)

    def headline(self, title: str) -> str:
        """The three target figures on one line."""
        return (
            f"{title}: {len(self.scored)} items, accuracy {self.accuracy:.3f}, precision "
            f"{self.precision:.3f} ({len(self.claims)} claims), recall {self.recall:.3f} "
            f"({len(self.policy_refusals)} policy refusals), ECE {self.calibration_error:.3f}"
        )

    @property
    def accuracy(self) -> float:
        return _ratio(sum(s.right for s in self.scored), len(self.scored))

    @property
    def claims(self) -> list[Scored]:
        return [s for s in self.scored if s.claimed]

    @property
    def precision(self) -> float:
        claims = self.claims
        return _ratio(sum(s.right for s in claims), len(claims))

    @property
    def policy_refusals(self) -> list[Scored]:
        return [s for s in self.scored if s.truth in self.families]

    @property
    def recall(self) -> float:
        refusals = self.policy_refusals
        return _ratio(sum(s.right for s in refusals), len(refusals))

    @property
    def calibration_error(self) -> float:
        """Expected calibration error of the claims' confidences (0 is perfect)."""
        bins: dict[int, list[Scored]] = defaultdict(list)
        for s in self.claims:
            if s.confidence is not None:
                bins[min(_BINS - 1, int(s.confidence * _BINS))].append(s)
        total = sum(len(b) for b in bins.values())
        if not total:
            return 0.0
        error = 0.0
        for members in bins.values():
            confidence = sum(s.confidence or 0.0 for s in members) / len(members)
            accuracy = sum(s.right for s in members) / len(members)
            error += len(members) / total * abs(confidence - accuracy)
        return error

    def per_class(self) -> dict[str, tuple[int, int]]:
        """Per true class: (right, of how many)."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for s in self.scored:
            counts[s.truth][0] += s.right
            counts[s.truth][1] += 1
        return {name: (c[0], c[1]) for name, c in sorted(counts.items())}

    def per_source(self) -> dict[str, tuple[int, int]]:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for s in self.scored:
            source = (s.item.source or s.item.file.removesuffix(".yaml")).split(":")[0]
            counts[source][0] += s.right
            counts[source][1] += 1
        return {name: (c[0], c[1]) for name, c in sorted(counts.items())}

    def confusion(self) -> dict[tuple[str, str], int]:
        """(true class, named class) counts, only where they differ or are right."""
        return dict(Counter((s.truth, s.predicted) for s in self.scored))

    def render(self, title: str) -> str:
        claims = self.claims
        refusals = self.policy_refusals
        lines = [
            f"{title}: {len(self.scored)} items",
            f"  accuracy   {self.accuracy:.3f} ({sum(s.right for s in self.scored)}"
            f"/{len(self.scored)})",
            f"  precision  {self.precision:.3f} of claims ({sum(s.right for s in claims)}"
            f"/{len(claims)} right)",
            f"  recall     {self.recall:.3f} of policy refusals "
            f"({sum(s.right for s in refusals)}/{len(refusals)})",
            f"  calibration error {self.calibration_error:.3f} (ECE, {_BINS} bins)",
            "",
            "  per class (right/total):",
        ]
        lines += [
            f"    {name:<20} {right:>4}/{total:<4} {right / total:.2f}"
            for name, (right, total) in self.per_class().items()
        ]
        lines += ["", "  per source (right/total):"]
        lines += [
            f"    {name:<20} {right:>4}/{total:<4} {right / total:.2f}"
            for name, (right, total) in self.per_source().items()
        ]
        lines += ["", "  confusion (true -> named: count), mistakes only:"]
        mistakes = sorted(
            ((t, p, n) for (t, p), n in self.confusion().items() if t != p),
            key=lambda row: (-row[2], row[0], row[1]),
        )
        lines += [f"    {t} -> {p}: {n}" for t, p, n in mistakes] or ["    (none)"]
        return "\n".join(lines)

    def matrix(self) -> str:
        """The whole confusion matrix as a Markdown table (rows true, columns named)."""
        confusion = self.confusion()
        rows = sorted({t for t, _ in confusion})
        cols = sorted({p for _, p in confusion})
        head = "| true \\ named | " + " | ".join(cols) + " |"
        rule = "|---|" + "---|" * len(cols)
        body = [
            f"| {t} | " + " | ".join(str(confusion.get((t, p), "")) for p in cols) + " |"
            for t in rows
        ]
        return "\n".join([head, rule, *body])


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
