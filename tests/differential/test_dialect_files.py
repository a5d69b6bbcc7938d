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

DIALECTS = Path(__file__).parents[2] / "strictmx" / "receiver" / "data" / "dialects"
RECORDING = Path(__file__).with_name("exim-recording.txt")
FILES = ("exim", "exchange", "gmail", "rfc5321")

#: The situation keys every dialect defines: strictmx/receiver/dialect.py's REPLY_KEYS as
#: helper A's branch has it now (the loader checks the same at merge).
KEYS = [
    "greeting_default",
    "helo_ok",
    "ehlo_ok",
    "helo_syntax",
    "ehlo_syntax",
    "helo_first",
    "mail_ok",
    "mail_syntax",
    "mail_syntax_esmtp",
    "mail_nested",
    "mail_bad_address",
    "rcpt_ok",
    "rcpt_syntax",
    "rcpt_syntax_esmtp",
    "rcpt_need_mail",
    "rcpt_no_helo",
    "rcpt_after_bdat",
    "rcpt_bad_address",
    "data_ok",
    "data_syntax",
    "data_need_rcpt",
    "data_no_helo",
    "data_after_bdat",
    "data_no_valid_rcpt",
    "queued",
    "message_too_big",
    "size_too_big",
    "size_overflow",
    "size_syntax",
    "body_syntax",
    "smtputf8_disabled",
    "smtputf8_syntax",
    "param_unknown",
    "rcpt_param_unknown",
    "param_syntax",
    "dsn_ret_syntax",
    "dsn_envid_syntax",
    "dsn_notify_syntax",
    "dsn_orcpt_syntax",
    "dsn_disabled",
    "rset_ok",
    "rset_syntax",
    "noop_ok",
    "noop_arg",
    "quit",
    "quit_syntax",
    "unknown_command",
    "bad_syntax",
    "not_ascii",
    "too_many_unknown",
    "line_too_long",
    "data_line_too_long",
    "vrfy_disabled",
    "vrfy_syntax",
    "vrfy_syntax_smtputf8",
    "vrfy_bad_address",
    "vrfy_ok",
    "expn",
    "help",
    "etrn_helo_first",
    "etrn_syntax",
    "etrn_reply",
    "etrn_in_mail",
    "bdat_syntax",
    "bdat_need_rcpt",
    "bdat_ok",
    "bdat_queued",
    "bdat_too_big",
    "bdat_discarded",
    "starttls_ready",
    "starttls_unavailable",
    "starttls_active",
    "starttls_syntax",
    "starttls_active_syntax",
    "auth_unavailable",
    "xforward_syntax",
    "xforward_denied",
    "forbidden_command",
    "bare_lf",
    "timeout",
    "queue_error",
    "internal_error",
    "internal_error_close",
]
TOP = {
    "name", "description", "enhanced_status_codes", "commands", "ehlo_keywords", "limits",
    "address_grammar", "forbidden_commands", "forbidden_pattern", "header_commands_forbidden",
    "nul_ends_command", "bare_lf", "data_bare_lf", "vrfy", "vrfy_checks_recipient", "replies",
}  # fmt: skip
# A template line: the code, a space (or `-` on a later line), an optional enhanced code.
_REPLY = re.compile(r"^(?P<code>[2-5]\d\d)(?P<sep>[ -])(?:(?P<dsn>[245]\.\d{1,3}\.\d{1,3}) )?")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
#: dialect.PLACEHOLDERS.
PLACEHOLDERS = {"hostname", "verb", "arg", "address", "param", "size", "queue_id", "helo",
                "commands", "client_ip", "detail"}  # fmt: skip
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
