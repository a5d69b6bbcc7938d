"""No persona speaks aiosmtpd's words unless its dialect is aiosmtpd.

Every session of sessions.yaml on the reference configuration is played against
postfix-strict switched to each bundled dialect in turn; no reply line may be one of
aiosmtpd's own texts that the dialect does not itself use (the issue's "no aiosmtpd reply
text reaches the wire unless the persona is one that speaks aiosmtpd"). The control: the
same sessions against the aiosmtpd dialect do meet those texts, so the check can fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from strictmx.receiver import dialect as dialects
from strictmx.receiver.dialect import Dialect
from strictmx.receiver.pytest_plugin import StrictmxFactory

from . import suite
from .player import Played

HOSTNAME = "mx.strictmx.test"  # postfix-strict's
SESSIONS = [s for s in suite.load_sessions() if s.config == suite.REFERENCE.name]
_ENHANCED = re.compile(r"^([2-5][0-9][0-9])[ -](?:[245]\.[0-9]{1,3}\.[0-9]{1,3} )?")


def _said(line: str) -> tuple[str, str]:
    """A reply line as (code, text): without its enhanced code, which personas add or not."""
    found = _ENHANCED.match(line)
    return (found.group(1), line[found.end() :]) if found else ("", line)


def _pattern(code: str, text: str) -> re.Pattern[str]:
    parts = re.split(r"\{\w+\}", text)
    return re.compile(re.escape(code) + " " + ".*".join(re.escape(p) for p in parts) + "$")


def aiosmtpd_words(other: Dialect) -> list[re.Pattern[str]]:
    """aiosmtpd's own reply lines (the aiosmtpd dialect's entries taken from aiosmtpd, not
    the replies strictmx always added) that `other` never uses itself; the host name is
    filled in on both sides, and a line that is nothing but a placeholder says nothing."""
    own = {
        _said(line)
        for reply in other.for_host(HOSTNAME).replies.values()
        for line in reply.wire_lines(enhanced=False)
    }
    aiosmtpd = dialects.load("aiosmtpd").for_host(HOSTNAME)
    words = []
    for key, reply in aiosmtpd.replies.items():
        if not aiosmtpd.sources[key].startswith("aiosmtpd"):
            continue
        for line in reply.wire_lines(enhanced=False):
            code, text = _said(line)
            if (code, text) not in own and re.sub(r"\{\w+\}", "", text).strip():
                words.append(_pattern(code, text))
    return words


def lines(played: Played) -> Iterator[str]:
    for turn in played.turns:
        yield from turn.reply or ()
    yield from played.trailing


def heard(name: str) -> dict[str, list[str]]:
    """Every reply line postfix-strict sends under dialect `name`, by session."""
    data = {"receiver": {"dialect": name}}
    config = suite.Config(name=f"dialect-{name}", postfix={}, strictmx=data)
    factory = StrictmxFactory(suite.SCENARIO)
    try:
        rx = factory(suite.strictmx_scenario(config), trusted=())
        return {s.name: list(lines(suite.play_strictmx(rx, s))) for s in SESSIONS}
    finally:
        factory.stop()


def aiosmtpd_lines(name: str) -> list[str]:
    other = dialects.load(name)
    words = aiosmtpd_words(other)
    found = []
    for session, said in heard(name).items():
        for line in said:
            code, text = _said(line)
            if any(w.match(f"{code} {text}") for w in words):
                found.append(f"{session}: {line}")
    return found


@pytest.mark.parametrize("name", [n for n in dialects.bundled_dialects() if n != "aiosmtpd"])
def test_a_dialect_never_speaks_aiosmtpd(name: str) -> None:
    found = aiosmtpd_lines(name)
    assert not found, f"the {name} dialect sent aiosmtpd's words:\n" + "\n".join(found[:20])


def test_the_check_finds_aiosmtpd_words_where_they_are_spoken() -> None:
    # Control: aiosmtpd's words, looked for as postfix's, in aiosmtpd's own sessions.
    words = aiosmtpd_words(dialects.load("postfix"))
    said = [line for s in heard("aiosmtpd").values() for line in s]
    assert any(w.match(" ".join(_said(line))) for line in said for w in words)
