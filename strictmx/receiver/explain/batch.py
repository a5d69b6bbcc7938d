"""`strictmx explain --batch PATH`: every bounce of a folder, an mbox or a Maildir explained.

Each bounce goes through the one-bounce API (`Explainer.explain_all`), so a batch answers
what `strictmx explain FILE` answers for the same bounce. The output is one JSON line per
bounce (`--format json`, every recipient of it inside, as `strictmx explain --format json`
gives them) or a summary table whose rows are recipients: a bounce to three recipients
counts three times. It counts by class (each failed recipient's family or class, or "not
recognised"; a delivered or relayed recipient and a complaint in rows of their own) and by
the refusing receiver's domain where the bounce names it (else the domain of the MTA that
wrote the DSN), then names the bounces that could not be read or explained, each with why
(each counts once, as one row).

Input is streamed: a folder's files and a Maildir's messages are read one at a time, an
mbox through the stdlib's `mailbox.mbox`, which keeps only each message's offsets and
reads a message when asked for it. The summary keeps counters and the errors, never the
bounces.
"""

from __future__ import annotations

import functools
import json
import mailbox
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from publicsuffixlist import PublicSuffixList

from .bounce import DELIVERED_ACTIONS
from .explainer import Explainer
from .explanation import Explanation, json_all
from .extract import MAX_INPUT, ExplainError, decode

#: Above this many bounces, and when stderr is a terminal, progress is shown on stderr.
PROGRESS_ABOVE = 200
#: Errors listed by name in the text summary; JSON lines carry every one.
ERRORS_LISTED = 50
NOT_RECOGNISED = "not recognised"
#: The row of a recipient the message reached (RFC 3464 delivered, relayed, expanded).
DELIVERED = "delivered"
#: The row of an ARF report's subject: a complaint about a delivered message.
COMPLAINT = "complaint"
#: The class of a bounce whose input could not be read or explained.
UNREADABLE = "unreadable"

#: RFC 3464 §2.2.2 and §2.3.5: the MTA that wrote the DSN, and the one that refused.
_MTA_FIELD = re.compile(rb"^(Remote|Reporting)-MTA:[ \t]*dns[ \t]*;[ \t]*([^\s;]+)", re.I | re.M)


class BatchError(ExplainError):
    """PATH itself cannot be used (missing, unreadable, not a folder/mbox/Maildir/file)."""


@dataclass(frozen=True)
class Item:
    """One bounce of the batch: where it is, and its bytes or why they could not be read."""

    source: str
    data: bytes | None
    error: str | None = None
    #: The file `strictmx explain`/`reproduce` can be given for it (a folder's files only).
    file: str | None = None


@dataclass
class Source:
    """The bounces PATH holds: what it is, how many, and a reader of them in order."""

    kind: str  # folder | mbox | maildir | file
    count: int
    items: Callable[[], Iterator[Item]]
    skipped: list[str] = field(default_factory=list)


def open_source(path: str) -> Source:
    """PATH as a folder of files, an mbox, a Maildir (cur/new/tmp) or one bounce file."""
    where = Path(path)
    try:
        is_dir = where.is_dir()
        exists = is_dir or where.exists()
    except OSError as exc:
        raise BatchError(f"{path}: {exc.strerror or exc}") from None
    if not exists:
        raise BatchError(f"{path}: no such file or folder")
    if is_dir:
        if (where / "cur").is_dir() and (where / "new").is_dir():
            return _maildir(where)
        return _folder(where)
    try:
        with open(where, "rb") as handle:
            head = handle.read(5)
    except OSError as exc:
        raise BatchError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head == b"From ":
        return _mbox(where)
    return Source("file", 1, lambda: iter([_read_file(where, str(where))]))


