"""Registered domains by the Public Suffix List (the copy shipped with publicsuffixlist).

Two questions, two functions, because the answers differ:

- `registry_domain`: what was *registered at a registry* (ICANN section only):
  `a.blogspot.com` was registered as `blogspot.com`, which is what RDAP knows.
- `owner_domain`: who *owns* a name (private section too): `a.blogspot.com` and
  `b.blogspot.com` are different owners, which is what HELO/PTR agreement asks.
"""

from __future__ import annotations

import functools

from publicsuffixlist import PublicSuffixList

from .names import normalise_name


@functools.cache
def _list(icann_only: bool) -> PublicSuffixList:
    # Loaded once, on first use, from the package; never downloaded.
    return PublicSuffixList(only_icann=icann_only)


@functools.lru_cache(maxsize=8192)
def owner_domain(name: str) -> str | None:
    """`name`'s public suffix plus one label, private-section suffixes included
    (lower-case text as given), or None when `name` is itself a public suffix.
    Senders and HELO names repeat: answers are kept."""
    found: str | None = _list(False).privatesuffix(name)
    return found


@functools.lru_cache(maxsize=8192)
def registry_domain(domain: str) -> str | None:
    """The domain a registry holds for `domain`: its ICANN public suffix plus one label,
    in lowercase A-labels; None when there is none (an address literal, a malformed name,
    or a public suffix itself such as `co.uk`)."""
    if domain.startswith("["):
        return None
    try:
        name = normalise_name(domain)
    except ValueError:
        return None
    found: str | None = _list(True).privatesuffix(name)
    return found
