"""When domains were registered, for policies that distrust new domains.

Strict receivers ask the domain's registry when it was registered, over RDAP (RFC 7480,
RFC 9082, RFC 9083): the answer is a domain object whose `events` array holds an event
with `eventAction: "registration"` and its `eventDate`. A scenario's `world.registrations`
section says where the dates come from:

- `hermetic` (default): only the scenario's `domains` table; any other domain has no
  known registration.
- `overlay`: the table first, then RDAP for domains it does not list.
- `system`: RDAP only.

Look-ups are by registered domain: the public suffix plus one label, from the ICANN section
of the Public Suffix List (the `publicsuffixlist` package ships it), so `mail.example.co.uk`
is looked up as `example.co.uk`. Private-section suffixes such as `blogspot.com` are not
registries and have no RDAP service of their own, so they do not count.

RDAP answers are cached in the world, shared by every session: a date for `ttl` seconds,
"no such domain" (HTTP 404) for `negative_ttl` seconds; failures are not cached. A failure
(timeout, unreachable server, an HTTP error other than 404, a malformed answer) raises
`RegistrationTempFail`, which a policy turns into a deferral.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from ..trust import Reach, reaches
from .config_types import distinct_keys
from .names import normalise_name
from .suffixes import registry_domain

Mode = Literal["hermetic", "overlay", "system"]

#: An RDAP domain object is a few kilobytes; anything far larger is not one.
MAX_ANSWER = 1 << 20
#: RFC 7480 §4.2: the media type a client asks for.
RDAP_ACCEPT = "application/rdap+json, application/json;q=0.9"


class RegistrationTempFail(Exception):
    """The registration date could not be learned now; asking later may work."""

    def __init__(self, domain: str, detail: str) -> None:
        self.domain = domain
        self.detail = detail
        super().__init__(f"{domain}: {detail}")


# -- registered domains ------------------------------------------------------------------


def _registered_key(text: str) -> str:
    name = normalise_name(text)
    found = registry_domain(name)
    if found is None:
        raise ValueError(f"{name} is a public suffix; list a domain registered under it")
    if found != name:
        raise ValueError(
            f"{name} is not a registered domain; look-ups use its registered domain {found}"
        )
    return name


RegisteredDomain = Annotated[str, AfterValidator(_registered_key)]


# -- schema ------------------------------------------------------------------------------


class RegistrationsConfig(BaseModel):
    """The `world.registrations` section."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = Field(
        "hermetic",
        description="hermetic: only `domains`; overlay: `domains` first, then RDAP; "
        "system: RDAP only.",
    )
    domains: Annotated[dict[RegisteredDomain, date], distinct_keys(normalise_name)] = Field(
        default_factory=dict,
        description="Registered domain -> ISO date of its registration (e.g. 2024-05-01).",
    )
    tempfail: list[RegisteredDomain] = Field(
        default_factory=list,
        description="Registered domains whose look-up fails temporarily, as a registry outage.",
    )
    rdap_url: Annotated[str, reaches(Reach.URL)] | None = Field(
        None,
        description="RDAP URL template with {domain}, e.g. https://rdap.org/domain/{domain}; "
        "needed by overlay and system.",
    )
    timeout: float = Field(5.0, gt=0, description="Seconds an RDAP query may take in all.")
    ttl: float = Field(86400.0, ge=0, description="Seconds an RDAP registration date is cached.")
    negative_ttl: float = Field(
        3600.0, ge=0, description="Seconds an RDAP 'no such domain' (404) answer is cached."
    )
    cache_size: int = Field(10000, ge=1, description="Most domains kept in the RDAP cache.")

    @field_validator("rdap_url")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if "{domain}" not in value:
            raise ValueError(f"the RDAP URL template needs a {{domain}} placeholder: {value!r}")
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the RDAP URL must be an http:// or https:// URL: {value!r}")
        return value

    @model_validator(mode="after")
    def _rdap_for_real_lookups(self) -> Self:
        if self.mode != "hermetic" and self.rdap_url is None:
            raise ValueError(f"{self.mode} mode asks RDAP, so it needs rdap_url")
        return self


# -- RDAP answers --------------------------------------------------------------------------


def registration_date(answer: bytes | str) -> date | None:
    """The registration date in an RDAP domain object (RFC 9083 §5.3, events §4.5).

    The date is the `eventDate` (RFC 3339) of the `registration` event, in UTC; None when
    the object has no such event. A domain that lapsed and was registered again may list
    several: the latest is the current holder's. ValueError when the answer is not an RDAP
    object.
    """
    data = json.loads(answer)
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    events = data.get("events", [])
    if not isinstance(events, list):
        raise ValueError("'events' is not an array")
    dates: list[date] = []
    for event in events:
        if not isinstance(event, dict):
            raise ValueError("an event is not an object")
        if event.get("eventAction") != "registration":
            continue
        when = event.get("eventDate")
        if not isinstance(when, str):
            raise ValueError("the registration event has no eventDate string")
        try:
            stamp = datetime.fromisoformat(when)
        except ValueError:
            raise ValueError(f"eventDate {when!r} is not an RFC 3339 date and time") from None
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(UTC)
        dates.append(stamp.date())
    return max(dates, default=None)


