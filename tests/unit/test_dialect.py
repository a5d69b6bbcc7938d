"""Dialect files and a scenario's dialect: every bundled file loads and answers every
situation; a bad file or override is refused at load with its file, line and key path."""

from __future__ import annotations

import re
import textwrap

import pytest

from strictmx.receiver import dialect as dialects
from strictmx.receiver import scenario as scenarios
from strictmx.receiver.dialect import REPLY_KEYS
from strictmx.receiver.scenario import ScenarioError


def bundled_text(name: str) -> str:
    return (dialects._dir() / f"{name}.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", dialects.bundled_dialects())
def test_every_bundled_dialect_loads_with_every_key_and_a_source_for_each(name: str) -> None:
    dialect = dialects.load(name)
    assert dialect.name == name
    assert set(dialect.replies) == set(REPLY_KEYS)
    assert all(dialect.sources[key].strip() for key in REPLY_KEYS)


def test_the_bundled_dialects_include_the_default_and_postfix() -> None:
    assert {"aiosmtpd", "postfix"} <= set(dialects.bundled_dialects())


def test_the_aiosmtpd_dialect_keeps_the_replies_strictmx_always_sent() -> None:
    aiosmtpd = dialects.load("aiosmtpd")
    assert str(aiosmtpd.replies["quit"]) == "221 Bye"
    assert str(aiosmtpd.replies["helo_first"]) == "503 Error: send HELO first"
    assert str(aiosmtpd.reply("unknown_command", verb="FOO")) == (
        '500 Error: command "FOO" not recognized'
    )
    assert aiosmtpd.unknown_commands == 4 and aiosmtpd.command_line == 512


def test_postfix_dialect_says_what_postfix_says() -> None:
    postfix = dialects.load("postfix").for_host("mx.strictmx.test")
    assert str(postfix.replies["quit"]) == "221 2.0.0 Bye"
    assert str(postfix.replies["bare_lf"]) == (
        "550 5.5.2 mx.strictmx.test Error: bare <LF> received"
    )
    assert postfix.command_line is None and postfix.data_line is None
    assert postfix.unknown_commands is None


def test_placeholders_are_filled_with_printable_text_only() -> None:
    postfix = dialects.load("postfix")
    reply = postfix.reply("etrn_reply", arg="a\r\n250 fake\x00")
    assert reply.lines == ("<a??250 fake?>: service unavailable",)


def refusal(text: str, source: str = "bad.yaml") -> str:
    with pytest.raises(ScenarioError) as caught:
        dialects.loads(text, source=source)
    return str(caught.value)


def test_a_file_that_lacks_a_reply_is_refused_naming_the_key() -> None:
    text = bundled_text("postfix").replace("  noop_arg: {", "  # noop_arg: {")
    message = refusal(text)
    assert re.fullmatch(r"bad\.yaml:\d+ replies: missing replies: noop_arg", message), message


def test_a_file_with_an_unknown_reply_key_is_refused_at_its_line() -> None:
    text = bundled_text("postfix") + '  nop_ok: {reply: "250 Ok", source: "typo"}\n'
    line = text.count("\n")
    message = refusal(text)
    assert message.startswith(f"bad.yaml:{line} replies.nop_ok: unknown reply key"), message


def test_a_file_with_an_unknown_top_level_key_is_refused_at_its_line() -> None:
    text = bundled_text("postfix").replace("\nvrfy: false", "\nexpn: false\nvrfy: false")
    line = text.splitlines().index("expn: false") + 1
    assert refusal(text).startswith(f"bad.yaml:{line} expn: unknown key")


def test_a_bad_reply_line_is_refused_at_its_line() -> None:
    text = bundled_text("postfix").replace('"221 2.0.0 Bye"', '"2210 Bye"', 1)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if '"2210 Bye"' in t)
    message = refusal(text)
    assert message.startswith(f"bad.yaml:{line} replies.quit.reply: a reply must start"), message
    assert "'2210 Bye'" in message


def test_a_reply_whose_enhanced_code_disagrees_is_refused() -> None:
    text = bundled_text("postfix").replace('"221 2.0.0 Bye"', '"521 2.0.0 Bye"', 1)
    assert "replies.quit.reply: enhanced status 2.0.0 disagrees" in refusal(text)


