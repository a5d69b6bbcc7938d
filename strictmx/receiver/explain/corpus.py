"""The labelled bounce corpus that `explain`'s model is fitted on and judged by, and the one
fixed rule that splits it into train, dev and test.

The corpus is a folder of YAML files (tests/data/explain_corpus/), each a mapping with an
`items:` list; an item is

    - family: reverse_dns          # the label: a strictmx family, a class strictmx does not
                                   # emulate (classes.py), or `unknown`
      input: "550 5.7.25 ..."      # what a support engineer would paste
      source: microsoft-365        # optional: who wrote this bounce (provider, MTA, reference)
      group: ms-5.7.25             # optional: items that are one reply in several forms

The split is decided by a rule, not by hand. Items are near-duplicates when they share a
`group` or a skeleton of their text (the words that say why, without addresses, ids,
numbers or log framing); near-duplicates are joined transitively into one cluster, and a
hash of the cluster's smallest key picks its side. So every form of one reply (a DSN, the
log line and the bare reply of one Postfix bounce), every copy of one provider's text with
other addresses and ids, and the same text written into two files land on the same side,
and a model is never judged on a twin of what it was fitted on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

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
_WORD = re.compile(r"(?<![\w.@-])[a-z][a-z'-]{2,}(?![\w.@-])")
#: A reply code (with its enhanced status code) that starts the reply proper.
_CODE = re.compile(r"(?<![\w.=/-])[245]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}(?!\w))?")
#: Addresses, bracketed or angled tokens, and anything with a dot, an @ or a digit.
_NOISE = re.compile(r"<[^>\s]*>|\[[^\]\s]*\]|\S*[\d@.]\S*")
_SKELETON_WORDS = 12


#: libyaml's safe loader when PyYAML has it: the corpus is megabytes of YAML.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    #: The side of the split, set by `load` (see the module docstring).
    split: Split = "train"

    @property
    def keys(self) -> tuple[str, ...]:
        """What makes two items near-duplicates: the stated group and the text's skeleton."""
        words = skeleton(self.input)
        text = "text:" + words if words else f"item:{self.file}:{self.index}"
        return (f"group:{self.group}", text) if self.group else (text,)

    @property
    def key(self) -> str:
        return self.keys[0]


def skeleton(text: str) -> str:
    """The words that say why a bounce failed, in order: from the first reply code on (so
    a log line's or a DSN's framing before it does not count), without addresses, host
    names, ids, numbers or framing words."""
    lowered = text.lower()
    code = _CODE.search(lowered)
    if code is not None:
        lowered = lowered[code.end() :]
    lowered = _NOISE.sub(" ", lowered)
    words = [w for w in _WORD.findall(lowered) if w not in _FRAME]
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
    return assign(items)


def assign(items: Sequence[Item]) -> list[Item]:
    """The items with their sides: clusters of near-duplicates, each hashed by its
    smallest key."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for item in items:
        first, *rest = item.keys
        for key in rest:
            a, b = root(first), root(key)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [replace(item, split=split_of(root(item.key))) for item in items]


def _read(path: Path) -> Iterable[Item]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
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
