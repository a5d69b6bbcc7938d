"""The author domain and identifier alignment, as dmarc and bulk_sender both read them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strictmx.receiver import alignment
from strictmx.receiver.alignment import aligned, author_domain
from strictmx.receiver.rfc5322 import SIMPLE_MAILBOX


def message(*froms: str) -> bytes:
    fields = "".join(f"From: {f}\r\n" for f in froms)
    return f"{fields}To: bob@example.org\r\nSubject: s\r\n\r\nbody\r\n".encode()


@pytest.mark.parametrize(
    ("identifier", "from_domain", "mode", "expected"),
    [
        ("example.com", "example.com", "s", True),
        ("mail.example.com", "example.com", "s", False),
        ("mail.example.com", "example.com", "r", True),
        ("a.example.co.uk", "b.example.co.uk", "r", True),  # a multi-label public suffix
        ("example.co.uk", "other.co.uk", "r", False),
        ("co.uk", "example.co.uk", "r", False),
        ("EXAMPLE.com.", "example.COM", "s", True),
        ("", "example.com", "r", False),
        ("example.com", "", "r", False),
    ],
)
def test_alignment(identifier: str, from_domain: str, mode: str, expected: bool) -> None:
    assert aligned(identifier, from_domain, mode) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("froms", "expected"),
    [
        (["alice@Example.COM"], "example.com"),
        (["Alice <alice@example.com>"], "example.com"),
        (['"alice@evil.example" <alice@example.com>'], "example.com"),  # the quoted @ is text
        (["Alice (at work) <alice@example.com>"], "example.com"),  # the stdlib's path
        (["a@one.example, b@two.example"], None),
        (["undisclosed:;"], None),
        (["alice@[192.0.2.1]"], None),
        (["alice@example.com", "bob@example.com"], None),
        ([], None),
    ],
)
def test_author_domain(froms: list[str], expected: str | None) -> None:
    domain, why = author_domain(message(*froms))
    assert domain == expected
    assert (why == "") is (expected is not None)


_ATOM = st.text("abcxyz09!#$%&'*+-/=?^_`{|}~", min_size=1, max_size=6)
_DOMAIN = st.lists(st.text("abcxyz09-", min_size=1, max_size=6), min_size=1, max_size=3).map(
    lambda labels: ".".join([*labels, "example"])
)


@given(
    local=_ATOM,
    domain=_DOMAIN,
    phrase=st.one_of(st.none(), _ATOM, _ATOM.map(lambda a: f'"{a}@x"')),
)
def test_the_quick_reading_agrees_with_the_stdlib(
    local: str, domain: str, phrase: str | None
) -> None:
    value = f"{phrase} <{local}@{domain}>" if phrase is not None else f"{local}@{domain}"
    assert SIMPLE_MAILBOX.fullmatch(value)
    raw = message(value)
    quick = alignment._author_domain(raw)
    parsed = alignment._REGISTRY("From", value)
    try:
        stdlib = (alignment.domain_name(parsed.addresses[0].domain), "")
    except ValueError:
        stdlib = quick  # not a host name either way: both say why in their own words
        assert quick[0] is None
    assert quick == stdlib
