"""The hostile suite: strictmx attacked as an attacker would, over loopback.

Every test here counts what it tried and what went wrong in the session-wide `tally`;
pytest's terminal summary prints the totals in one line, for the closing note of a
change that touches hostile input:

    hostile: 1234 inputs tried, 0 crashes, 0 hangs, 0 lost messages,
             0 duplicate messages, 0 wrong replies

The counts are evidence, not the verdict: each test also asserts that the counts it
must keep at zero are zero, so a regression fails the run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Final

import pytest

#: The kinds of outcome the summary reports, in order; all but `inputs` must stay zero.
KINDS: Final = ("inputs", "crashes", "hangs", "lost", "duplicates", "wrong_replies")
_LABELS: Final = {
    "inputs": "inputs tried",
    "crashes": "crashes",
    "hangs": "hangs",
    "lost": "lost messages",
    "duplicates": "duplicate messages",
    "wrong_replies": "wrong replies",
}

_TOTALS: Counter[str] = Counter()


class Tally:
    """What one test tried and what went wrong, added to the session's totals."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, n: int = 1, example: str | None = None) -> None:
        if kind not in _LABELS:
            raise ValueError(f"unknown tally kind {kind!r}; known: {', '.join(KINDS)}")
        self.counts[kind] += n
        if example is not None and n:
            self.examples.setdefault(kind, [])
            if len(self.examples[kind]) < 5:
                self.examples[kind].append(example)

    def tried(self, n: int = 1) -> None:
        self.add("inputs", n)

    def assert_clean(self) -> None:
        """Fail when any count that must be zero is not, with examples of each."""
        bad = {k: v for k, v in self.counts.items() if k != "inputs" and v}
        assert not bad, f"hostile failures {dict(bad)}; examples: {self.examples}"


@pytest.fixture
def tally() -> Iterator[Tally]:
    """Count inputs and failures; the totals go to the run's summary line."""
    t = Tally()
    yield t
    _TOTALS.update(t.counts)


def summary_line() -> str:
    return "hostile: " + ", ".join(f"{_TOTALS[k]} {_LABELS[k]}" for k in KINDS)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TOTALS:
        terminalreporter.write_line(summary_line())
