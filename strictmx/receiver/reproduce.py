"""`strictmx reproduce`: a scenario whose receiver refuses like the customer's receiver did.

From a bounce (anything `explain` reads) this builds a scenario in which a session like
the customer's is refused with the same reply (code, enhanced status code and text) at
the same stage, because the world makes the same policy fire: the client address has no
PTR, is listed on the named DNSBL with the same TXT, the Date is days off the receiver's
clock, the sender domain does not exist, ... The scenario carries an `expect:` case that
plays that session, and `swaks_commands` shows it with swaks.

The customer's identifiers stay where they appear: an IP address in the reply becomes the
simulated client address, a DNSBL zone becomes a listed zone, the HELO name in a Postfix
reply becomes the HELO, the sender in `<addr>: Sender address rejected` becomes the
envelope sender; the reply template given to the policy names them as placeholders, so
the scenario stays right if an identity is edited. `--client-ip`, `--helo`,
`--mail-from` and `--rcpt` override what the reply says.

Each policy has a recipe (`RECIPES`) that turns the matched outcome into the policy's
options, the world and the session. The result is validated with `scenario.from_dict`
before anyone writes it.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dns.reversename
import yaml

from . import scenario as scenarios
from .catalogue import Catalogue, Entry
from .explain import Explainer, Explanation, Extracted, default_explainer
from .policy import PolicyClass, load_registry
from .session import BASE_FIELDS
from .verdict import DELAYABLE_STAGES, MAX_LINE, Reply, Stage
from .world.dns import name_text, normalise_name

#: Who the customer's server is, when the reply does not say.
DEFAULT_CLIENT_IP = "203.0.113.25"
DEFAULT_HELO = "mail.example.net"
DEFAULT_SENDER = "alice@example.net"
DEFAULT_RCPT = "bob@example.org"
RECEIVER_HOSTNAME = "mx.strictmx.test"
#: The loopback address the expect case (and swaks) connects from; world.clients maps it.
LOOPBACK_SOURCE = "127.0.0.25"
#: The receiver's clock in reproductions that read the Date header.
CLOCK = datetime.fromisoformat("2024-06-14T12:00:00+00:00")
SERVER = "127.0.0.1:2525"


class ReproduceError(ValueError):
    """The input cannot be reproduced (not recognised, not a refusal, bad identity)."""


@dataclass(frozen=True)
class Identity:
    """The session the customer's server held: who it was and what it sent."""

    client_ip: str
    helo: str
    mail_from: str
    rcpt: str


@dataclass
class Request:
    """What a recipe works from."""

    entry: Entry
    #: Values the reply shows for its placeholders (ip, helo, sender, zone, ptr, ...).
    fields: dict[str, str]
    identity: Identity


@dataclass
class Build:
    """A recipe's answer: the policy's options, the world and the session."""

    options: dict[str, Any] = field(default_factory=dict)
    world: dict[str, Any] = field(default_factory=dict)
    receiver: dict[str, Any] = field(default_factory=dict)
    #: Changes to the expect case: helo, ehlo, mail_from, rcpt, message, script.
    case: dict[str, Any] = field(default_factory=dict)
    #: Cases to play first (errors that a later connection is refused for).
    before: list[dict[str, Any]] = field(default_factory=list)
    #: The command whose reply carries the refusal, when it is not the policy's stage.
    at: str | None = None
    #: Where the policy is listed, when it is not the stage (session_limits: `session`).
    listed_under: str | None = None
    #: Placeholder values this reproduction guarantees, beside ip, helo and sender.
    bound: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: For sessions Python's smtplib cannot send (bare LF, a UTF-8 HELO): the lines to
    #: send as bytes, without an expect case.
    raw: list[bytes] | None = None
    #: swaks cannot send this session (a command script); say how to play it instead.
    swaks_cannot: str | None = None


@dataclass
class Reproduction:
    scenario: dict[str, Any]
    entry: Entry
    explanation: Explanation
    identity: Identity
    #: The reply lines the receiver sends, as the case expects them.
    expected: list[str]
    at: str
    notes: list[str]
    raw: list[bytes] | None
    swaks_cannot: str | None

    def to_yaml(self, source: str = "") -> str:
        head = "# Written by strictmx reproduce"
        first = next((line.strip() for line in source.splitlines() if line.strip()), "")
        if first:
            head += f" from: {_clip(first, 80)}"
        lines = [
            head,
            f"# catalogue entry: {self.entry.id} ({self.entry.policy} {self.entry.outcome})",
        ]
        lines += [f"# note: {note}" for note in self.notes]
        body = yaml.safe_dump(self.scenario, sort_keys=False, allow_unicode=True, width=100)
        return "\n".join(lines) + "\n" + body

    def swaks_commands(self, scenario_file: str = "scenario.yaml") -> list[str]:
        """How to show the refusal by hand: serve the scenario, then swaks."""
        out = [f"strictmx serve --scenario {shlex.quote(scenario_file)} --listen {SERVER}"]
        if self.swaks_cannot:
            out.append(f"# {self.swaks_cannot}")
            return out
        case = self.scenario["expect"][-1] if self.scenario.get("expect") else {}
        ident = self.identity
        args = ["swaks", "--server", SERVER]
        helo = case.get("helo", ident.helo)
        common = ["--helo", helo, "--from", case.get("mail_from", ident.mail_from) or "<>"]
        common += ["--to", (case.get("rcpt") or [ident.rcpt])[0]]
        data = case.get("message")
        pipe = ""
        if self.raw is not None and self.entry.outcome == "BARE_LF":
            # Sent as given, terminator included: swaks's own fixup would add the CRs.
            raw = _bare_lf_message(ident).replace("%", "%%")
            raw = raw.replace("\r", "\\r").replace("\n", "\\n")
            pipe = f"printf {shlex.quote(raw)} | "
            common += ["--no-data-fixup", "--data", "-"]
        elif data is not None:
            common += ["--data", data.replace("\r\n", "\n").replace("\n", "\\n")]
        local = [*args, "--local-interface", LOOPBACK_SOURCE, *common]
        out.append(pipe + shlex.join(local))
        # No XCLIENT NAME: the receiver looks the name up in the scenario's DNS, as it
        # does for the loopback source.
        xclient = [*args, "--xclient-addr", ident.client_ip]
        out.append("# or from 127.0.0.1, with the client's address given by XCLIENT:")
        out.append(pipe + shlex.join([*xclient, *common]))
        return out


