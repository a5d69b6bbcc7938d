"""Regenerate mta.yaml, the explain corpus of real MTA bounces: run as root,
`python tests/data/explain_corpus/generate_mta.py [--limit N] [--only ID ...]`.

Every bounce here is one a real Postfix wrote after a strictmx receiver refused a message it
relayed, over loopback:

- for every catalogue entry that `strictmx reproduce` can build, the reproduction's scenario
  is served and its last expect case (its client address, HELO, sender, recipients and
  message) is what Postfix relays; the cases before it are played directly first, as
  `strictmx run` does, when the refusal needs their state;
- for every bundled persona scenario, each expect case that is refused is relayed the same
  way (its own client, HELO, sender, recipients and message).

Each refusal gives three items, one group: the whole DSN Postfix sent back to the sender
(`postfix-dsn:`), Postfix's own `status=bounced` (or `status=deferred`, for a 4xx) log line
(`postfix-log:`), and the bare reply a webmail shows, from the DSN's Diagnostic-Code
(`reply:`). The label is the truth from strictmx's journal for that session: the family of
the policy whose refusal was sent, never what `explain` says. The group is the catalogue
entry id of the reply (the reproduced entry; for a persona, the entry its policy replies
with), or `persona:<scenario>:<policy>:<outcome>` for a persona's own text, so the fixed split
keeps every form of one reply, and the same reply reached through a persona, on one side.

How: one strictmx receiver per case (in-process, a free port) and one private Postfix per
batch of cases (tests/e2e/postfix.py). Each case has a transport of its own in master.cf
(`-o smtp_helo_name`, `-o smtp_bind_address`), chosen by a FILTER action keyed on the HELO
name the generator submits with, so one Postfix serves a whole batch. The queue lifetime is
0: a 4xx is tried once and returned at once. DSNs go to the relayhost, a small sink on
loopback. Postfix is stopped through its own pid file and each receiver by its thread; only
what this script started is stopped.

The generator prints what it could not relay and why (a scripted session, the null sender,
...), and the counts per family and per source.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import re
import smtplib
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import yaml
from aiosmtpd.controller import Controller

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from strictmx.receiver import scenario as scenarios  # noqa: E402
from strictmx.receiver.catalogue import Catalogue  # noqa: E402
from strictmx.receiver.expect import Case, load_message, message_bytes  # noqa: E402
from strictmx.receiver.explain import Explainer  # noqa: E402
from strictmx.receiver.registry import bundled  # noqa: E402
from strictmx.receiver.reproduce import ReproduceError, reproduce  # noqa: E402
from strictmx.receiver.runner import case_source, play, scenario_for  # noqa: E402
from strictmx.receiver.server import Receiver, ReceiverThread, ServerOptions  # noqa: E402
from strictmx.receiver.tls import self_signed_context  # noqa: E402
from tests.data.bounces.generate import Sink  # noqa: E402
from tests.e2e.postfix import UNAVAILABLE, Postfix, free_port  # noqa: E402

OUTPUT = HERE / "mta.yaml"

#: What a customer's bounce shows where the catalogue has placeholders: the values
#: tests/e2e/test_reproduce.py's round trip fills in, so the same reproductions run here.
SAMPLES: dict[str, str] = {
    "ip": "198.51.100.23",
    "mx_ip": "192.0.2.225",
    "helo": "mail.example.net",
    "ptr": "host-23.example.net",
    "zone": "dnsbl.example.org",
    "domain": "example.net",
    "hostname": "mx.example.org",
    "mx": "mx.example.net",
    "spf_domain": "example.net",
    "from_domain": "example.net",
    "sender": "alice@example.net",
    "tag": "k5si1437052qkb.183",
    "count": "11",
    "limit": "10",
    "length": "1204",
    "line": "3",
    "age": "5",
    "verb": "EHLO",
    "previous": "old.example.net",
    "spf_result": "fail",
    "spf_identity": "MAIL FROM",
    "spf_explanation": "domain of example.net does not designate 198.51.100.23 as permitted sender",
    "txt": "https://dnsbl.example.org/lookup?ip=198.51.100.23",
    "txt_suffix": "; https://dnsbl.example.org/lookup?ip=198.51.100.23",
    "why": "host mx.example.net[192.0.2.225] said: 550 5.1.1 User unknown",
    "response": "550 5.1.1 <alice@example.net>: Recipient address rejected: User unknown",
    "sent": "RCPT TO:<alice@example.net>",
    "field": "Subject",
}

#: Cases per Postfix instance: each has a receiver thread of its own while the batch runs.
BATCH = 40
#: How long one batch may take from the first submission to the last DSN.
BATCH_TIMEOUT = 120.0
#: How long a receiver may take to answer the cases played before the relayed one.
PLAY_TIMEOUT = 10.0

# A HELO name or address Postfix's smtp client can be told in master.cf and send as is.
_SENDABLE_HELO = re.compile(r"^[\x21-\x7a\x7c\x7e]+$")
_QUEUED = re.compile(r"queued as ([0-9A-Za-z]+)")
_LOG_STATUS = re.compile(r" ([0-9A-Za-z]+): to=<.*, status=(sent|bounced|deferred) ")


@dataclass
class Drive:
    """One session Postfix relays to a receiver, and what came of it."""

    n: int
    #: The scenario the source field names: the persona, or `reproduce-<entry id>`.
    origin: str
    #: The catalogue entry reproduced (None for a persona case).
    entry: str | None
    scenario: scenarios.Scenario
    case: Case
    before: list[Case]
    source: str
    loaded: bytes | None
    queue_id: str | None = None
    thread: ReceiverThread | None = None
    seen_sessions: set[str] = field(default_factory=set)

    @property
    def service(self) -> str:
        return f"d{self.n}"

    @property
    def submit_helo(self) -> str:
        return f"d{self.n}.submit.test"


@dataclass
class Bounce:
    drive: Drive
    family: str
    group: str
    policy: str
    outcome: str
    dsn: str
    log: str
    reply: str


@dataclass
class Report:
    skipped: list[tuple[str, str]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    bounces: list[Bounce] = field(default_factory=list)


# -- the cases ------------------------------------------------------------------------------


def reproduction_drives(catalogue: Catalogue, report: Report) -> list[Drive]:
    """Every catalogue entry's reproduction whose last case Postfix can relay."""
    explainer = Explainer(catalogue)
    drives: list[Drive] = []
    for entry in catalogue.entries:
        reply = entry.template.format(SAMPLES)
        text = "\n".join(reply.wire_lines(enhanced=reply.status is not None))
        try:
            built = reproduce(text, entry_id=entry.id, explainer=explainer)
        except ReproduceError as exc:
            report.skipped.append((entry.id, f"reproduce cannot build it: {exc}"))
            continue
        if built.raw is not None:
            report.skipped.append((entry.id, "the refusal needs raw bytes written by hand"))
            continue
        scenario = scenarios.from_dict(built.scenario, source=f"<reproduce {entry.id}>")
        if not scenario.expect:
            report.skipped.append((entry.id, "the reproduction has no expect case to relay"))
            continue
        *before, case = scenario.expect
        made = _drive(len(drives), f"reproduce-{entry.id}", entry.id, scenario, case, before, None)
        if isinstance(made, str):
            report.skipped.append((entry.id, made))
        else:
            drives.append(made)
    return drives


