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

The RDAP server for a domain is the one the IANA bootstrap registry names for its TLD
(RFC 9224: a JSON file of `services`, each `[[TLDs], [base URLs]]`; the default is IANA's
own `https://data.iana.org/rdap/dns.json`, `rdap_bootstrap` names another), unless
`rdap_url` names one server for every domain. The bootstrap file is fetched when first
needed and kept for `bootstrap_ttl` seconds. A TLD the bootstrap lists no server for has
no registration data to learn: its domains are unknown, like a 404.

Queries go out on the event loop with aiohttp's client. RDAP answers are cached in the
world, shared by every session: a date for `ttl` seconds, "no such domain" (HTTP 404) for
`negative_ttl` seconds; failures are not cached. A failure (timeout, unreachable server or
bootstrap, an HTTP error other than 404, a malformed answer or bootstrap file) raises
`RegistrationTempFail`, which a policy turns into a deferral.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, TypeVar

import aiohttp
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from ..trust import Reach, reaches
from .config_types import Mode, beyond_hermetic, distinct_keys
from .names import normalise_name
from .suffixes import registry_domain

#: An RDAP domain object is a few kilobytes; anything far larger is not one.
MAX_ANSWER = 1 << 20
#: IANA's bootstrap file is some tens of kilobytes; a far larger one is not it.
MAX_BOOTSTRAP = 4 << 20
#: RFC 7480 §4.2: the media type a client asks for.
RDAP_ACCEPT = "application/rdap+json, application/json;q=0.9"
#: RFC 9224 §3, §8: the bootstrap registry for domain names, published by IANA.
IANA_BOOTSTRAP = "https://data.iana.org/rdap/dns.json"


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

    mode: Annotated[Mode, beyond_hermetic(Reach.URL)] = Field(
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
        description="RDAP URL template with {domain}, e.g. https://rdap.org/domain/{domain}: "
        "ask this server for every domain instead of the one the bootstrap names.",
    )
    rdap_bootstrap: Annotated[str, reaches(Reach.URL)] = Field(
        IANA_BOOTSTRAP,
        description="URL of the RDAP bootstrap file for domains (RFC 9224) that names each "
        "TLD's RDAP server; unused when rdap_url is given.",
    )
    bootstrap_ttl: float = Field(
        86400.0, ge=0, description="Seconds the bootstrap file is kept before it is fetched again."
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
        _http_url(value, "the RDAP URL")
        return value

    @field_validator("rdap_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        _http_url(value, "the RDAP bootstrap URL")
        return value


def _http_url(value: str, what: str) -> None:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an http:// or https:// URL: {value!r}")


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


def bootstrap_services(answer: bytes | str) -> dict[str, str]:
    """Label sequence (a TLD such as `com`, or longer) -> the RDAP base URL to ask for it,
    from a bootstrap file for domains (RFC 9224 §4).

    The file is `{"services": [[[entries], [base URLs]], ...]}`. Of a service's URLs an
    https one is taken where listed (RFC 9224 §3 asks clients to prefer it); base URLs end
    with '/' (added where a file left it off). Entries are compared in lowercase.
    ValueError when the file is not a bootstrap file.
    """
    data = json.loads(answer)
    if not isinstance(data, dict) or not isinstance(data.get("services"), list):
        raise ValueError("no 'services' array")
    found: dict[str, str] = {}
    for service in data["services"]:
        if not (isinstance(service, list) and len(service) >= 2):
            raise ValueError("a service is not an array of [entries, URLs]")
        entries, urls = service[0], service[1]
        if not _strings(entries) or not _strings(urls):
            raise ValueError("a service's entries and URLs are not arrays of strings")
        https = [url for url in urls if url.lower().startswith("https://")]
        chosen = next(iter(https or [u for u in urls if u.lower().startswith("http://")]), None)
        if chosen is None:
            continue  # no URL this client can use: as if the TLD were not listed
        base = chosen if chosen.endswith("/") else chosen + "/"
        for entry in entries:
            found[entry.lower().rstrip(".")] = base
    return found


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def server_for(services: Mapping[str, str], domain: str) -> str | None:
    """The base URL whose entry matches most labels at the end of `domain` (RFC 9224 §4:
    the longest match), or None when no entry does."""
    labels = domain.lower().split(".")
    for start in range(len(labels)):
        base = services.get(".".join(labels[start:]))
        if base is not None:
            return base
    return None


@dataclass(frozen=True)
class _Fetched:
    """An HTTP answer: its status, and its body when the status is 2xx."""

    status: int
    body: bytes


async def _get(url: str, *, accept: str, timeout: float, limit: int) -> _Fetched:
    """GET `url` on the running loop; of a 2xx body at most `limit` + 1 octets are read.

    Redirects are followed: RDAP servers and aggregators send clients on to the registry
    that holds the answer (RFC 7480 §5.2).
    """
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as http,
        http.get(url, headers={"Accept": accept}) as response,
    ):
        if not 200 <= response.status < 300:
            return _Fetched(response.status, b"")
        body = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > limit:
                break
        return _Fetched(response.status, bytes(body))


async def _fetch(domain: str, url: str, what: str, timeout: float, limit: int) -> _Fetched:
    """`_get`, its failures as RegistrationTempFail saying which server (`what`) and why."""
    try:
        fetched = await asyncio.wait_for(
            _get(url, accept=RDAP_ACCEPT, timeout=timeout, limit=limit), timeout
        )
    except TimeoutError:
        raise RegistrationTempFail(domain, f"{what} did not answer in {timeout:g}s") from None
    except aiohttp.ClientConnectorError as exc:
        why = exc.os_error.strerror or type(exc.os_error).__name__
        raise RegistrationTempFail(domain, f"{what} unreachable: {why}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise RegistrationTempFail(domain, f"{what} query failed: {type(exc).__name__}") from None
    if len(fetched.body) > limit:
        raise RegistrationTempFail(domain, f"{what} answer is over {limit} octets")
    return fetched


# -- runtime -----------------------------------------------------------------------------

T = TypeVar("T")


class Registrations:
    """Registration dates, from the scenario's table and RDAP; see the module docstring."""

    def __init__(
        self,
        domains: Mapping[str, date] | None = None,
        *,
        mode: Mode = "hermetic",
        tempfail: Iterable[str] = (),
        rdap_url: str | None = None,
        rdap_bootstrap: str = IANA_BOOTSTRAP,
        bootstrap_ttl: float = 86400.0,
        timeout: float = 5.0,
        ttl: float = 86400.0,
        negative_ttl: float = 3600.0,
        cache_size: int = 10000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mode = mode
        self._domains = dict(domains or {})
        self._tempfail = frozenset(tempfail)
        self._rdap_url = rdap_url
        self._bootstrap_url = rdap_bootstrap
        self._bootstrap_ttl = bootstrap_ttl
        self._timeout = timeout
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._cache_size = cache_size
        self._monotonic = monotonic
        #: domain -> (monotonic expiry, date or None for "no such domain")
        self._cache: dict[str, tuple[float, date | None]] = {}
        #: (monotonic expiry, the bootstrap's services) once fetched.
        self._services: tuple[float, dict[str, str]] | None = None
        #: One query per domain (and one bootstrap fetch, keyed "") in flight, however many
        #: sessions ask at once.
        self._pending: dict[str, asyncio.Task[Any]] = {}

    @classmethod
    def from_config(cls, cfg: RegistrationsConfig) -> Registrations:
        return cls(
            cfg.domains,
            mode=cfg.mode,
            tempfail=cfg.tempfail,
            rdap_url=cfg.rdap_url,
            rdap_bootstrap=cfg.rdap_bootstrap,
            bootstrap_ttl=cfg.bootstrap_ttl,
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
        found: date | None = await self._shared(name, lambda: self._query(name))
        return found

    async def _shared(self, key: str, start: Callable[[], Awaitable[T]]) -> T:
        task = self._pending.get(key)
        if task is None:

            async def run() -> T:
                return await start()

            task = asyncio.create_task(run())
            self._pending[key] = task
            task.add_done_callback(functools.partial(self._settled, key))
        # A session that goes away must not cancel the query the others wait for.
        result: T = await asyncio.shield(task)
        return result

    def _settled(self, key: str, task: asyncio.Task[Any]) -> None:
        self._pending.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone away

    async def _query(self, name: str) -> date | None:
        if self._rdap_url is not None:
            url: str | None = self._rdap_url.replace("{domain}", urllib.parse.quote(name, safe=""))
        else:
            base = server_for(await self._bootstrap(name), name)
            # RFC 9082 §3.1.3: a domain is looked up at <base URL>domain/<name>.
            url = None if base is None else f"{base}domain/{urllib.parse.quote(name, safe='')}"
        found = None if url is None else await self._ask(name, url)
        ttl = self._ttl if found is not None else self._negative_ttl
        self._cache.pop(name, None)
        if len(self._cache) >= self._cache_size:
            # Oldest insertion first: a dict keeps insertion order.
            self._cache.pop(next(iter(self._cache)))
        self._cache[name] = (self._monotonic() + ttl, found)
        return found

    async def _ask(self, name: str, url: str) -> date | None:
        fetched = await _fetch(name, url, "RDAP server", self._timeout, MAX_ANSWER)
        if fetched.status == 404:  # RFC 7480 §5.3: the registry has no such object
            return None
        if not 200 <= fetched.status < 300:
            raise RegistrationTempFail(name, f"RDAP server answered HTTP {fetched.status}")
        try:
            return registration_date(fetched.body)
        except ValueError as exc:
            raise RegistrationTempFail(name, f"malformed RDAP answer: {exc}") from None

    async def _bootstrap(self, name: str) -> dict[str, str]:
        """The bootstrap's services, fetched again once `bootstrap_ttl` has passed."""
        kept = self._services
        if kept is not None and kept[0] > self._monotonic():
            return kept[1]
        services: dict[str, str] = await self._shared("", lambda: self._fetch_bootstrap(name))
        return services

    async def _fetch_bootstrap(self, name: str) -> dict[str, str]:
        what = "RDAP bootstrap"
        fetched = await _fetch(name, self._bootstrap_url, what, self._timeout, MAX_BOOTSTRAP)
        if not 200 <= fetched.status < 300:
            raise RegistrationTempFail(name, f"{what} answered HTTP {fetched.status}")
        try:
            services = bootstrap_services(fetched.body)
        except ValueError as exc:  # json.JSONDecodeError is one
            raise RegistrationTempFail(name, f"malformed {what} file: {exc}") from None
        self._services = (self._monotonic() + self._bootstrap_ttl, services)
        return services
