"""The labelled bounce corpus that `explain`'s model is fitted on and judged by, and the one
fixed rule that splits it into train, dev and test.

The corpus is a folder of YAML files (tests/data/explain_corpus/), each a mapping with an
`items:` list; an item is

    - family: reverse_dns          # the label: a strictmx family, a class strictmx does not
                                   # emulate (classes.py), or `unknown`
      input: "550 5.7.25 ..."      # what a support engineer would paste
      source: microsoft-365        # optional: who wrote this bounce (provider, MTA, reference)
      group: ms-5.7.25             # optional: items that are one reply in several forms

The split is decided once, by a rule and not by hand: an item's group key (its `group`, or
else a skeleton of its text that near-duplicates share) is hashed, and the hash picks the
side. So every form of one reply (a DSN, the log line and the bare reply of one Postfix
bounce) and every copy of one provider's text with other addresses and ids lands on the same
side, and a model is never judged on a twin of what it was fitted on. Adding items never
moves an existing one to another side.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "test")

#: Out of ten hash buckets: 0-5 train, 6-7 dev, 8-9 test (60/20/20 by groups).
_BUCKETS: tuple[Split, ...] = ("train",) * 6 + ("dev",) * 2 + ("test",) * 2

#: Words that frame a bounce rather than say why it failed (log and DSN scaffolding), left
#: out of the skeleton so one reply in several formats has one key. Frozen: changing this
#: list moves items between sides, which would void every figure measured before.
_FRAME = frozenset(
    [
        "postfix",
        "smtp",
        "relay",
        "delay",
        "delays",
        "dsn",
        "status",
        "bounced",
        "deferred",
        "host",
        "said",
        "reply",
        "command",
        "error",
        "from",
        "remote",
        "mail",
        "server",
        "after",
        "rcpt",
        "mail",
        "data",
        "ehlo",
        "helo",
        "end",
        "the",
        "in",
        "to",
        "for",
        "of",
        "and",
        "smtpd",
        "cleanup",
        "message",
        "delivery",
        "failed",
        "diagnostic",
        "code",
        "action",
        "final",
        "recipient",
        "remote",
        "mta",
        "reporting",
        "arrival",
        "date",
        "content",
        "type",
        "report",
        "text",
        "plain",
        "part",
        "delivery-status",
        "original",
    ]
)
_WORD = re.compile(r"[a-z][a-z'-]{2,}")
_SKELETON_WORDS = 12


class CorpusError(ValueError):
    """A corpus file that cannot be read, named by file and item."""


@dataclass(frozen=True)
class Item:
    label: str
    input: str
    source: str | None
    group: str | None
    file: str
    index: int

    @property
    def key(self) -> str:
        """The group key the split hashes: the stated group, or the text's skeleton."""
        if self.group:
            return "group:" + self.group
        return "text:" + skeleton(self.input)

    @property
    def split(self) -> Split:
        return split_of(self.key)


def skeleton(text: str) -> str:
    """The words that say why a bounce failed, in order, without ids, numbers or framing."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _FRAME]
    return " ".join(words[:_SKELETON_WORDS])


def split_of(key: str) -> Split:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return _BUCKETS[int.from_bytes(digest[:8], "big") % len(_BUCKETS)]


def load(folder: Path) -> list[Item]:
    """Every item of every `*.yaml` file in `folder`, in file-name order."""
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise CorpusError(f"{folder}: no corpus files (*.yaml)")
    items: list[Item] = []
    for path in files:
        items.extend(_read(path))
    return items


def _read(path: Path) -> Iterable[Item]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CorpusError(f"{path}: {exc}") from exc
    raw = data.get("items") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise CorpusError(f"{path}: expected a mapping with an `items:` list")
    for n, entry in enumerate(raw):
        where = f"{path.name}: items[{n}]"
        if not isinstance(entry, dict):
            raise CorpusError(f"{where}: expected a mapping")
        unknown = set(entry) - {"family", "input", "source", "group"}
        if unknown:
            raise CorpusError(f"{where}: unknown keys {sorted(unknown)}")
        label, text = entry.get("family"), entry.get("input")
        if not isinstance(label, str) or not label:
            raise CorpusError(f"{where}.family: a class name is required")
        if not isinstance(text, str) or not text.strip():
            raise CorpusError(f"{where}.input: the bounce text is required")
        source, group = entry.get("source"), entry.get("group")
        for key, value in (("source", source), ("group", group)):
            if value is not None and not isinstance(value, str):
                raise CorpusError(f"{where}.{key}: expected a string")
        yield Item(label, text, source, group, path.name, n)