def persona_drives(start: int, report: Report) -> list[Drive]:
    """Every refused expect case of every bundled persona scenario."""
    drives: list[Drive] = []
    for name in scenarios.bundled_names():
        scenario = scenarios.load(name)
        base = Path(scenario.source).parent
        if not base.is_dir():
            base = scenarios.bundled_dir()
        for index, case in enumerate(scenario.expect):
            if case.result == "accepted":
                continue
            try:
                loaded = load_message(case, base)
            except Exception as exc:  # CaseError and the OSErrors under it, named below
                report.skipped.append((f"{name}: {case.name}", f"message file: {exc}"))
                continue
            made = _drive(start + len(drives), name, None, scenario, case, [], loaded, index)
            if isinstance(made, str):
                report.skipped.append((f"{name}: {case.name}", made))
            else:
                drives.append(made)
    return drives


def _drive(
    n: int,
    origin: str,
    entry: str | None,
    scenario: scenarios.Scenario,
    case: Case,
    before: list[Case],
    loaded: bytes | None,
    index: int = 0,
) -> Drive | str:
    """The drive for `case`, or why Postfix cannot relay that session."""
    if case.script is not None:
        return "a scripted session (raw commands) that an MTA's smtp client does not send"
    if not case.mail_from:
        return "the null sender: Postfix returns no DSN for a bounce"
    if not _SENDABLE_HELO.match(case.helo):
        return f"HELO {case.helo!r} cannot be given to Postfix's smtp_helo_name"
    if any(b.script is not None or b.address is not None for b in before):
        return "the cases before the relayed one need a scripted or mapped client"
    source = case.client
    if case.address is not None:
        source = case_source(index)
        scenario = scenario_for(scenario, case, source)
    return Drive(n, origin, entry, scenario, case, list(before), source, loaded)