def _fetch(domain: str, url: str, timeout: float) -> date | None:
    """One blocking RDAP query (run in a worker thread)."""
    request = urllib.request.Request(url, headers={"Accept": RDAP_ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = response.read(MAX_ANSWER + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 404:  # RFC 7480 §5.3: the registry has no such object
            return None
        raise RegistrationTempFail(domain, f"RDAP server answered HTTP {exc.code}") from None
    except TimeoutError:
        raise RegistrationTempFail(domain, f"RDAP server did not answer in {timeout:g}s") from None
    except urllib.error.URLError as exc:
        raise RegistrationTempFail(domain, f"RDAP server unreachable: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise RegistrationTempFail(domain, f"RDAP query failed: {exc!r}") from None
    if len(answer) > MAX_ANSWER:
        raise RegistrationTempFail(domain, f"RDAP answer is over {MAX_ANSWER} octets")
    try:
        return registration_date(answer)
    except ValueError as exc:
        raise RegistrationTempFail(domain, f"malformed RDAP answer: {exc}") from None


# -- runtime -----------------------------------------------------------------------------


class Registrations:
    """Registration dates, from the scenario's table and RDAP; see the module docstring."""

    def __init__(
        self,
        domains: Mapping[str, date] | None = None,
        *,
        mode: Mode = "hermetic",
        tempfail: Iterable[str] = (),
        rdap_url: str | None = None,
        timeout: float = 5.0,
        ttl: float = 86400.0,
        negative_ttl: float = 3600.0,
        cache_size: int = 10000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if mode != "hermetic" and rdap_url is None:
            raise ValueError(f"{mode} mode needs an RDAP URL template")
        self.mode = mode
        self._domains = dict(domains or {})
        self._tempfail = frozenset(tempfail)
        self._rdap_url = rdap_url
        self._timeout = timeout
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._cache_size = cache_size
        self._monotonic = monotonic
        #: domain -> (monotonic expiry, date or None for "no such domain")
        self._cache: dict[str, tuple[float, date | None]] = {}
        #: One query per domain in flight, however many sessions ask for it at once.
        self._pending: dict[str, asyncio.Task[date | None]] = {}

    @classmethod
    def from_config(cls, cfg: RegistrationsConfig) -> Registrations:
        return cls(
            cfg.domains,
            mode=cfg.mode,
            tempfail=cfg.tempfail,
            rdap_url=cfg.rdap_url,
            timeout=cfg.timeout,
            ttl=cfg.ttl,
            negative_ttl=cfg.negative_ttl,
            cache_size=cfg.cache_size,
        )

    async def registered(self, domain: str) -> date | None:
        """When `domain`'s registered domain was registered; None when that is not known.

        Raises RegistrationTempFail when the registry cannot be asked now.
        """
        name = registry_domain(domain)
        if name is None:
            return None
        if name in self._tempfail:
            raise RegistrationTempFail(name, "registry look-up fails (scripted)")
        if self.mode != "system" and name in self._domains:
            return self._domains[name]
        if self.mode == "hermetic":
            return None
        return await self._rdap(name)

    async def _rdap(self, name: str) -> date | None:
        hit = self._cache.get(name)
        if hit is not None and hit[0] > self._monotonic():
            return hit[1]
        task = self._pending.get(name)
        if task is None:
            task = asyncio.create_task(self._query(name))
            self._pending[name] = task
            task.add_done_callback(functools.partial(self._settled, name))
        # A session that goes away must not cancel the query the others wait for.
        return await asyncio.shield(task)

    def _settled(self, name: str, task: asyncio.Task[date | None]) -> None:
        self._pending.pop(name, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone away

    async def _query(self, name: str) -> date | None:
        assert self._rdap_url is not None  # __init__ refuses RDAP modes without one
        url = self._rdap_url.replace("{domain}", urllib.parse.quote(name, safe=""))
        try:
            found = await asyncio.wait_for(
                asyncio.to_thread(_fetch, name, url, self._timeout), self._timeout
            )
        except TimeoutError:
            raise RegistrationTempFail(
                name, f"RDAP server did not answer in {self._timeout:g}s"
            ) from None
        ttl = self._ttl if found is not None else self._negative_ttl
        self._cache.pop(name, None)
        if len(self._cache) >= self._cache_size:
            # Oldest insertion first: a dict keeps insertion order.
            self._cache.pop(next(iter(self._cache)))
        self._cache[name] = (self._monotonic() + ttl, found)
        return found