# -- reading the customer's identifiers ------------------------------------------------

_HOSTLIKE = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_FIELD_PATTERNS = {
    "ip": r"[0-9A-Fa-f:.]+",
    "mx_ip": r"[0-9A-Fa-f:.]+",
    "sender": r"[^\s<>]*",
    "rcpt": r"[^\s<>]*",
    "verb": r"[HE][EH]LO",
    "tag": r"\S+",
    "helo": r"[^\s<>]+",
    **{
        name: _HOSTLIKE
        for name in (
            "ptr",
            "zone",
            "domain",
            "hostname",
            "myhostname",
            "mx",
            "spf_domain",
            "previous",
            "target",
            "client_name",
        )
    },
    **{name: r"\d+" for name in ("count", "limit", "length", "line", "age", "days", "minutes")},
}
_SENDER_FAMILIES = frozenset(
    {"sender_domain", "sender_blocklist", "sender_verify", "domain_age", "spf"}
)
#: Block lists named in replies by their operator rather than their zone.
_KNOWN_ZONES = (
    ("spamcop", "bl.spamcop.net"),
    ("spamhaus", "zen.spamhaus.org"),
    ("barracuda", "b.barracudacentral.org"),
    ("sorbs", "dnsbl.sorbs.net"),
)


def read_fields(entry: Entry, reply: Reply) -> dict[str, str]:
    """Values the customer's reply shows for the entry's placeholders."""
    text = _flat(" ".join(reply.lines))
    fields = _by_template(" ".join(entry.template.lines), text)
    if "txt_suffix" in fields and "txt" not in fields:
        fields["txt"] = fields["txt_suffix"].removeprefix(";").strip()
    fields.pop("txt_suffix", None)
    if "ip" in fields and not _is_ip(fields["ip"]):
        del fields["ip"]  # a documented placeholder ("%s"), not an address
    if "ip" not in fields:
        found = _first_ip(text)
        if found:
            fields["ip"] = found
    if "helo" not in fields:
        helo = re.search(r"<([^<>\s]+)>: Helo command rejected", text)
        if helo:
            fields["helo"] = helo.group(1)
    if "sender" not in fields and entry.family in _SENDER_FAMILIES | {"dynamic_client"}:
        sender = re.search(r"<([^<>\s@]+@[^<>\s]+)>", text) or _BARE_SENDER.search(text)
        if sender and not sender.group(1).lower().startswith("postmaster@"):
            fields["sender"] = sender.group(1)
    if "zone" not in fields and entry.policy in ("dnsbl", "dynamic_client"):
        zone = re.search(
            r"\b(?:blocked using|black ?list at|listed (?:on|in|at|by)|using)\s+"
            r"([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\.[A-Za-z]{2,})",
            text,
            re.I,
        )
        if zone:
            fields["zone"] = zone.group(1).lower()
        else:
            known = next((z for word, z in _KNOWN_ZONES if word in text.lower()), None)
            if known:
                fields["zone"] = known
    if "ptr" not in fields:
        ptr = re.search(r"\bclient ([A-Za-z0-9.-]+\.[A-Za-z]{2,}) \[", text) or re.search(
            r"Hostname '([^']+)'", text
        )
        if ptr:
            fields["ptr"] = ptr.group(1)
    return {k: v for k, v in fields.items() if v}