def default_message(case: Case, now: Any) -> bytes:
    """A plain message with nothing of the case in it: a case's own default names the case
    (its Subject), and the returned headers of a DSN must say nothing about the refusal."""
    msg = EmailMessage()
    msg["From"] = case.mail_from
    msg["To"] = ", ".join(case.rcpt)
    msg["Subject"] = "quarterly report"
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = email.utils.make_msgid(domain="example.net")
    msg.set_content("Figures for the quarter are attached.\n")
    return message_bytes(case, now, msg.as_bytes(policy=email.policy.SMTP))


# -- one batch: receivers, one Postfix, the DSNs ------------------------------------------------


def _service(drive: Drive) -> str:
    """The master.cf transport for one drive: Postfix's smtp client as that case's sender."""
    lines = [
        f"{drive.service} unix - - n - - smtp",
        f"  -o smtp_helo_name={drive.case.helo}",
        f"  -o smtp_bind_address={drive.source}",
    ]
    if not drive.case.ehlo:
        lines.append("  -o smtp_never_send_ehlo=yes")
    if drive.case.starttls:
        lines.append("  -o smtp_tls_security_level=encrypt")
        if isinstance(drive.case.starttls, str):
            version = drive.case.starttls
            lines.append(f"  -o {{ smtp_tls_mandatory_protocols = >={version}, <={version} }}")
    return "\n".join(lines) + "\n"


def run_batch(drives: Sequence[Drive], catalogue: Catalogue, report: Report) -> None:
    sink = Sink()
    sink_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    started: list[ReceiverThread] = []
    try:
        for drive in drives:
            hostname = drive.scenario.receiver.hostname
            tls = self_signed_context(hostname) if drive.case.starttls else None
            options = ServerOptions(host="127.0.0.1", port=0, db=":memory:", tls_context=tls)
            thread = ReceiverThread(Receiver(drive.scenario, options))
            thread.start()
            started.append(thread)
            drive.thread = thread
            _play_before(drive, thread)
        postfix = Postfix(
            ("127.0.0.1", sink_port),
            services="".join(_service(d) for d in drives),
        )
        access = postfix.root / "helo_access"
        access.write_text(
            "".join(
                f"{d.submit_helo} FILTER {d.service}:[127.0.0.1]:{d.thread.port}\n"
                for d in drives
                if d.thread is not None
            )
        )
        postfix.settings.update(
            {
                # The DSNs go to the relayhost (the sink), like mail to any other domain.
                "transport_maps": "",
                # A 4xx is tried once and returned at once, with its own DSN.
                "maximal_queue_lifetime": "0",
                "bounce_queue_lifetime": "0",
                # The case's message as it is: no Message-ID or Date added for it.
                "local_header_rewrite_clients": "",
                "in_flow_delay": "0",
                # The HELO the generator submits with picks the case's transport and receiver.
                "smtpd_helo_restrictions": f"check_helo_access texthash:{access}",
            }
        )
        try:
            postfix.start()
            for drive in drives:
                _submit(postfix, drive, report)
            _collect(postfix, sink, [d for d in drives if d.queue_id], catalogue, report)
        finally:
            postfix.stop()
    finally:
        for thread in started:
            thread.stop()
        controller.stop()


def _play_before(drive: Drive, thread: ReceiverThread) -> None:
    receiver = thread.receiver
    for case in drive.before:
        now = receiver.world.clock.now()
        play(case, "127.0.0.1", thread.port, now, PLAY_TIMEOUT, message=message_bytes(case, now))
    thread.call(receiver.settle())
    drive.seen_sessions = {s["id"] for s in thread.call(receiver.journal.sessions(limit=1000))}


def _submit(postfix: Postfix, drive: Drive, report: Report) -> None:
    assert drive.thread is not None
    case = drive.case
    now = drive.thread.receiver.world.clock.now()
    if drive.loaded is not None or case.message is not None:
        message = message_bytes(case, now, drive.loaded)
    else:
        message = default_message(case, now)
    options = ["RET=HDRS"]
    if not (case.mail_from + "".join(case.rcpt)).isascii():
        options.append("SMTPUTF8")
    try:
        with smtplib.SMTP(
            "127.0.0.1", postfix.smtpd_port, local_hostname=drive.submit_helo, timeout=10
        ) as client:
            client.ehlo()
            code, text = client.mail(case.mail_from, options)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, text, case.mail_from)
            for rcpt in case.rcpt:
                code, text = client.rcpt(rcpt, ["NOTIFY=FAILURE"])
                if code not in (250, 251):
                    raise smtplib.SMTPRecipientsRefused({rcpt: (code, text)})
            code, text = client.data(message)
    except smtplib.SMTPException as exc:
        report.skipped.append((_name(drive), f"Postfix did not take the message: {exc}"))
        return
    queued = _QUEUED.search(text.decode("utf-8", "replace"))
    if code != 250 or queued is None:
        report.skipped.append((_name(drive), f"Postfix did not queue it: {code} {text!r}"))
        return
    drive.queue_id = queued.group(1)


