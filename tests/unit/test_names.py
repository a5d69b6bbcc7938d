"""world/names.a_label: IDNA 2008 for non-ASCII labels, ASCII labels untouched."""

from __future__ import annotations

import re

import pytest

from strictmx.receiver.world.names import a_label


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("straße", "xn--strae-oqa"),  # IDNA 2003: "strasse"
        ("Bücher", "xn--bcher-kva"),  # UTS 46 folds case first
        ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45", "example"),  # and width (full-width)
        ("bü_cher", "xn--b_cher-3ya"),  # '_' is the caller's host-name rule, not IDNA's
        ("MX-1_a", "MX-1_a"),  # ASCII as given, case and all
    ],
)
def test_a_labels(label: str, expected: str) -> None:
    assert a_label(label) == expected


@pytest.mark.parametrize(
    ("label", "problem"),
    [
        ("a\u200db", "Joiner U+200D not allowed"),  # IDNA 2003: "ab"
        ("\u2603", "Codepoint U+2603 at position 1"),  # IDNA 2003: "xn--n3h"
        ("ü" * 58, "Label too long"),
        ("a\u3002b", "maps to more than one label"),
        ("bücher-", "must not start or end with a hyphen"),
    ],
)
def test_refused_labels_say_why(label: str, problem: str) -> None:
    with pytest.raises(UnicodeError, match=re.escape(problem)):
        a_label(label)