def _folder(where: Path) -> Source:
    try:
        entries = sorted(os.scandir(where), key=lambda e: e.name)
    except OSError as exc:
        raise BatchError(f"cannot list {where}: {exc.strerror or exc}") from None
    files: list[Path] = []
    skipped: list[str] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue  # editors' and version control's files, not bounces
        try:
            regular = entry.is_file()
        except OSError:
            regular = False
        if regular:
            files.append(Path(entry.path))
        else:
            skipped.append(entry.path)

    def items() -> Iterator[Item]:
        for file in files:
            yield _read_file(file, str(file))

    return Source("folder", len(files), items, skipped)


def _read_file(file: Path, source: str) -> Item:
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_INPUT + 1)
    except OSError as exc:
        return Item(source, None, f"cannot read: {exc.strerror or exc}")
    return Item(source, data, file=source)


def _mbox(where: Path) -> Source:
    try:
        box = mailbox.mbox(where, create=False)
        keys = box.keys()  # one pass over the file for the offsets; no message is kept
    except (OSError, mailbox.Error) as exc:
        raise BatchError(f"cannot read {where} as an mbox: {exc}") from None
    return Source("mbox", len(keys), lambda: _messages(box, keys, f"{where}#", start=1))


def _maildir(where: Path) -> Source:
    try:
        box = mailbox.Maildir(where, factory=None, create=False)
        keys = sorted(box.keys())
    except (OSError, mailbox.Error) as exc:
        raise BatchError(f"cannot read {where} as a Maildir: {exc}") from None
    return Source("maildir", len(keys), lambda: _messages(box, keys, f"{where}/", start=None))


def _messages(
    box: mailbox.Mailbox[Any], keys: list[str], prefix: str, start: int | None
) -> Iterator[Item]:
    """Each message of an mbox (named by its number from 1) or a Maildir (by its key)."""
    try:
        for n, key in enumerate(keys):
            source = f"{prefix}{n + start if start is not None else key}"
            try:
                yield Item(source, box.get_bytes(key))
            except (OSError, KeyError, mailbox.Error) as exc:
                # A Maildir message moved or deleted since the listing; an mbox cut short.
                yield Item(source, None, f"cannot read: {exc}")
    finally:
        box.close()


@dataclass
class Outcome:
    """One bounce's answer: its recipients' classes and receivers for the summary (one
    each, in the order `explain` gives them), and its JSON line."""

    source: str
    classes: list[str]
    receivers: list[str | None]
    error: str | None
    line: dict[str, Any]


def explain_item(explainer: Explainer, item: Item) -> Outcome:
    if item.data is None:
        return _failed(item, item.error or "cannot read")
    try:
        explanations = explainer.explain_all(decode(item.data))
    except ExplainError as exc:
        return _failed(item, str(exc))
    except Exception as exc:  # a bug on one bounce must not lose the other thousands
        return _failed(item, f"explain failed ({type(exc).__name__}: {exc}); please report it")
    receivers = [receiver_of(e, item.data) for e in explanations]
    line = {"source": item.source, **json_all(explanations, item.file), "receiver": receivers[0]}
    classes = [class_of(e) for e in explanations]
    return Outcome(item.source, classes, receivers, None, line)


def _failed(item: Item, error: str) -> Outcome:
    return Outcome(
        item.source, [UNREADABLE], [None], error, {"source": item.source, "error": error}
    )


def class_of(explanation: Explanation) -> str:
    """A recipient's class: a strictmx family, a class strictmx does not emulate (a full
    mailbox, a greylisting, ...), "delivered", "complaint", or "not recognised"."""
    if explanation.input.action in DELIVERED_ACTIONS:
        return DELIVERED
    if explanation.input.action == COMPLAINT:
        return COMPLAINT
    return explanation.class_name or NOT_RECOGNISED


def receiver_of(explanation: Explanation, data: bytes) -> str | None:
    """The domain of the receiver that refused, where the bounce names it: the host the
    reply came from, else the DSN's Remote-MTA, else its Reporting-MTA."""
    host = explanation.input.remote
    if not host:
        found = {kind.lower(): name for kind, name in _MTA_FIELD.findall(data[:65536])}
        raw = found.get(b"remote") or found.get(b"reporting")
        host = raw.decode("ascii", "replace") if raw else None
    return domain_of(host) if host else None