def _collect(
    postfix: Postfix,
    sink: Sink,
    drives: Sequence[Drive],
    catalogue: Catalogue,
    report: Report,
) -> None:
    """Wait (bounded) until every message is sent or its DSN is back, then keep the bounces."""
    waiting = {d.queue_id: d for d in drives if d.queue_id is not None}
    dsns: dict[str, str] = {}
    lines: dict[str, str] = {}
    deadline = time.monotonic() + BATCH_TIMEOUT
    while waiting and time.monotonic() < deadline:
        sink.arrived.wait(0.2)
        sink.arrived.clear()
        for raw in sink.messages[len(dsns) :]:
            text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
            found = re.search(r"^X-Postfix-Queue-ID: (\S+)$", text, re.M)
            dsns[found.group(1) if found else f"?{len(dsns)}"] = text
        for line in postfix.log_lines():
            status = _LOG_STATUS.search(line)
            # relay=none: Postfix gave up before it talked to the receiver (not its reply).
            fresh = status and status.group(1) in waiting and status.group(1) not in lines
            if status and fresh and "relay=none" not in line:
                lines[status.group(1)] = line
        for queue_id in list(waiting):
            logged = lines.get(queue_id)
            if logged is None:
                continue
            if " status=sent " in logged:
                report.accepted.append(_name(waiting.pop(queue_id)))
            elif queue_id in dsns:
                drive = waiting.pop(queue_id)
                _keep(drive, dsns[queue_id], logged, catalogue, report)
    for drive in waiting.values():
        report.skipped.append((_name(drive), f"no outcome within {BATCH_TIMEOUT:.0f} s"))


def _keep(drive: Drive, dsn: str, line: str, catalogue: Catalogue, report: Report) -> None:
    reply = diagnostic(dsn)
    if reply is None:
        report.skipped.append((_name(drive), "the DSN has no Diagnostic-Code"))
        return
    verdict = _deciding_verdict(drive)
    if verdict is None:
        report.skipped.append((_name(drive), f"no refusal in the journal for: {reply}"))
        return
    if str(verdict["code"]) != reply[:3]:
        report.skipped.append(
            (_name(drive), f"the journal's refusal ({verdict['code']}) is not the reply {reply}")
        )
        return
    policy, outcome = verdict["policy"], verdict["outcome"]
    family = family_of(catalogue, policy, outcome)
    group = drive.entry or _persona_group(drive, catalogue, policy, outcome)
    if drive.entry is not None:
        entry = catalogue.get(drive.entry)
        if (entry.policy, entry.outcome) != (policy, outcome):
            report.mismatched.append(
                f"{drive.entry}: reproduces {entry.policy}/{entry.outcome}, "
                f"the journal says {policy}/{outcome}"
            )
    report.bounces.append(Bounce(drive, family, group, policy, outcome, dsn, line, reply))


def _deciding_verdict(drive: Drive) -> dict[str, Any] | None:
    """The last refusal the receiver sent in the sessions Postfix held with it."""
    thread = drive.thread
    assert thread is not None
    receiver = thread.receiver
    thread.call(receiver.settle())
    sent: list[dict[str, Any]] = []
    for row in reversed(thread.call(receiver.journal.sessions(limit=1000))):
        if row["id"] in drive.seen_sessions:
            continue
        session = thread.call(receiver.journal.session(row["id"]))
        for verdict in session["verdicts"] if session else []:
            if verdict["replied_at"] and verdict["code"] and verdict["code"] >= 400:
                sent.append(verdict)
    return sent[-1] if sent else None


def family_of(catalogue: Catalogue, policy: str, outcome: str) -> str:
    entries = catalogue.for_outcome(policy, outcome)
    if entries:
        return entries[0].family
    info = catalogue.outcomes.get((policy, outcome))
    return (info.family if info else None) or policy


def _persona_group(drive: Drive, catalogue: Catalogue, policy: str, outcome: str) -> str:
    """The catalogue entry the persona answers `outcome` with, as its scenario names it."""
    configured = next(
        (
            e.replies[outcome]
            for e in drive.scenario.entries
            if e.cls.name == policy and outcome in e.replies
        ),
        None,
    )
    if configured is None:
        default = catalogue.default_for(policy, outcome)
        if default is not None:
            return default.id
    else:
        for entry in catalogue.for_outcome(policy, outcome):
            if entry.template == configured:
                return entry.id
    return f"persona:{drive.origin}:{policy}:{outcome}"


