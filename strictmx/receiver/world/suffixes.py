"""Registered domains by the Public Suffix List (the copy shipped with publicsuffixlist).

Two readings, because the question differs: who *registered* a name at a registry
(ICANN section only: `a.blogspot.com` was registered as `blogspot.com`, which is what
RDAP knows) and who *owns* a name (private section too: `a.blogspot.com` and
`b.blogspot.com` are different owners, which is what HELO/PTR agreement asks).
"""

from __future__ import annotations

import functools

from publicsuffixlist import PublicSuffixList


@functools.cache
def _list(icann_only: bool) -> PublicSuffixList:
    # Loaded once, on first use, from the package; never downloaded.
    return PublicSuffixList(only_icann=icann_only)


@functools.lru_cache(maxsize=8192)
def registered_domain(name: str, *, icann_only: bool = False) -> str | None:
    """`name`'s public suffix plus one label (lower-case text as given), or None when
    `name` is itself a public suffix. Senders and HELO names repeat: answers are kept."""
    found: str | None = _list(icann_only).privatesuffix(name)
    return found