def domain_of(host: str) -> str:
    """A receiving host's registrable domain (gmail-smtp-in.l.google.com: google.com), so
    one provider's many MX hosts count once; an address literal or bare name as given."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if not name or not any(ch.isalpha() for ch in name) or "." not in name:
        return name or host
    return _suffixes().privatesuffix(name) or name


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


@dataclass
class Summary:
    kind: str
    path: str
    total: int = 0
    #: Rows of the tables: each recipient of each bounce read, and each unreadable bounce.
    rows: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    by_receiver: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.total += 1
        self.rows += len(outcome.classes)
        self.by_class.update(outcome.classes)
        if outcome.error is not None:
            self.errors.append((outcome.source, outcome.error))
        else:
            self.by_receiver.update(r for r in outcome.receivers if r)

    def render(self) -> str:
        explained = self.total - len(self.errors)
        out = [
            f"{self.path} ({self.kind}): {self.total} bounce{'s' * (self.total != 1)}, "
            f"{explained} explained, {len(self.errors)} not readable"
        ]
        if not self.total:
            out.append("no bounces found")
        if self.by_class:
            recipients = self.rows - len(self.errors)
            counted = (
                f"rows are recipients: {recipients} recipient{'s' * (recipients != 1)} "
                f"of {explained} bounce{'s' * (explained != 1)}"
            )
            if self.errors:
                counted += f", and {len(self.errors)} unreadable, a row each"
            out += ["", f"by class ({counted}):", *_table(self.by_class, self.rows)]
        if self.by_receiver:
            out += [
                "",
                "by receiver (rows are recipients; the refusing host's domain, else the DSN's "
                "reporting MTA's):",
            ]
            out += _table(self.by_receiver, self.rows - len(self.errors))
        if self.errors:
            out += ["", "not readable:"]
            out += [f"  {source}: {error}" for source, error in self.errors[:ERRORS_LISTED]]
            if len(self.errors) > ERRORS_LISTED:
                more = len(self.errors) - ERRORS_LISTED
                out.append(f"  ... and {more} more (--format json lists every one)")
        if self.skipped:
            out += ["", "skipped (not a regular file):", *(f"  {s}" for s in self.skipped)]
        return "\n".join(out)


def _table(counts: Counter[str], whole: int) -> list[str]:
    width = max(len(str(n)) for n in counts.values())
    # Most first; among equal counts, by name, so two runs print the same table.
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [f"  {n:>{width}}  {100 * n / max(whole, 1):5.1f}%  {name}" for name, n in ranked]


class Progress:
    """`explaining 120/1000` on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self.total = total
        self.stream = stream
        self.shown = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.shown < 0.1 and done < self.total:
            return
        self.shown = now
        self.stream.write(f"\rexplaining {done}/{self.total} ({100 * done // self.total}%)")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r\033[K")
        self.stream.flush()


def run(
    path: str,
    explainer: Explainer,
    fmt: str,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Explain every bounce at PATH: 0 when each was read, 1 when some were not (they are
    named), BatchError when PATH cannot be used at all."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    source = open_source(path)
    summary = Summary(source.kind, path, skipped=source.skipped)
    progress = (
        Progress(source.count, err) if source.count > PROGRESS_ABOVE and err.isatty() else None
    )
    try:
        for n, item in enumerate(source.items(), 1):
            outcome = explain_item(explainer, item)
            summary.add(outcome)
            if fmt == "json":
                out.write(json.dumps(outcome.line) + "\n")
            if progress is not None:
                progress.update(n)
    finally:
        if progress is not None:
            progress.close()
    if fmt != "json":
        out.write(summary.render() + "\n")
    return 1 if summary.errors else 0
