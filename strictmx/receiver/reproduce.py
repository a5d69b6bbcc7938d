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
`--mail-from` and `--rcpt` override what the reply says; of a bounce that names its
recipients, `--rcpt` picks the recipient whose refusal is reproduced (the first failed one
without it).

Each policy says how it is reproduced (`Policy.reproduce`, see `reproduction`): the matched
outcome becomes the policy's options, the world and the session; a third-party policy that
declares one is reproduced like the built-ins. This module reads the customer's reply,
places the policy, and assembles the scenario, validated with `scenario.from_dict` before
anyone writes it.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from . import scenario as scenarios
from .catalogue import Catalogue, Entry
from .explain import (
    EXIT_BAD_INPUT,
    EXIT_NOT_RECOGNISED,
    Explainer,
    ExplainError,
    Explanation,
    Extracted,
    add_input_argument,
    decode,
    default_explainer,
    read_input,
)
from .outcome import TEXT, Fields, Outcome
from .policy import PolicyClass
from .registry import builtin_policies, load_registry
from .reproduction import (
    DEFAULT_CLIENT_IP,
    DEFAULT_HELO,
    DEFAULT_RCPT,
    DEFAULT_SENDER,
    RECEIVER_HOSTNAME,
    Build,
    Identity,
    Request,
    bare_lf_message,
    is_ip,
)
from .reproduction import LOOPBACK_SOURCE as LOOPBACK_SOURCE
from .verdict import DELAYABLE_STAGES, MAX_LINE, Reply, Stage

SERVER = "127.0.0.1:2525"


class ReproduceError(ValueError):
    """The input cannot be reproduced (not recognised, not a refusal, bad identity)."""


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
            raw = bare_lf_message(ident).replace("%", "%%")
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


def read_fields(entry: Entry, reply: Reply, policy: PolicyClass | None = None) -> dict[str, str]:
    """Values the customer's reply shows for the entry's placeholders, and what the entry's
    policy finds in its text besides (`Policy.read_reply`)."""
    text = _flat(" ".join(reply.lines))
    fields = _by_template(" ".join(entry.template.lines), text, entry.fields)
    if "txt_suffix" in fields and "txt" not in fields:
        fields["txt"] = fields["txt_suffix"].removeprefix(";").strip()
    fields.pop("txt_suffix", None)
    if "ip" in fields and not is_ip(fields["ip"]):
        del fields["ip"]  # a documented placeholder ("%s"), not an address
    if "ip" not in fields:
        found = _first_ip(text)
        if found:
            fields["ip"] = found
    if "helo" not in fields:
        helo = re.search(r"<([^<>\s]+)>: Helo command rejected", text)
        if helo:
            fields["helo"] = helo.group(1)
    if policy is None:
        policy = builtin_policies().get(entry.policy)
    if policy is not None:
        for name, value in policy.read_reply(entry.outcome, text).items():
            fields.setdefault(name, value)
    if "ptr" not in fields:
        ptr = re.search(r"\bclient ([A-Za-z0-9.-]+\.[A-Za-z]{2,}) \[", text) or re.search(
            r"Hostname '([^']+)'", text
        )
        if ptr:
            fields["ptr"] = ptr.group(1)
    return {k: v for k, v in fields.items() if v}


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _by_template(template: str, text: str, kinds: Fields) -> dict[str, str]:
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
            pattern += f"(?P<{part}>{kinds.get(part, TEXT).pattern})"
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


