"""DKIM keys in the world, looked up for `dkim` and `arc`.

The policies look a selector's key up here, through the world's DNS, before dkimpy sees the
message: dkimpy then gets a `dnsfunc` that answers from what was fetched, so it opens no
socket and a scenario's records, its scripted SERVFAILs and its timeouts decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .dns import NoData, NXDomain, TempFail, WorldDNS


def key_name(selector: str, domain: str) -> str:
    """Where a selector's key is published (RFC 6376 §3.6.2.1)."""
    return f"{selector}._domainkey.{domain}".rstrip(".").lower()


@dataclass(frozen=True)
class KeyLookup:
    """What the world said about one key name: its TXT records, none, or a failure."""

    name: str
    #: Each TXT record's strings joined (RFC 6376 §3.6.2.2); empty when there is none.
    records: tuple[str, ...] = ()
    #: The temporary failure ("SERVFAIL", "timeout"), or "" when the lookup was answered.
    temporary: str = ""

    @property
    def record(self) -> str | None:
        """The key record dkimpy is given: the first TXT record, as dkimpy's own lookup
        takes it (several records at one selector are the publisher's mistake)."""
        return self.records[0] if self.records else None


async def fetch_key(dns: WorldDNS, name: str) -> KeyLookup:
    try:
        answers = await dns.resolve(name, "TXT")
    except (NXDomain, NoData):
        return KeyLookup(name)
    except TempFail as exc:
        return KeyLookup(name, temporary="SERVFAIL" if exc.kind == "servfail" else exc.kind)
    records = []
    for rdata in answers:
        strings: Iterable[bytes] = getattr(rdata, "strings", ())
        records.append(b"".join(strings).decode("ascii", "replace"))
    return KeyLookup(name, tuple(records))


async def fetch_keys(dns: WorldDNS, names: Iterable[str]) -> dict[str, KeyLookup]:
    """Each distinct name asked once, in order."""
    found: dict[str, KeyLookup] = {}
    for name in names:
        if name not in found:
            found[name] = await fetch_key(dns, name)
    return found


def answering(keys: Mapping[str, KeyLookup]) -> object:
    """A dkimpy `dnsfunc` that answers from `keys` only: nothing fetched, no key."""

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        found = keys.get(text.rstrip(".").lower())
        record = found.record if found is not None else None
        return record.encode("ascii", "replace") if record is not None else None

    return dnsfunc