def diagnostic(dsn: str) -> str | None:
    """The first failed recipient's reply, unfolded, without its `smtp;` type."""
    found = re.search(r"^Diagnostic-Code: *smtp; *(.*(?:\n[ \t]+.*)*)", dsn, re.M | re.I)
    if found is None:
        return None
    return re.sub(r"\s*\n[ \t]+", " ", found.group(1)).strip()


def _name(drive: Drive) -> str:
    return drive.entry or f"{drive.origin}: {drive.case.name}"


# -- the corpus file ---------------------------------------------------------------------------


def _scalar(key: str, value: str) -> str:
    """`key: value` for an item, a multi-line text as a literal block scalar.

    PyYAML will not write a block scalar holding a tab (a DSN's folded Received line has
    one), so blocks are written here; `write` reads the file back and compares.
    """
    if "\n" not in value.rstrip("\n"):
        dumped = yaml.safe_dump({key: value}, allow_unicode=True, width=10_000)
        return "  " + dumped.rstrip("\n") + "\n"
    chomp = "" if value.endswith("\n") and not value.endswith("\n\n") else "-"
    if value.endswith("\n\n"):
        chomp = "+"
    indicator = "2" if value[:1] in (" ", "\t") else ""
    body = "".join(f"    {line}\n" if line else "\n" for line in value.rstrip("\n").split("\n"))
    if chomp == "+":
        body += "\n" * (len(value) - len(value.rstrip("\n")) - 1)
    return f"  {key}: |{indicator}{chomp}\n{body}"


def items(bounces: Iterable[Bounce]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for b in sorted(bounces, key=lambda b: (b.group, b.drive.origin, b.drive.n)):
        origin = b.drive.origin
        dsn = "\n".join(line.rstrip() for line in b.dsn.strip("\n").split("\n")) + "\n"
        for source, text in (
            (f"postfix-dsn:{origin}", dsn),
            (f"postfix-log:{origin}", b.log.strip()),
            (f"reply:{origin}", b.reply),
        ):
            out.append({"family": b.family, "input": text, "source": source, "group": b.group})
    return out


HEADER = """\
# Real bounces written by a real Postfix (3.7) relaying to strictmx, one group per reply:
# the DSN it returned to the sender, its own log line, and the reply from the DSN's
# Diagnostic-Code. `family` is what strictmx's journal recorded for the session (the family of
# the policy whose refusal was sent), never what explain says. Regenerated by generate_mta.py
# beside this file (as root); do not edit by hand. Queue ids, dates and ports vary per run.
"""


def write(bounces: Sequence[Bounce], path: Path) -> None:
    kept = items(bounces)
    out = [HEADER, "items:\n"]
    for item in kept:
        fields = [_scalar(key, item[key]) for key in ("family", "input", "source", "group")]
        out.append("-" + "".join(fields)[1:])
    text = "".join(out)
    if yaml.safe_load(text) != {"items": kept}:
        raise AssertionError(f"{path}: the YAML written does not read back as the items")
    path.write_text(text, encoding="utf-8")


# -- the run -----------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[], help="entry ids or persona names")
    parser.add_argument("--limit", type=int, default=0, help="at most N cases (a quick try)")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if UNAVAILABLE is not None:
        print(f"cannot run Postfix here: {UNAVAILABLE}", file=sys.stderr)
        return 2
    began = time.monotonic()
    catalogue = bundled()
    report = Report()
    drives = reproduction_drives(catalogue, report)
    drives += persona_drives(len(drives), report)
    if args.only:
        drives = [d for d in drives if d.entry in args.only or d.origin in args.only]
    if args.limit:
        drives = drives[: args.limit]
    print(f"{len(drives)} cases to relay", flush=True)
    for start in range(0, len(drives), BATCH):
        run_batch(drives[start : start + BATCH], catalogue, report)
        print(f"  {min(start + BATCH, len(drives))}/{len(drives)}", flush=True)
    write(report.bounces, args.output)
    kept = items(report.bounces)
    print(f"wrote {args.output}: {len(kept)} items from {len(report.bounces)} bounces")
    print(f"accepted (no bounce): {len(report.accepted)}")
    for what, why in report.skipped:
        print(f"not relayed: {what}: {why}")
    for line in report.mismatched:
        print(f"journal differs: {line}")
    for name, counts in (
        ("family", Counter(i["family"] for i in kept)),
        ("source", Counter(i["source"].split(":")[0] for i in kept)),
    ):
        print(f"per {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"took {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