def _placement(
    entry: Entry, outcome: Outcome, observed: Stage | None
) -> tuple[Stage, bool, list[str]]:
    """(stage to list the policy under, delay_reject, notes) for the stage to refuse at."""
    want = observed or entry.stage
    natural = outcome.decided_at
    can = {natural, *outcome.also_at}
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
    explanation = _explanation_for(explainer, text, rcpt)
    found = explanation.input
    if entry_id is not None:
        try:
            entry = catalogue.get(entry_id)
        except KeyError as exc:
            raise ReproduceError(str(exc.args[0])) from None
    elif explanation.best is not None:
        entry = explanation.best.entry
    elif explanation.not_emulated is not None:
        # The bounce's class is known and is no strictmx refusal: say which, not "nearest".
        other = explanation.not_emulated
        raise ReproduceError(
            f"not recognised as a strictmx refusal: this is {other.name}, and "
            f"{other.statement}; fix: {other.fix}"
        )
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
    registry = registry if registry is not None else load_registry()
    cls = registry.get(entry.policy)
    if cls is None:
        raise ReproduceError(f"policy {entry.policy!r} of entry {entry.id} is not installed")
    fields = read_fields(entry, reply, cls)
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
    build = cls.reproduce(Request(entry, fields, identity))
    if build is None:
        raise ReproduceError(
            f"policy {entry.policy!r} does not say how to reproduce {entry.outcome} "
            f"(entry {entry.id}): it has no `reproduce` of its own"
        )
    data, expected, at, notes = _scenario(entry, cls, found, reply, identity, build, catalogue)
    _list_required(data["policies"], cls, build, registry)
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


def _explanation_for(explainer: Explainer, text: str, rcpt: str | None) -> Explanation:
    """The recipient whose refusal is reproduced: the one `rcpt` names when the bounce
    names recipients (ReproduceError, listing them, when it names no such one), else the
    first failed one; `rcpt` then only sets the session's recipient."""
    explanations = explainer.explain_all(text)
    named = [e.input.recipient for e in explanations if e.input.recipient]
    if rcpt is None or not named:
        return explanations[0]
    wanted = rcpt.strip().strip("<>").lower()
    for explanation in explanations:
        if (explanation.input.recipient or "").lower() == wanted:
            if explanation.not_a_refusal is not None:
                raise ReproduceError(
                    f"--rcpt {rcpt}: nothing to reproduce, {explanation.not_a_refusal}"
                )
            return explanation
    raise ReproduceError(
        f"--rcpt {rcpt}: the bounce names no such recipient; it names "
        + ", ".join(dict.fromkeys(r for r in named if r))
        + " (give one of them, or leave --rcpt out for the first refused one)"
    )


def _list_required(
    policies: dict[str, list[dict[str, Any]]],
    cls: PolicyClass,
    build: Build,
    registry: Mapping[str, PolicyClass],
) -> None:
    """The policies `cls` reads the results of, listed before it (the scenario does not
    load otherwise): each at its earliest stage, with the reproduction's options for it."""
    order = [stage.value for stage in Stage]
    for name in reversed(cls.requires):
        required = registry.get(name)
        if required is None:
            raise ReproduceError(
                f"policy {cls.name!r} reads the results of {name!r}, which is not installed"
            )
        stage = min(required.stages, key=list(Stage).index).value
        listed = policies.setdefault(stage, [])
        listed.insert(0, {"policy": name, **build.requires.get(name, {})})
    # Stages in the order a session meets them, as a person would write the file.
    ordered = {key: policies[key] for key in sorted(policies, key=_stage_order(order))}
    policies.clear()
    policies.update(ordered)


def _stage_order(order: list[str]) -> Callable[[str], int]:
    return lambda key: order.index(key) if key in order else -1


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
    outcome = next(o for o in cls.outcomes if o.id == entry.outcome)
    natural = outcome.decided_at
    notes = list(build.notes)
    if build.listed_under == "session":
        listed, delay = "session", False
        at = build.at or natural.value
    else:
        stage, delay, more = _placement(entry, outcome, found.stage)
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
    allowed = set(outcome.all_fields)
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
                rf"(?<![\w.:@/-]){re.escape(value)}(?![\w:@/-]|\.\w)", "{" + name + "}", text
            )
        lines.append(text)
    return Reply(reply.code, reply.status, tuple(lines)).wire_lines(
        enhanced=reply.status is not None
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- command line ---------------------------------------------------------------------


def add_parser(sub: Any) -> None:
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
    parser.add_argument(
        "--rcpt",
        metavar="ADDRESS",
        help="the recipient; of a bounce to several, the one whose refusal to reproduce",
    )


def main(args: Any) -> int:
    """`strictmx reproduce`: 0 written, 1 not recognised, 2 unusable input or file."""
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
