"""Normalising reply texts for matching: identifiers become class tokens, noise goes."""

from __future__ import annotations

import functools
import ipaddress
import itertools
import re
from collections import Counter
from collections.abc import Sequence

from publicsuffixlist import PublicSuffixList

from ..outcome import Fields
from . import cache
from .extract import CODE, DSN, DSN_RE, MAX_REPLY_TEXT


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS = _words(
    "a an the of to is are was be been for and or in on at by with as it its this "
    "that these those from your you we our us please has have had will would can "
    "could may if than then there here into per via so any all"
)
#: Session tags large providers append; they say who sent the reply, not why.
_TAGS = frozenset({"gsmtp", "gcdp"})

_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"')\]]+|\bwww\.[^\s<>\"')\]]+", re.I)
_EMAIL = re.compile(r"<?[\w.!#$%&'*+/=?^`{|}~-]+@[\w.-]+\w>?")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\w)")
_IPV6 = re.compile(r"(?<![\w:])(?:IPv6:)?[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_HOST = re.compile(r"(?<![\w.@-])(?:[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\b")
#: A queue id, session tag or reference: letters and at least three digits, maybe with
#: dots and dashes (k5si1437052qkb.183, 4W0T9k2p4Jz2Abc, AS16012607). The eight characters
#: are asked for first: the digit count reads on to the next space, and would otherwise do
#: so from every character of a run of punctuation.
_ID_RUN = re.compile(
    r"(?<![\w.-])(?=[\w.-]{8})(?=(?:[^\d\s]*\d){3})(?=[\w.-]*[A-Za-z])"
    r"[\w.-]{8,}(?<![.-])(?![\w-])"
)
_RFC = re.compile(r"\brfc[\s.-]?(\d{3,4})\b", re.I)
_CONTINUATION = re.compile(rf"(?:^|\s){CODE}[- ](?:{DSN})?(?=\s|$)")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_WORD = re.compile(r"[a-z0-9]+")


#: Spellings of one term that replies use interchangeably.
_SPELLINGS = (
    (re.compile(r"\b(?:black|block)[\s-]?list", re.I), "blacklist"),
    (re.compile(r"\bhost[\s-]name", re.I), "hostname"),
    (re.compile(r"\be-mail", re.I), "email"),
    (re.compile(r"\bre-?verse[\s-]dns\b|\brdns\b", re.I), "rdns"),
)


def _stem(word: str) -> str:
    for suffix in ("ing", "ion", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _is_id(word: str) -> bool:
    digits = sum(ch.isdigit() for ch in word)
    return len(word) >= 8 and digits >= 3 and digits < len(word) and not word.startswith("rfc")


def tokens(
    text: str, known: frozenset[str] | None = None, fields: Fields | None = None
) -> list[str]:
    """Normalised words of a reply: identifiers become class tokens, noise goes.

    A catalogue template's `{placeholders}` become their kind's sample value (`fields`, the
    outcome's), so the template normalises as the same reply with real values would; free
    text and anything not a field of the outcome drop.

    The labels of host names and URLs come out as `@label` tokens. `known` says which
    of them count: a label says something only when it names one kind of check (a block
    list's zone such as spamhaus or spamcop), not a provider that sends every kind of
    reply (google, yahoo) or the customer's own domains. For catalogue texts (`known`
    None) every label comes out.
    """
    text = text[:MAX_REPLY_TEXT]
    text = _CONTINUATION.sub(" ", text)
    text = DSN_RE.sub(" ", text)

    extra: list[str] = []

    def labels(target: str) -> str:
        host = re.split(r"[/?#:]", target, maxsplit=1)[0]
        words = [w for w in re.split(r"[^a-z0-9]+", host.lower()) if len(w) > 2]
        words = [w for w in words if not w.isdigit()]
        words = [w for w in words if w not in ("www", "com", "net", "org", "http", "https")]
        # Sample values and documentation names (example.net) stand for any host.
        words = [w for w in words if w not in placeholder_labels and w not in _RESERVED_TLDS]
        extra.extend(f"@{w}" for w in words if known is None or f"@{w}" in known)
        return " "

    samples = fields or {}
    used: set[str] = set()

    def sample(match: re.Match[str]) -> str:
        kind = samples.get(match.group(1))
        if kind is None:
            return ""
        used.add(kind.sample)
        return kind.sample

    text = _PLACEHOLDER.sub(sample, text)
    # A sample value stands for any value: its labels (`host.example.net`) say nothing.
    placeholder_labels = {w for value in used for w in re.split(r"[^a-z0-9]+", value.lower())}
    text = _URL.sub(lambda m: " xurl " + labels(re.sub(r"^\w+://", "", m.group(0))), text)
    text = _EMAIL.sub(" xaddr ", text)
    text = text.replace("<>", " xaddr ")
    text = _IPV4.sub(" xip ", text)
    text = _IPV6.sub(lambda m: " xip " if _is_ipv6(m.group(0)) else m.group(0), text)
    text = _HOST.sub(
        lambda m: " xhost " + labels(m.group(0)) if _is_host(m.group(0)) else m.group(0), text
    )
    text = _ID_RUN.sub(" xid ", text)
    text = _RFC.sub(r" rfc\1 ", text)
    for pattern, spelling in _SPELLINGS:
        text = pattern.sub(spelling, text)
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS or word in _TAGS:
            continue
        if word.isdigit():
            out.append("xnum")
        elif _is_id(word):
            out.append("xid")
        else:
            out.append(_stem(word))
    return out + extra


#: Top-level names that are no public suffix but name hosts in bounces all the same.
_RESERVED_TLDS = _words(
    "test example invalid localhost local lan internal corp home localdomain arpa"
)


@functools.cache
def _suffixes() -> PublicSuffixList:
    # Parsing the list costs about 0.1 s, a third of a one-bounce `strictmx explain`; read
    # back from the cache it costs 3 ms (a new publicsuffixlist changes the cache's key).
    return cache.cached("public-suffixes", _parse_suffixes, PublicSuffixList)


def _parse_suffixes() -> PublicSuffixList:
    return PublicSuffixList(accept_unknown=False)


def _is_host(text: str) -> bool:
    """A dotted name whose top label is a real or reserved TLD (not `bl.shtml`, not
    `RESOLVER.ADR.RecipNotFound`)."""
    name = text.lower()
    return name.rsplit(".", 1)[-1] in _RESERVED_TLDS or _suffixes().publicsuffix(name) is not None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.removeprefix("IPv6:").removeprefix("ipv6:"))
    except ValueError:
        return False
    return True


def features(words: Sequence[str]) -> Counter[str]:
    grams: Counter[str] = Counter(words)
    grams.update(f"{a} {b}" for a, b in itertools.pairwise(words))
    return grams
