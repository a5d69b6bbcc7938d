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

#: The situation keys every dialect defines (the design's list; the BDAT keys and the
#: session cut-offs Exim has are named here until the loader's list takes them over).
KEYS = [
    "greeting_default",
    "helo_ok",
    "helo_syntax",
    "ehlo_syntax",
    "helo_first",
    "mail_ok",
    "mail_syntax",
    "mail_nested",
    "mail_bad_address",
    "rcpt_ok",
    "rcpt_syntax",
    "rcpt_need_mail",
    "rcpt_bad_address",
    "data_ok",
    "data_syntax",
    "data_need_rcpt",
    "data_no_valid_rcpt",
    "queued",
    "message_too_big",
    "size_too_big",
    "size_syntax",
    "body_syntax",
    "smtputf8_disabled",
    "smtputf8_syntax",
    "param_unknown",
    "param_syntax",
    "dsn_ret_syntax",
    "dsn_envid_syntax",
    "dsn_notify_syntax",
    "dsn_orcpt_syntax",
    "rset_ok",
    "noop_ok",
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
    "vrfy_ok",
    "expn",
    "help",
    "etrn_syntax",
    "etrn_reply",
    "bdat_syntax",
    "bdat_need_rcpt",
    "bdat_not_offered",
    "bdat_chunk_ok",
    "bdat_last_ok",
    "bdat_then_data",
    "starttls_ready",
    "starttls_unavailable",
    "starttls_active",
    "starttls_syntax",
    "auth_unavailable",
    "forbidden_command",
    "bare_lf",
    "timeout",
    "queue_error",
    "internal_error",
    "too_many_errors",
    "too_many_nonmail",
    "sync_error",
]
TOP = {
    "name", "description", "enhanced_status_codes", "commands", "ehlo_keywords", "limits",
    "address_grammar", "forbidden_commands", "header_commands_forbidden", "bare_lf", "vrfy",
    "replies",
}  # fmt: skip
# code, optional enhanced code (its class digit agreeing with the code), text
_REPLY = re.compile(
    r"^(?P<code>[2-5]\d\d|\{code\})(?P<sep>[ -])(?:(?P<dsn>[245]\.\d{1,3}\.\d{1,3}) )?"
)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
PLACEHOLDERS = {"hostname", "verb", "arg", "address", "param", "size", "queue_id", "helo",
                "client_ip", "reason", "total", "code"}  # fmt: skip


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
        for line in entry["reply"].split("\n"):
            shape = _REPLY.match(line)
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


def _pattern(template_line: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(template_line)
    # split() alternates text and placeholder names: text at even indexes.
    regex = "".join(re.escape(p) if i % 2 == 0 else ".+?" for i, p in enumerate(parts))
    return re.compile(f"^{regex}$")


_PROBES = re.compile(r"\bprobes? ([a-z0-9-]+(?:, [a-z0-9-]+)*)")


def test_exim_replies_are_the_recorded_ones() -> None:
    sections = _sections()
    checked = 0
    for key, entry in load("exim")["replies"].items():
        named = [p for group in _PROBES.findall(entry["source"]) for p in group.split(", ")]
        assert named, f"exim.yaml replies.{key} names no probe"
        for probe in named:
            assert probe in sections, f"exim.yaml replies.{key}: no probe {probe} recorded"
        lines = [line for probe in named for line in sections[probe]]
        for template_line in entry["reply"].split("\n"):
            pattern = _pattern(template_line)
            assert any(pattern.match(line) for line in lines), (
                f"exim.yaml replies.{key}: {template_line!r} is not what Exim answered in"
                f" {named}: {lines}"
            )
            checked += 1
    assert checked >= len(KEYS)


def test_a_reply_exim_never_gave_is_caught() -> None:
    """Control: the comparison above fails a text that is not in the probe's section."""
    sections = _sections()
    assert not any(_pattern("503 5.5.1 Error: nested MAIL command").match(s)
                   for s in sections["mail-nested"])  # fmt: skip
    assert any(_pattern("503 sender already given").match(s) for s in sections["mail-nested"])