#: An address outside angle brackets, from the first word character of a run of address
#: characters (where `\b` first holds in it). Tried from the start of the run only: from
#: inside it, the run would be read to its `@` again for each of its characters.
_BARE_SENDER = re.compile(r"(?<![\w.+=-])[.+=-]*+(\w[\w.+=-]*+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _by_template(template: str, text: str) -> dict[str, str]:
    parts = re.split(r"\{(\w+)\}", _flat(template))
    if len(parts) == 1:
        return {}
    pattern = ""
    seen: set[str] = set()
    for n, part in enumerate(parts):
        if n % 2 == 0:
            pattern += r"\s*".join(re.escape(piece) for piece in part.split(" "))
        elif part in seen:
            pattern += f"(?P={part})"
        else:
            seen.add(part)
            pattern += f"(?P<{part}>{_FIELD_PATTERNS.get(part, '.*?')})"
    try:
        match = re.fullmatch(pattern, text[:2000], re.I | re.S)
    except re.error:
        return {}
    return {k: v.strip() for k, v in match.groupdict().items() if v} if match else {}


def _first_ip(text: str) -> str | None:
    for candidate in re.findall(r"[0-9A-Fa-f:.]{3,45}", text):
        candidate = candidate.strip(".:")
        if ":" not in candidate and candidate.count(".") != 3:
            continue  # neither IPv6 nor a dotted quad: skip the parse, a reply has many
        try:
            address = ipaddress.ip_address(candidate.removeprefix("IPv6:"))
        except ValueError:
            continue
        if not address.is_loopback:  # 127.0.0.x in a reply is a DNSBL answer, not a client
            return str(address)
    return None


def _ip(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]").removeprefix("IPv6:")))
    except ValueError:
        raise ReproduceError(f"{what}: not an IP address: {text!r}") from None


def _address(text: str, what: str) -> str:
    value = text.strip().strip("<>")
    if value and ("@" not in value or " " in value):
        raise ReproduceError(f"{what}: not an address (local@domain): {text!r}")
    return value


# -- world helpers ----------------------------------------------------------------------


def _reverse(ip: str) -> str:
    return name_text(dns.reversename.from_address(ip))


def _dnsbl_query(ip: str, zone: str) -> str:
    """`1.2.0.192.zone` or 32 reversed nibbles, as DNSBL clients ask (RFC 5782 §2.1, §2.4)."""
    reverse = _reverse(ip)
    suffix = ".in-addr.arpa" if ipaddress.ip_address(ip).version == 4 else ".ip6.arpa"
    return reverse.removesuffix(suffix) + "." + zone


def _literal(ip: str) -> str:
    return f"[{ip}]" if ipaddress.ip_address(ip).version == 4 else f"[IPv6:{ip}]"


def _other_ip(ip: str) -> str:
    """An address of the same family that is not `ip` (where a name resolves instead)."""
    if ipaddress.ip_address(ip).version == 6:
        return "2001:db8:ffff::99" if ip != "2001:db8:ffff::99" else "2001:db8:ffff::98"
    return "192.0.2.99" if ip != "192.0.2.99" else "192.0.2.98"


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower() or "example.net"


def _is_name(text: str) -> bool:
    try:
        normalise_name(text)
    except ValueError:
        return False
    return "." in text.strip(".") and not _is_ip(text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _dns(
    records: Mapping[str, Any] | None = None,
    ptr: Mapping[str, str] | None = None,
    servfail: list[str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": "hermetic"}
    if records:
        out["records"] = dict(records)
    if ptr:
        out["ptr"] = dict(ptr)
    if servfail:
        out["servfail"] = list(servfail)
    return {"dns": out}


def _message(identity: Identity, headers: list[str] | None = None, body: str = "") -> str:
    """A compliant message, or one with `headers` instead of the usual ones."""
    if headers is None:
        headers = _header_lines(identity)
    return "\n".join(headers) + "\n\n" + (body or "A message to reproduce a refusal.") + "\n"


def _header_lines(identity: Identity, **replace: str | None) -> list[str]:
    """A compliant header dated just before `CLOCK`; `Message_ID=None` drops a field."""
    fields: dict[str, str | None] = {
        "From": f"<{identity.mail_from or 'mailer-daemon@example.net'}>",
        "To": f"<{identity.rcpt}>",
        "Subject": "Reproduction",
        "Date": "Fri, 14 Jun 2024 11:58:00 +0000",
        "Message-ID": "<20240614115800.42@example.net>",
    }
    for name, value in replace.items():
        fields[name.replace("_", "-")] = value
    return [f"{k}: {v}" for k, v in fields.items() if v is not None]


def _bare_lf_message(identity: Identity) -> str:
    """DATA with one line ending in a bare LF, then the end-of-data line."""
    head = "\r\n".join(_header_lines(identity))
    return head + "\r\n\r\nA line that ends in a bare LF\nand one in CRLF\r\n.\r\n"


# -- recipes ----------------------------------------------------------------------------


def _helo_syntax(req: Request) -> Build:
    from strictmx.policies.helo_syntax import HeloSyntaxOptions, judge

    ip = req.identity.client_ip
    outcome = req.entry.outcome
    given = req.fields.get("helo", "")
    options: dict[str, Any] = {}
    fallback = {
        "HELO_INVALID": "mail_relay.example.net",
        "HELO_NOT_FQDN": "mailserver",
        "HELO_BAD_LITERAL": "[192.0.2.300]",
        "HELO_LITERAL_MISMATCH": _literal(_other_ip(ip)),
        "HELO_LITERAL_REFUSED": _literal(ip),
        "HELO_BARE_IP": ip,
    }
    if outcome == "HELO_MISSING":
        verb = req.fields.get("verb", "EHLO").upper()
        verb = verb if verb in ("HELO", "EHLO") else "EHLO"
        return Build(
            case={"script": [verb]},
            bound={"verb": verb},
            at="helo",
            swaks_cannot="swaks always sends a HELO name; the expect case sends a bare " + verb,
        )
    if outcome == "HELO_UTF8_WITHOUT_SMTPUTF8":
        helo = "mäil.example.net"
        ident = req.identity
        return Build(
            case={"helo": helo},
            raw=[
                f"EHLO {helo}\r\n".encode(),
                f"MAIL FROM:<{ident.mail_from}>\r\n".encode(),
            ],
            notes=["Python's smtplib cannot send a UTF-8 HELO, so there is no expect case"],
            swaks_cannot="swaks sends the HELO as given; try: swaks --helo mäil.example.net ...",
        )
    if outcome == "HELO_LITERAL_REFUSED":
        options["address_literal"] = "reject"
    elif outcome == "HELO_BARE_IP":
        options["bare_ip"] = "reject"
    elif outcome == "HELO_LITERAL_MISMATCH":
        options["address_literal"] = "match"
    checked = HeloSyntaxOptions.model_validate(options)
    helo = fallback[outcome]
    if given:
        finding = judge(given, checked, ip)
        if finding is not None and finding.outcome == outcome:
            helo = given
    return Build(options=options, case={"helo": helo})


def _helo_dns(req: Request) -> Build:
    ip = req.identity.client_ip
    outcome = req.entry.outcome
    given = req.fields.get("helo", "")
    name = given if _is_name(given) else DEFAULT_HELO
    other = _other_ip(ip)
    family = "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"
    if outcome == "HELO_IS_ME":
        return Build(
            options={"resolve": False, "reject_my_name": True},
            case={"helo": RECEIVER_HOSTNAME},
        )
    if outcome == "HELO_LITERAL_MISMATCH":
        literal = given if given.startswith("[") and ip not in given else _literal(other)
        return Build(options={"resolve": False, "literal_match": True}, case={"helo": literal})
    if outcome == "HELO_LITERAL_NO_PTR":
        return Build(
            options={"resolve": False, "literal_ptr": True},
            case={"helo": _literal(ip)},
            world=_dns(),
        )
    if outcome == "HELO_IS_CNAME":
        target = "host." + name
        return Build(
            options={"resolve": False, "require_a_record": True},
            case={"helo": name},
            world=_dns({name: {"CNAME": target + "."}, target: {family: ip}}),
            bound={"target": target},
        )
    if outcome == "HELO_NOT_FOUND":
        return Build(options={"resolve": True}, case={"helo": name}, world=_dns())
    if outcome == "HELO_NOT_CONFIRMED":
        return Build(
            options={"resolve": True, "forward_confirm": True},
            case={"helo": name},
            world=_dns({name: {family: other}}),
        )
    if outcome == "HELO_PTR_MISMATCH":
        ptr = req.fields.get("ptr", "")
        ptr = ptr if _is_name(ptr) and ptr != name else "host-25.example.org"
        return Build(
            options={"resolve": False, "ptr_match": "exact"},
            case={"helo": name},
            world=_dns({name: {family: ip}, ptr: {family: ip}}, ptr={ip: ptr}),
            bound={"ptr": ptr},
        )
    if outcome == "HELO_NOT_VERIFIED":
        return Build(
            options={"resolve": False, "verify": "any", "forward_confirm": True},
            case={"helo": name},
            world=_dns({name: {family: other}}),
        )
    # HELO_DNS_TEMPFAIL
    return Build(options={"resolve": True}, case={"helo": name}, world=_dns(servfail=[name]))


def _reverse_dns(req: Request) -> Build:
    ip = req.identity.client_ip
    outcome = req.entry.outcome
    ptr = req.fields.get("ptr", "")
    ptr = ptr if _is_name(ptr) else "host-25.example.net"
    family = "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"
    if outcome == "NO_PTR":
        return Build(options={"require": "ptr"}, world=_dns())
    if outcome == "FCRDNS_FAILED":
        return Build(
            options={"require": "fcrdns"},
            world=_dns({ptr: {family: _other_ip(ip)}}, ptr={ip: ptr}),
            bound={"ptr": ptr},
        )
    if outcome == "PTR_TEMPFAIL":
        return Build(options={"require": "ptr"}, world=_dns(servfail=[_reverse(ip)]))
    # FORWARD_TEMPFAIL
    return Build(
        options={"require": "fcrdns"},
        world=_dns(ptr={ip: ptr}, servfail=[ptr]),
        bound={"ptr": ptr},
    )


def _dynamic_client(req: Request) -> Build:
    ip = req.identity.client_ip
    outcome = req.entry.outcome
    version = ipaddress.ip_address(ip).version
    generic = (ip.replace(".", "-") if version == 4 else ip.replace(":", "-")) + ".example.net"
    dynamic = "dyn-pool25.isp.example.net"
    ptr = req.fields.get("ptr", "")
    if outcome in ("GENERIC_PTR", "DYNAMIC_PTR"):
        wanted = "address" if outcome == "GENERIC_PTR" else "token"
        if not (_is_name(ptr) and _dynamic_kind(ptr, ip) == wanted):
            ptr = generic if outcome == "GENERIC_PTR" else dynamic
        return Build(world=_dns(ptr={ip: ptr}), bound={"ptr": ptr})
    if outcome == "POLICY_BLOCK_LISTED":
        zone = req.fields.get("zone", "")
        zone = zone if _is_name(zone) else "zen.spamhaus.org"
        txt = req.fields.get("txt", "")
        record: dict[str, Any] = {"A": "127.0.0.10"}
        if txt:
            record["TXT"] = txt
        return Build(
            options={"check_ptr": False, "pbl_zones": [zone]},
            world=_dns({_dnsbl_query(ip, zone): record}),
            bound={"zone": zone, "txt": txt},
        )
    if outcome == "DYNAMIC_HELO":
        helo = req.fields.get("helo", "")
        if not (_is_name(helo) and _dynamic_kind(helo, ip) is not None):
            helo = dynamic
        return Build(options={"check_ptr": False, "check_helo": True}, case={"helo": helo})
    if outcome == "DYNAMIC_UNKNOWN_SENDER_DOMAIN":
        return Build(
            options={"require_unknown_sender_domain": True},
            world=_dns(ptr={ip: dynamic}),
            bound={"domain": _domain(req.identity.mail_from), "ptr": dynamic},
        )
    # DNS_TEMPFAIL: the PTR lookup fails and nothing else marks the client
    return Build(world=_dns(servfail=[_reverse(ip)]))


def _dynamic_kind(name: str, ip: str) -> str | None:
    from strictmx.policies.dynamic_client import DYNAMIC_TOKENS, STATIC_TOKENS, NameTests

    tests = NameTests(True, frozenset(DYNAMIC_TOKENS), frozenset(STATIC_TOKENS), ())
    found = tests.judge(name, ipaddress.ip_address(ip))
    return found.kind if found else None


def _dnsbl(req: Request) -> Build:
    ident = req.identity
    ip = ident.client_ip
    outcome = req.entry.outcome
    zone = req.fields.get("zone", "")
    zone = zone if _is_name(zone) else "dnsbl.example.net"
    txt = req.fields.get("txt", "")
    listed: dict[str, Any] = {"A": "127.0.0.2"}
    if txt:
        listed["TXT"] = txt
    bound = {"zone": zone, "txt": txt}
    if outcome == "RHSBL_HELO_LISTED":
        helo = ident.helo if _is_name(ident.helo) else DEFAULT_HELO
        return Build(
            options={"rhsbl": [{"zone": zone, "check": "helo"}]},
            case={"helo": helo},
            world=_dns({f"{helo}.{zone}": listed}),
            bound={**bound, "domain": helo},
        )
    if outcome == "RHSBL_SENDER_LISTED":
        domain = req.fields.get("domain") or _domain(ident.mail_from)
        sender = ident.mail_from if _domain(ident.mail_from) == domain else f"alice@{domain}"
        return Build(
            options={"rhsbl": [{"zone": zone, "check": "sender"}]},
            case={"mail_from": sender},
            world=_dns({f"{domain}.{zone}": listed}),
            bound={**bound, "domain": domain},
        )
    if outcome == "DNSBL_TEMPFAIL":
        return Build(
            options={"zones": [{"zone": zone}], "defer_on_error": True},
            world=_dns(servfail=[_dnsbl_query(ip, zone)]),
        )
    return Build(
        options={"zones": [{"zone": zone}]},
        world=_dns({_dnsbl_query(ip, zone): listed}),
        bound=bound,
    )


def _sender_domain(req: Request) -> Build:
    ident = req.identity
    sender = ident.mail_from
    domain = _domain(sender)
    outcome = req.entry.outcome
    if outcome == "SENDER_INVALID":
        from strictmx.policies.sender_domain import SenderDomainOptions, parse

        local = sender.rpartition("@")[0] or "alice"
        for candidate in (sender, f"{local}..x@{domain}"):
            found = parse(candidate, SenderDomainOptions(), smtputf8=False).finding
            if found is not None and found.outcome == outcome:
                break
        return Build(case={"mail_from": candidate})
    if outcome == "SENDER_NOT_FQDN":
        if "." in domain:
            sender = sender.rpartition("@")[0] + "@localhost"
        return Build(case={"mail_from": sender})
    if outcome == "SENDER_DOMAIN_NULL_MX":
        return Build(world=_dns({domain: {"MX": "0 ."}}), bound={"domain": domain})
    if outcome == "SENDER_DOMAIN_TEMPFAIL":
        return Build(world=_dns(servfail=[domain]), bound={"domain": domain})
    return Build(world=_dns(), bound={"domain": domain})  # SENDER_DOMAIN_NOT_FOUND


def _sender_blocklist(req: Request) -> Build:
    return Build(options={"addresses": [req.identity.mail_from or "<>"]})


def _sender_verify(req: Request) -> Build:
    sender = req.identity.mail_from or DEFAULT_SENDER
    local, _, domain = sender.rpartition("@")
    mx = f"mx.{domain}"
    records = {domain: {"MX": f"10 {mx}."}, mx: {"A": "192.0.2.225"}}
    outcome = req.entry.outcome
    options: dict[str, Any] = {"style": "exim", "command_timeout": 5}
    mailbox: dict[str, Any] = {"exists": ["postmaster"]}
    if outcome == "SENDER_UNROUTABLE":
        return Build(
            options=options, case={"mail_from": sender}, world=_dns(), bound={"domain": domain}
        )
    if outcome == "SENDER_CALLOUT_REFUSED":
        mailbox = {"exists": ["postmaster", local], "null_sender": "reject"}
    elif outcome == "SENDER_VERIFY_TEMPFAIL":
        mailbox = {"tempfail_all": True}
    elif outcome == "SENDER_ACCEPT_ALL":
        options.update(random=True, accept_all="reject")
        mailbox = {"accept_all": True}
    elif outcome == "POSTMASTER_MISSING":
        options["postmaster"] = True
        mailbox = {"exists": [local]}
    if outcome == "SENDER_UNVERIFIED" and local.lower() == "postmaster":
        mailbox = {"exists": ["abuse"]}
    world = _dns(records)
    world["mailboxes"] = {domain: mailbox}
    return Build(
        options=options,
        case={"mail_from": sender},
        world=world,
        bound={"domain": domain, "mx": mx, "mx_ip": "192.0.2.225"},
    )


def _domain_age(req: Request) -> Build:
    from .world.registrations import registered_domain

    domain = registered_domain(_domain(req.identity.mail_from)) or "example.net"
    registrations: dict[str, Any] = {"mode": "hermetic"}
    options: dict[str, Any] = {"min_age_days": 30}
    outcome = req.entry.outcome
    if outcome == "DOMAIN_TOO_NEW":
        registrations["domains"] = {domain: (CLOCK - timedelta(days=5)).date().isoformat()}
    elif outcome == "DOMAIN_AGE_UNKNOWN":
        options["unknown"] = "reject"
    else:
        registrations["tempfail"] = [domain]
    return Build(
        options=options,
        world={"clock": {"fixed": CLOCK.isoformat()}, "registrations": registrations},
        bound={"domain": domain},
    )


def _spf(req: Request) -> Build:
    domain = _domain(req.identity.mail_from)
    outcome = req.entry.outcome
    record = {
        "SPF_FAIL": "v=spf1 -all",
        "SPF_SOFTFAIL": "v=spf1 ~all",
        "SPF_NEUTRAL": "v=spf1 ?all",
        "SPF_PERMERROR": "v=spf1 ip4:192.0.2.1 inlcude:_spf.example.net -all",
    }.get(outcome)
    options: dict[str, Any] = {}
    if outcome in ("SPF_SOFTFAIL", "SPF_NEUTRAL", "SPF_NONE"):
        options[outcome.removeprefix("SPF_").lower()] = "reject"
    if outcome == "SPF_TEMPERROR":
        world = _dns(servfail=[domain])
    else:
        world = _dns({domain: {"TXT": record}} if record else None)
    return Build(options=options, world=world, bound={"spf_domain": domain})


def _headers_recipe(req: Request) -> Build:
    ident = req.identity
    outcome = req.entry.outcome
    clock = {"clock": {"fixed": CLOCK.isoformat()}}
    field_name = req.fields.get("field", "Subject")
    if field_name.lower() not in ("subject", "from", "to", "message-id", "date", "cc"):
        field_name = "Subject"
    cases: dict[str, list[str]] = {
        # Over a 200-octet limit: a line past 1000 octets is refused by the SMTP layer itself.
        "LINE_TOO_LONG": _header_lines(ident, Subject="x" * 300),
        "HEADER_8BIT": _header_lines(ident, Subject="Grüße aus Köln"),
        "FROM_MISSING": _header_lines(ident, From=None),
        "FROM_INVALID": _header_lines(ident, From="Alice Example"),
        "FROM_MULTIPLE": _header_lines(ident, From="<alice@example.net>, <carol@example.net>"),
        "DATE_MISSING": _header_lines(ident, Date=None),
        "DATE_INVALID": _header_lines(ident, Date="2024-06-14T11:58:00Z"),
        "DATE_TOO_OLD": _header_lines(ident, Date="Tue, 2 Jan 2024 09:00:00 +0000"),
        "DATE_IN_FUTURE": _header_lines(ident, Date="Thu, 20 Jun 2024 12:00:00 +0000"),
        "MESSAGE_ID_MISSING": _header_lines(ident, Message_ID=None),
        "MESSAGE_ID_INVALID": _header_lines(ident, Message_ID="20240614115800.42@example.net"),
    }
    options: dict[str, Any] = {}
    if outcome == "FIELD_REPEATED":
        headers = _header_lines(ident)
        headers.append(next(h for h in headers if h.lower().startswith(field_name.lower() + ":")))
        return Build(
            case={"message": _message(ident, headers)}, world=clock, bound={"field": field_name}
        )
    if outcome == "FROM_MULTIPLE":
        options["multiple_from"] = "refuse"
    elif outcome == "LINE_TOO_LONG":
        options["max_line_length"] = 200
    if outcome == "BARE_LF":
        return Build(
            world=clock,
            raw=[
                f"EHLO {ident.helo}\r\n".encode(),
                f"MAIL FROM:<{ident.mail_from}>\r\n".encode(),
                f"RCPT TO:<{ident.rcpt}>\r\n".encode(),
                b"DATA\r\n",
                _bare_lf_message(ident).encode(),
            ],
            notes=["Python's smtplib always sends CRLF, so there is no expect case"],
        )
    return Build(options=options, case={"message": _message(ident, cases[outcome])}, world=clock)


def _session_limits(req: Request) -> Build:
    ident = req.identity
    outcome = req.entry.outcome
    helo = f"EHLO {ident.helo}"
    cannot = "swaks cannot send this command sequence; play the scenario's expect case"
    if outcome == "TOO_MANY_RSETS":
        return Build(
            options={"max_rsets": 2},
            case={"script": [helo, "RSET", "RSET", "RSET"]},
            at="rset",
            listed_under="session",
            swaks_cannot=cannot,
        )
    if outcome == "TOO_MANY_BAD_RCPTS":
        domain = _domain(ident.rcpt)
        return Build(
            options={"max_bad_rcpts": 2},
            receiver={"local_recipients": [ident.rcpt]},
            case={
                "script": [
                    helo,
                    f"MAIL FROM:<{ident.mail_from}>",
                    f"RCPT TO:<nobody1@{domain}>",
                    f"RCPT TO:<nobody2@{domain}>",
                    f"RCPT TO:<{ident.rcpt}>",
                ]
            },
            at="rcpt",
            listed_under="session",
            swaks_cannot=cannot,
        )
    if outcome == "HELO_CHANGED":
        other = "other." + (ident.helo if _is_name(ident.helo) else DEFAULT_HELO)
        previous = req.fields.get("previous")
        first, second = (previous, ident.helo) if previous else (ident.helo, other)
        return Build(
            options={"forbid_helo_change": True},
            case={"script": [f"EHLO {first}", f"EHLO {second}"]},
            at="helo",
            listed_under="session",
            bound={"previous": first, "helo": second},
            swaks_cannot=cannot,
        )
    if outcome == "TOO_MANY_ERRORS":
        # Junk commands over the junk limit count as errors, and the command that reaches
        # the hard limit gets the 421 itself (Postfix's smtpd_junk_command_limit).
        return Build(
            options={"junk_command_limit": 0, "hard_error_limit": 1, "soft_error_limit": None},
            case={"script": [helo, "NOOP", "NOOP"]},
            at="noop",
            listed_under="session",
            swaks_cannot=cannot,
        )
    if outcome == "TOO_MANY_UNKNOWN_COMMANDS":
        return Build(
            options={"max_unknown_commands": 1},
            case={"script": [helo, "FOO", "BAR"]},
            at="unknown",
            listed_under="session",
            swaks_cannot=cannot,
        )
    # TOO_MANY_ERRORS_FROM_IP: one session's errors, then the next connection
    return Build(
        options={"max_errors_per_client": 2},
        before=[
            {
                "name": "two unknown commands count as errors of this address",
                "client": LOOPBACK_SOURCE,
                "script": [helo, "FOO", "BAR"],
                "result": {"refused": {"at": "unknown", "code": 500}},
            }
        ],
        at="connect",
        listed_under="session",
    )


def _local_recipients(req: Request) -> Build:
    # Only postmaster@ exists (and is always accepted anyway): the customer's recipient is
    # unknown, unless it is postmaster@ itself.
    return Build(receiver={"local_recipients": ["postmaster@*"]}, at="rcpt")


def _smtpd(req: Request) -> Build:
    # TOO_MANY_RECIPIENTS: one recipient allowed, the customer's is the second.
    ident = req.identity
    return Build(
        receiver={"max_recipients": 1},
        case={
            "script": [
                f"EHLO {ident.helo}",
                f"MAIL FROM:<{ident.mail_from}>",
                f"RCPT TO:<first@{_domain(ident.rcpt)}>",
                f"RCPT TO:<{ident.rcpt}>",
            ]
        },
        at="rcpt",
        swaks_cannot="swaks sends one recipient list; play the scenario's expect case",
    )


def _content_filter(req: Request) -> Build:
    ident = req.identity
    if req.entry.outcome == "MESSAGE_TOO_BIG":
        body = "\n".join("A line of a message larger than the receiver takes." for _ in range(60))
        return Build(
            options={"rules": [{"name": "size", "max_size": 2000}]},
            case={"message": _message(ident, body=body)},
        )
    return Build(
        options={"rules": [{"name": "policy", "header": "Subject", "regex": r"\byou have won\b"}]},
        case={"message": _message(ident, _header_lines(ident, Subject="You have won a prize"))},
    )


RECIPES: dict[str, Callable[[Request], Build]] = {
    "helo_syntax": _helo_syntax,
    "helo_dns": _helo_dns,
    "reverse_dns": _reverse_dns,
    "dynamic_client": _dynamic_client,
    "dnsbl": _dnsbl,
    "sender_domain": _sender_domain,
    "sender_blocklist": _sender_blocklist,
    "sender_verify": _sender_verify,
    "domain_age": _domain_age,
    "spf": _spf,
    "headers": _headers_recipe,
    "session_limits": _session_limits,
    "content_filter": _content_filter,
    "local_recipients": _local_recipients,
    "smtpd": _smtpd,
}

#: Outcomes a policy can decide at stages other than its usual one, where a receiver does
#: (reverse DNS at MAIL or after the data, as Stalwart and Gmail; a callout at RCPT).
_MOVABLE: dict[tuple[str, str], frozenset[Stage]] = {
    **{
        ("reverse_dns", o): frozenset(
            {Stage.CONNECT, Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.EOD}
        )
        for o in ("NO_PTR", "FCRDNS_FAILED", "PTR_TEMPFAIL", "FORWARD_TEMPFAIL")
    },
    **{
        ("dnsbl", o): frozenset({Stage.CONNECT, Stage.HELO, Stage.MAIL})
        for o in ("DNSBL_LISTED", "DNSBL_TEMPFAIL")
    },
    **{
        ("dynamic_client", o): frozenset({Stage.CONNECT, Stage.MAIL})
        for o in ("GENERIC_PTR", "DYNAMIC_PTR", "POLICY_BLOCK_LISTED", "DNS_TEMPFAIL")
    },
    **{
        ("sender_verify", o): frozenset({Stage.MAIL, Stage.RCPT})
        for o in (
            "SENDER_UNVERIFIED",
            "SENDER_UNROUTABLE",
            "SENDER_CALLOUT_REFUSED",
            "SENDER_VERIFY_TEMPFAIL",
            "SENDER_ACCEPT_ALL",
            "POSTMASTER_MISSING",
        )
    },
}
_ORDER = [Stage.CONNECT, Stage.HELO, Stage.MAIL, Stage.RCPT, Stage.DATA, Stage.EOD]


def _placement(
    entry: Entry, natural: Stage, observed: Stage | None
) -> tuple[Stage, bool, list[str]]:
    """(stage to list the policy under, delay_reject, notes) for the stage to refuse at."""
    want = observed or entry.stage
    can = _MOVABLE.get((entry.policy, entry.outcome), frozenset({natural}))
    if want in can:
        return want, False, []
    if want == Stage.RCPT and natural in DELAYABLE_STAGES:
        return natural, True, []
    notes = []
    if want != natural:
        notes.append(
            f"the reply came at {want.value}; {entry.policy} decides {entry.outcome} at "
            f"{natural.value}, so the reproduction refuses there"
        )
    return natural, False, notes


# -- putting it together ----------------------------------------------------------------


def reproduce(
    text: str,
    *,
    entry_id: str | None = None,
    client_ip: str | None = None,
    helo: str | None = None,
    mail_from: str | None = None,
    rcpt: str | None = None,
    explainer: Explainer | None = None,
    registry: Mapping[str, PolicyClass] | None = None,
) -> Reproduction:
    """The scenario reproducing the refusal in `text` (see the module docstring)."""
    explainer = explainer or default_explainer()
    catalogue: Catalogue = explainer.catalogue
    explanation = explainer.explain(text)
    found = explanation.input
    if entry_id is not None:
        try:
            entry = catalogue.get(entry_id)
        except KeyError as exc:
            raise ReproduceError(str(exc.args[0])) from None
    elif explanation.best is not None:
        entry = explanation.best.entry
    else:
        nearest = ", ".join(f"{f} ({s:.2f})" for f, s in explanation.families[:3])
        raise ReproduceError(
            "not recognised: no catalogue reply is close enough to reproduce it"
            + (f"; nearest families: {nearest}" if nearest else "")
            + "; pin one with --entry ID (see `strictmx explain`)"
        )
    if helo is not None and not helo.strip():
        raise ReproduceError("--helo: give a host name or address literal")
    reply = _customer_reply(found)
    fields = read_fields(entry, reply)
    identity = Identity(
        client_ip=_ip(client_ip, "--client-ip")
        if client_ip
        else _ip(fields.get("ip", DEFAULT_CLIENT_IP), "the reply's address"),
        helo=helo or fields.get("helo") or DEFAULT_HELO,
        mail_from=_address(mail_from, "--mail-from")
        if mail_from is not None
        else (fields.get("sender") or found.sender or DEFAULT_SENDER),
        rcpt=_address(rcpt, "--rcpt") if rcpt else (found.recipient or DEFAULT_RCPT),
    )
    registry = registry if registry is not None else load_registry()
    cls = registry.get(entry.policy)
    if cls is None:
        raise ReproduceError(f"policy {entry.policy!r} of entry {entry.id} is not installed")
    build = RECIPES[entry.policy](Request(entry, fields, identity))
    data, expected, at, notes = _scenario(entry, cls, found, reply, identity, build, catalogue)
    try:
        scenarios.from_dict(data, source="<reproduction>", registry=registry)
    except scenarios.ScenarioError as exc:
        raise ReproduceError(f"the reproduction does not validate: {exc}") from None
    return Reproduction(
        scenario=data,
        entry=entry,
        explanation=explanation,
        identity=identity,
        expected=expected,
        at=at,
        notes=notes,
        raw=build.raw,
        swaks_cannot=build.swaks_cannot,
    )


def _customer_reply(found: Extracted) -> Reply:
    reply = found.reply
    if reply is None:
        if found.code is None:
            raise ReproduceError("the input holds no reply code (4xx or 5xx) to reproduce")
        reply = Reply(found.code, found.dsn, (found.text,))
    if reply.code < 400:
        raise ReproduceError(f"a {reply.code} reply is not a refusal")
    return _wrapped(reply)


def _wrapped(reply: Reply) -> Reply:
    """Lines longer than one wire line, split at spaces as the receiver would have sent."""
    head = len(f"{reply.code}-{reply.status or ''} ")
    width = MAX_LINE - head
    lines: list[str] = []
    for line in reply.lines:
        start = 0  # cut by position: slicing off the rest each time copies it each time
        while len(line) - start > width:
            cut = line.rfind(" ", start, start + width)
            cut = cut if cut > start else start + width
            lines.append(line[start:cut])
            start = cut
            while line.startswith(" ", start):
                start += 1
        lines.append(line[start:])
    return Reply(reply.code, reply.status, tuple(lines))


def _scenario(
    entry: Entry,
    cls: PolicyClass,
    found: Extracted,
    reply: Reply,
    identity: Identity,
    build: Build,
    catalogue: Catalogue,
) -> tuple[dict[str, Any], list[str], str, list[str]]:
    natural = catalogue.outcomes[(entry.policy, entry.outcome)].stage
    notes = list(build.notes)
    if build.listed_under == "session":
        listed, delay = "session", False
        at = build.at or natural.value
    else:
        stage, delay, more = _placement(entry, natural, found.stage)
        notes += more
        listed = stage.value
        at = build.at or ("rcpt" if delay else stage.value)
    case: dict[str, Any] = {
        "name": f"reproduces {entry.id}: {_clip(' '.join(reply.lines), 60)}",
        "client": LOOPBACK_SOURCE,
        "helo": identity.helo,
        "mail_from": identity.mail_from,
        "rcpt": [identity.rcpt],
    }
    if entry.kind == "seed":
        case = {
            "name": case["name"],
            "seed": entry.id,
            **{k: v for k, v in case.items() if k != "name"},
        }
    case.update(build.case)
    bound = _bound(identity, case, at, build, listed)
    outcome = next(o for o in cls.outcomes if o.id == entry.outcome)
    allowed = set(BASE_FIELDS) | set(outcome.fields)
    template = _template(reply, bound, allowed)
    enhanced = reply.status is not None
    expected = reply.wire_lines(enhanced=enhanced)
    refused: dict[str, Any] = {"policy": entry.policy, "outcome": entry.outcome, "at": at}
    refused.update(code=reply.code, reply=expected if len(expected) > 1 else expected[0])
    case["result"] = {"refused": refused}
    policy_entry: dict[str, Any] = {"policy": entry.policy, **build.options}
    policy_entry["replies"] = {entry.outcome: template if len(template) > 1 else template[0]}
    world = dict(build.world)
    world.setdefault("dns", {"mode": "hermetic"})
    world["clients"] = {LOOPBACK_SOURCE: {"address": identity.client_ip}}
    receiver = {
        "hostname": bound.get("hostname", RECEIVER_HOSTNAME),
        "banner": "{hostname} ESMTP",
        "delay_reject": delay,
        "enhanced_status_codes": enhanced,
        **build.receiver,
    }
    summary = _clip(" ".join(reply.lines), 70)
    data: dict[str, Any] = {
        "name": f"reproduce-{entry.id}",
        "description": f"Reproduces {entry.policy} {entry.outcome}: {summary}",
        "receiver": receiver,
        "policies": {listed: [policy_entry]},
        "world": world,
        "expect": [] if build.raw is not None else [*build.before, case],
    }
    return data, expected, at, notes


def _bound(
    identity: Identity, case: Mapping[str, Any], at: str, build: Build, listed: str
) -> dict[str, str]:
    """Placeholder values the reproduction renders exactly as the customer's reply shows."""
    order = ["connect", "helo", "mail", "rcpt", "data", "eod"]
    reached = order.index(at) if at in order else len(order)
    bound: dict[str, str] = {"ip": identity.client_ip}
    helo = case.get("helo", identity.helo)
    if reached >= 1 and "script" not in case:
        bound["helo"] = helo
        bound["verb"] = "EHLO" if case.get("ehlo", True) else "HELO"
    if reached >= 2 and "script" not in case:
        bound["sender"] = case.get("mail_from", identity.mail_from)
    bound.update({k: v for k, v in build.bound.items() if v})
    return bound


def _template(reply: Reply, bound: Mapping[str, str], allowed: set[str]) -> list[str]:
    """The customer's reply with its identifiers as placeholders, as wire lines."""
    usable = sorted(
        ((k, v) for k, v in bound.items() if k in allowed and len(v) >= 2 and "{" not in v),
        key=lambda kv: len(kv[1]),
        reverse=True,
    )
    lines = []
    for line in reply.lines:
        text = line.replace("{", "{{").replace("}", "}}")
        for name, value in usable:
            text = re.sub(
                rf"(?<![\w.:@-]){re.escape(value)}(?![\w:@-]|\.\w)", "{" + name + "}", text
            )
        lines.append(text)
    return Reply(reply.code, reply.status, tuple(lines)).wire_lines(
        enhanced=reply.status is not None
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- command line ---------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    from .explain import add_input_argument

    parser = sub.add_parser(
        "reproduce",
        help="write a scenario whose receiver refuses like the bounce says, and the swaks "
        "command that shows it",
    )
    add_input_argument(parser)
    parser.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the scenario to write ('-': stdout)"
    )
    parser.add_argument("-f", "--force", action="store_true", help="overwrite FILE if it exists")
    parser.add_argument("--entry", metavar="ID", help="reproduce this catalogue entry")
    parser.add_argument("--client-ip", metavar="IP", help="the sending server's address")
    parser.add_argument("--helo", metavar="NAME", help="the HELO/EHLO name it sends")
    parser.add_argument("--mail-from", metavar="ADDRESS", help="the envelope sender")
    parser.add_argument("--rcpt", metavar="ADDRESS", help="the recipient")


def main(args: Any) -> int:
    """`strictmx reproduce`: 0 written, 1 not recognised, 2 unusable input or file."""
    import sys

    from .explain import EXIT_BAD_INPUT, EXIT_NOT_RECOGNISED, ExplainError, decode, read_input

    try:
        text = decode(read_input(args.input))
        result = reproduce(
            text,
            entry_id=args.entry,
            client_ip=args.client_ip,
            helo=args.helo,
            mail_from=args.mail_from,
            rcpt=args.rcpt,
        )
    except ExplainError as exc:
        print(f"strictmx: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ReproduceError as exc:
        print(f"strictmx: {exc}", file=sys.stderr)
        recognised = not str(exc).startswith("not recognised")
        return EXIT_BAD_INPUT if recognised else EXIT_NOT_RECOGNISED
    body = result.to_yaml(text)
    to_stdout = args.output == "-"
    if to_stdout:
        sys.stdout.write(body)
    else:
        try:
            # "x": an existing file (or a symlink to one) is never replaced unasked.
            with open(args.output, "w" if args.force else "x", encoding="utf-8") as handle:
                handle.write(body)
        except FileExistsError:
            print(f"strictmx: {args.output} exists; use --force to overwrite it", file=sys.stderr)
            return EXIT_BAD_INPUT
        except OSError as exc:
            print(f"strictmx: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    report = sys.stderr if to_stdout else sys.stdout
    entry = result.entry
    where = "standard output" if to_stdout else args.output
    print(
        f"wrote {where}: {entry.policy} {entry.outcome} (catalogue entry {entry.id}), "
        f"refused at {result.at} with:",
        file=report,
    )
    for line in result.expected:
        print(f"  {line}", file=report)
    for note in result.notes:
        print(f"note: {note}", file=report)
    print("show it:", file=report)
    for line in result.swaks_commands("scenario.yaml" if to_stdout else args.output):
        print(f"  {line}", file=report)
    return 0
