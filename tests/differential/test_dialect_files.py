"""The exim, exchange, gmail and rfc5321 dialect files, checked on their own (the loader in
strictmx/receiver/dialect.py validates them too; this keeps them honest without it):
each parses, defines every situation key with a reply and a source, and each Exim reply
is what the live recording shows for the probes its source names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from strictmx.receiver.dialect import PLACEHOLDERS, REPLY_KEYS, DialectFile

DIALECTS = Path(__file__).parents[2] / "strictmx" / "receiver" / "data" / "dialects"
RECORDING = Path(__file__).with_name("exim-recording.txt")
FILES = ("exim", "exchange", "gmail", "rfc5321")

#: The situation keys every dialect defines (the loader checks the same).
KEYS = list(REPLY_KEYS)
#: The top-level keys of a dialect file: the loader's model's fields.
TOP = set(DialectFile.model_fields)
# A template line: the code, a space (or `-` on a later line), an optional enhanced code.
_REPLY = re.compile(r"^(?P<code>[2-5]\d\d)(?P<sep>[ -])(?:(?P<dsn>[245]\.\d{1,3}\.\d{1,3}) )?")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
#: What a source says when Exim's text needs a placeholder the loader lacks.
NEEDS_PLACEHOLDER = "needs a placeholder the loader does not have yet"


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DIALECTS / f"{name}.yaml").read_text())
    assert isinstance(data, dict), f"{name}.yaml is not a mapping"
    return data


@pytest.mark.parametrize("name", FILES)
def test_every_key_has_a_reply_and_a_source(name: str) -> None:
    data = load(name)
    assert set(data) == TOP, f"{name}.yaml top-level keys: {sorted(set(data) ^ TOP)}"
    assert data["name"] == name
    replies = data["replies"]
    assert list(replies) == list(KEYS) or set(replies) == set(KEYS), (
        f"{name}.yaml: missing {sorted(set(KEYS) - set(replies))},"
        f" unknown {sorted(set(replies) - set(KEYS))}"
    )
    for key, entry in replies.items():
        assert set(entry) == {"reply", "source"}, f"{name}.yaml replies.{key}: {sorted(entry)}"
        assert isinstance(entry["source"], str) and len(entry["source"]) > 20, (
            f"{name}.yaml replies.{key} has no source worth the name"
        )
        for number, line in enumerate(entry["reply"].split("\n")):
            shape = _REPLY.match(line)
            assert number or shape is None or shape["sep"] == " ", (
                f"{name}.yaml replies.{key}: the first line is `code text` (the loader's rule)"
            )
            assert shape, f"{name}.yaml replies.{key}: {line!r} is not `code [x.y.z] text`"
            if shape["dsn"] is not None:
                assert data["enhanced_status_codes"], f"{name}.yaml {key}: enhanced code"
                assert shape["dsn"][0] == shape["code"][0], f"{name}.yaml {key}: class digit"
            assert len(line.encode()) <= 512
        unknown = set(_PLACEHOLDER.findall(entry["reply"])) - PLACEHOLDERS
        assert not unknown, f"{name}.yaml replies.{key}: unknown placeholders {unknown}"


def test_a_broken_file_is_caught() -> None:
    """Control: the check above refuses a file that lacks a key or a source."""
    data = load("rfc5321")
    del data["replies"]["quit"]
    data["replies"]["noop_ok"]["source"] = ""
    missing = set(KEYS) - set(data["replies"])
    assert missing == {"quit"}
    assert not data["replies"]["noop_ok"]["source"]


def test_generic_keys_say_so() -> None:
    """Exchange and Gmail keys without a documented text name RFC 5321 as their source."""
    for name in ("exchange", "gmail"):
        for key, entry in load(name)["replies"].items():
            source = entry["source"]
            assert source.startswith(
                "RFC 5321 generic: no documented text for this receiver"
            ) or source.startswith("Gmail, "), f"{name}.yaml replies.{key}: {source}"
    assert all(
        e["source"].startswith("RFC 5321 generic") for e in load("exchange")["replies"].values()
    )


def _sections() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in RECORDING.read_text().splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:].split()[0], [])
        elif line.startswith("S: "):
            current.append(line[3:])
    return sections


def _wire(template: str) -> list[str]:
    """A template's lines as the reply builder sends them (verdict.Reply.parse, then
    wire_lines without enhanced codes): each line's code, `-` or ` `, its text. A second
    space after the code is text (Exim's `250- 28 byte chunk`); trailing spaces are not."""
    lines = template.split("\n")
    out = []
    for number, line in enumerate(lines):
        shape = re.match(r"^([2-5]\d\d)[ -]?(.*)$", line.strip(), re.DOTALL)
        assert shape, line
        sep = " " if number == len(lines) - 1 else "-"
        out.append(f"{shape[1]}{sep}{shape[2]}")
    return out


def _pattern(wire_line: str, *, whole: bool = True) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(wire_line[4:])
    # split() alternates text and placeholder names: text at even indexes.
    text = "".join(re.escape(p) if i % 2 == 0 else ".+?" for i, p in enumerate(parts))
    # The separator after the code is the builder's to choose (ehlo_ok opens a longer reply).
    regex = f"^{re.escape(wire_line[:3])}[ -]{text}"
    return re.compile(f"{regex}$" if whole else regex)


_PROBES = re.compile(r"\bprobes? ([a-z0-9-]+(?:, [a-z0-9-]+)*)")


def test_exim_replies_are_the_recorded_ones() -> None:
    sections = _sections()
    checked = 0
    for key, entry in load("exim")["replies"].items():
        named = [p for group in _PROBES.findall(entry["source"]) for p in group.split(", ")]
        assert named, f"exim.yaml replies.{key} names no probe"
        for probe in named:
            assert probe in sections, f"exim.yaml replies.{key}: no probe {probe} recorded"
        lines = [line.rstrip() for probe in named for line in sections[probe]]
        # A text that lacks a placeholder (see NEEDS_PLACEHOLDER) is the start of Exim's.
        whole = NEEDS_PLACEHOLDER not in entry["source"]
        for template_line in _wire(entry["reply"]):
            pattern = _pattern(template_line, whole=whole)
            assert any(pattern.match(line) for line in lines), (
                f"exim.yaml replies.{key}: {template_line!r} is not what Exim answered in"
                f" {named}: {lines}"
            )
            checked += 1
    assert checked >= len(KEYS)


def test_a_reply_exim_never_gave_is_caught() -> None:
    """Control: the comparison above fails a text that is not in the probe's section."""
    sections = _sections()
    assert not any(
        _pattern("503 5.5.1 Error: nested MAIL command").match(s) for s in sections["mail-nested"]
    )
    assert any(_pattern("503 sender already given").match(s) for s in sections["mail-nested"])