def test_an_unknown_placeholder_is_refused() -> None:
    text = bundled_text("postfix").replace('"221 2.0.0 Bye"', '"221 2.0.0 Bye {user}"', 1)
    assert "replies.quit.reply: unknown placeholder {user}" in refusal(text)


def test_a_bad_limit_is_refused_at_its_line() -> None:
    text = bundled_text("postfix").replace("  command_line: null", "  command_line: -1")
    line = text.splitlines().index("  command_line: -1") + 1
    assert refusal(text).startswith(f"bad.yaml:{line} limits.command_line:")


# -- a scenario's dialect ----------------------------------------------------------------


def load_scenario(text: str) -> scenarios.Scenario:
    return scenarios.loads(textwrap.dedent(text), source="s.yaml")


def test_a_scenario_names_its_dialect_and_gets_its_enhanced_code_habit() -> None:
    plain = load_scenario("name: x\n")
    assert plain.dialect.name == "aiosmtpd"
    postfix = load_scenario("name: x\nreceiver: {dialect: postfix}\n")
    assert postfix.dialect.name == "postfix"
    assert postfix.receiver.enhanced_status_codes is True
    off = load_scenario(
        """
        name: x
        receiver: {dialect: postfix}
        dialect: {enhanced_status_codes: false}
        """
    )
    assert off.receiver.enhanced_status_codes is False
    said = load_scenario(
        """
        name: x
        receiver: {dialect: postfix, enhanced_status_codes: true}
        dialect: {enhanced_status_codes: false}
        """
    )
    assert said.receiver.enhanced_status_codes is True  # the scenario's word wins


def test_an_unknown_dialect_name_is_refused_at_its_line() -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario("name: x\nreceiver:\n  dialect: postfx\n")
    assert str(caught.value).startswith("s.yaml:3 receiver.dialect: no dialect named 'postfx'")


def test_overrides_merge_over_the_named_dialect() -> None:
    scenario = load_scenario(
        """
        name: x
        receiver: {dialect: postfix}
        dialect:
          vrfy: true
          limits: {unknown_commands: 3}
          replies:
            quit: {reply: "221 2.0.0 See you"}
        """
    )
    dialect = scenario.dialect
    assert dialect.vrfy is True and dialect.unknown_commands == 3
    assert dialect.command_line is None  # the rest of limits: Postfix's
    assert str(dialect.replies["quit"]) == "221 2.0.0 See you"
    assert dialect.sources["quit"] == "scenario override"
    assert str(dialect.replies["noop_ok"]) == "250 2.0.0 Ok"
    # The control: the bundled dialect itself is unchanged.
    assert str(dialects.load("postfix").replies["quit"]) == "221 2.0.0 Bye"


@pytest.mark.parametrize(
    ("section", "where", "problem"),
    [
        ("  vrfi: true", "s.yaml:5 dialect.vrfi", "unknown key"),
        (
            '  replies:\n    qit: {reply: "221 Bye"}',
            "s.yaml:6 dialect.replies.qit",
            "unknown reply",
        ),
        ('  replies:\n    quit: {reply: "Bye"}', "s.yaml:6 dialect.replies.quit.reply", "a reply"),
        ("  bare_lf: maybe", "s.yaml:5 dialect.bare_lf", "'maybe' is not one of"),
        ('  forbidden_pattern: "^[^A-Z"', "s.yaml:5 dialect.forbidden_pattern", "not a regular"),
        ("  data_bare_lf: accept", "s.yaml:5 dialect.data_bare_lf", "'reject', 'line_end'"),
        ("  vrfy_checks_recipient: maybe", "s.yaml:5 dialect.vrfy_checks_recipient", "bool"),
    ],
)
def test_a_bad_override_is_refused_at_its_line_in_the_scenario(
    section: str, where: str, problem: str
) -> None:
    text = "name: x\nreceiver: {dialect: postfix}\n# the dialect\ndialect:\n" + section + "\n"
    with pytest.raises(ScenarioError) as caught:
        scenarios.loads(text, source="s.yaml")
    message = str(caught.value)
    assert message.startswith(where), message
    assert problem in message, message
