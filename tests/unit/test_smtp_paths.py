"""StrictSMTP parses MAIL/RCPT paths itself (aiosmtpd's parser builds a class per call):
the results must be aiosmtpd's, for every argument."""

from __future__ import annotations

from types import SimpleNamespace

from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from strictmx.receiver.grammar import parse_path as _parse_path

ATOMS = st.sampled_from(
    ["<", ">", "@", ".", " ", "\"", "\\", "(", ")", ",", ":", ";", "[", "]", "=",
     "a", "bench", "example.net", "x" * 70, "SIZE=100", "BODY=8BITMIME", "é", "\t"]
)  # fmt: skip
ARGS = st.one_of(st.text(max_size=40), st.lists(ATOMS, max_size=12).map("".join))


def aiosmtpd_getaddr(arg: str, limit: int) -> tuple[str | None, str | None]:
    try:
        return SMTP._getaddr(SimpleNamespace(local_part_limit=limit), arg)  # type: ignore[arg-type]
    except Exception:  # aiosmtpd would answer 500 Error: (IndexError) ... and the like
        return None, None  # strictmx: a malformed address


@settings(max_examples=3000)
@given(arg=ARGS, limit=st.sampled_from([0, 8, 64]))
def test_paths_parse_as_aiosmtpd_parses_them(arg: str, limit: int) -> None:
    assert _parse_path(arg, limit) == aiosmtpd_getaddr(arg, limit)


def test_truncated_path_is_malformed_not_a_crash() -> None:
    assert _parse_path("<@", 0) == (None, None)
    assert _parse_path("x@", 0) == (None, None)
    assert _parse_path('"', 0) == (None, None)
    assert _parse_path("0@[", 0) == (None, None)
    assert _parse_path("0@[\t", 0) == (None, None)


def test_known_paths() -> None:
    assert _parse_path("<bench@example.net> SIZE=100", 0) == ("bench@example.net", "SIZE=100")
    assert _parse_path("<>", 0) == ("<>", "")  # the null path, as aiosmtpd gives it
    assert _parse_path("", 0) == ("", "")
    assert _parse_path("<bench@>", 0) == (None, None)
    assert _parse_path("<@relay.example:bench@example.net>", 0)[0] == "bench@example.net"
    assert _parse_path("<" + "x" * 70 + "@example.net>", 64) == (None, None)
    assert _parse_path("<" + "x" * 70 + "@example.net>", 0)[0] == "x" * 70 + "@example.net"
