"""Regenerate mta.yaml, the explain corpus of real MTA bounces: run as root,
`python tests/data/explain_corpus/generate_mta.py [--limit N] [--only ID ...] [--mta ...]`.

Every bounce here is one a real MTA wrote after a strictmx receiver refused a message it
relayed, over loopback:

- for every catalogue entry that `strictmx reproduce` can build, the reproduction's scenario
  is served and its last expect case (its client address, HELO, sender, recipients and
  message) is what the MTA relays; the cases before it are played directly first, as
  `strictmx run` does, when the refusal needs their state;
- for every bundled persona scenario, each expect case that is refused is relayed the same
  way (its own client, HELO, sender, recipients and message).

Postfix 3.7 gives three items per refusal: the whole DSN it sent back to the sender
(`postfix-dsn:`), its own `status=bounced` (or `status=deferred`, for a 4xx) log line
(`postfix-log:`), and the bare reply a webmail shows, from the DSN's Diagnostic-Code
(`reply:`). Exim 4.96 (the Debian exim4 the differential tests fetch, run privately) relays
the same cases and gives two: its bounce message (`exim-bounce:`) and its `**` log line
(`exim-log:`; for a 4xx, its `==` deferral line, which holds the reply). The label is the
truth from strictmx's journal for that session: the family of the policy whose refusal was
sent, never what `explain` says. The group is the catalogue entry id of the reply (the
reproduced entry; for a persona, the entry its policy replies with), or
`persona:<scenario>:<policy>:<outcome>` for a persona's own text, so the fixed split keeps
every form of one reply, and the same reply reached through a persona, on one side. A
reproduction the journal shows refused by another outcome than its entry's is left out.

How: one strictmx receiver per case (in-process, a free port, fresh for each MTA) and one
private MTA per batch of cases. Postfix (tests/e2e/postfix.py) gets a transport per case in
master.cf (`-o smtp_helo_name`, `-o smtp_bind_address`), chosen by a FILTER action keyed on
the HELO name the generator submits with; Exim's smtp transport reads the same settings from
a table keyed on that HELO ($sender_helo_name). So one MTA serves a whole batch. A 4xx is
tried once and returned at once (Postfix: queue lifetime 0; Exim: no retry rules). Bounces
go to a small sink on loopback. Each MTA is stopped by its own pid (file) and each receiver
by its thread; only what this script started is stopped.

The generator prints what it could not relay and why (a scripted session, the null sender,
...), the cases accepted, and the counts per family and per source.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
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
from tests.differential import exim  # noqa: E402
from tests.e2e.postfix import UNAVAILABLE, Postfix, free_port  # noqa: E402
from tests.reply_samples import SAMPLES as ROUND_TRIP_SAMPLES  # noqa: E402

OUTPUT = HERE / "mta.yaml"

#: What a customer's bounce shows where the catalogue has placeholders: the round trip's
#: values (tests/reply_samples.py), so the same reproductions run here, and a relayed
#: recipient in a domain the receiver refuses.
SAMPLES: dict[str, str] = {**ROUND_TRIP_SAMPLES, "rcpt": "bob@other.example"}

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
    #: Which MTA wrote the bounce: "postfix" or "exim".
    mta: str = "postfix"


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
        return "the null sender: an MTA returns no bounce for a bounce"
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


def run_batch(drives: Sequence[Drive], catalogue: Catalogue, report: Report, mta: str) -> None:
    """Relay each drive through `mta` ("postfix" or "exim") to a fresh receiver of its own."""
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
            drive.thread, drive.queue_id = thread, None
            _play_before(drive, thread)
        if mta == "exim":
            _relay_exim(drives, sink, sink_port, catalogue, report)
        else:
            _relay_postfix(drives, sink, sink_port, catalogue, report)
    finally:
        for thread in started:
            thread.stop()
        controller.stop()


def _relay_postfix(
    drives: Sequence[Drive], sink: Sink, sink_port: int, catalogue: Catalogue, report: Report
) -> None:
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
            _submit(postfix.smtpd_port, _QUEUED, drive, report)
        _collect(postfix, sink, [d for d in drives if d.queue_id], catalogue, report)
    finally:
        postfix.stop()


# Exim's relay: the unpacked Debian exim4 that tests/differential/exim.py fetches, run
# as a daemon in a private mount namespace (its compiled-in user in private copies of
# /etc/passwd and /etc/group), with a configuration of its own. The submitting HELO
# ($sender_helo_name, kept with the message) picks the case's port, HELO and source
# address; Exim's own bounces (no HELO) go to the sink. No retry rules: "temporary errors
# are treated as permanent" (Exim spec, ch. 32 "Retry configuration"), so a 4xx is
# returned at once, as Postfix does with a queue lifetime of 0.
_EXIM_CONFIGURE = """\
# The settings of the case the submitting HELO names (empty for Exim's own bounces).
CASE = ${{lookup{{$sender_helo_name}}lsearch{{{root}/cases}}}}
primary_hostname = staging.strictmx.test
keep_environment = LD_LIBRARY_PATH
qualify_domain = staging.strictmx.test
exim_user = {user}
exim_group = {user}
never_users = root
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
pid_file_path = {root}/exim.pid
local_interfaces = <; 127.0.0.1
daemon_smtp_ports = {port}
host_lookup = :
rfc1413_hosts = :
tls_advertise_hosts = :
dsn_advertise_hosts = *
acl_smtp_rcpt = acl_rcpt
bounce_return_body = false
smtp_accept_queue_per_connection = 0
remote_max_parallel = 10

begin acl

acl_rcpt:
  accept hosts = 127.0.0.1
  deny

begin routers

smarthost:
  driver = manualroute
  condition = ${{if def:sender_helo_name}}
  route_list = * 127.0.0.1
  self = send
  transport = remote_smtp_smarthost

sink:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = to_sink

begin transports

remote_smtp_smarthost:
  driver = smtp
  allow_localhost
  port = ${{extract{{port}}{{CASE}}}}
  helo_data = ${{extract{{helo}}{{CASE}}}}
  interface = ${{extract{{bind}}{{CASE}}}}
  hosts_avoid_esmtp = ${{extract{{helo_only}}{{CASE}}}}
  # No BDAT: with CHUNKING, sessions with the Postfix-dialect personas end with "Remote
  # host closed connection in response to pipelined end of data" and a bounce that only
  # says "retry timeout exceeded" (the receiver's reply is lost), so DATA is used.
  hosts_try_chunking = :

to_sink:
  driver = smtp
  allow_localhost
  port = {sink_port}
"""
LDCONFIG = shutil.which("ldconfig", path="/usr/sbin:/sbin:/usr/bin:/bin") or "ldconfig"
_EXIM_QUEUED = re.compile(r"\bid=([0-9A-Za-z-]+)")
# 2026-12-03 20:30:01 1tAbCd-0001Ab-2x ** bob@strictmx.test R=cases T=to_strictmx ...
_EXIM_STATUS = re.compile(r"^\S+ \S+ (\S+) (\*\*|=>|==) ")


class EximRelay:
    """A private Exim daemon relaying to the drives' receivers, stopped by its own PID."""

    def __init__(self, drives: Sequence[Drive], sink_port: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="strictmx-exim-relay-"))
        self.port = free_port()
        self.drives = drives
        self.sink_port = sink_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> EximRelay:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> EximRelay:
        packages = exim.fetch()
        for sub in ("spool", "log"):
            (self.root / sub).mkdir()
        passwd, group, uid, gid = exim._private_accounts(self.root)
        cases = "".join(
            f"{d.submit_helo}: port={d.thread.port} helo={d.case.helo} bind={d.source}"
            f" helo_only={'' if d.case.ehlo else '127.0.0.1'}\n"
            for d in self.drives
            if d.thread is not None
        )
        (self.root / "cases").write_text(cases)
        (self.root / "configure").write_text(
            _EXIM_CONFIGURE.format(
                user=exim.EXIM_USER, root=self.root, port=self.port, sink_port=self.sink_port
            )
        )
        for sub in ("spool", "log"):
            os.chown(self.root / sub, uid, gid)
        self.root.chmod(0o755)
        # Exim's re-executions (one per delivery) change user, so the loader ignores
        # LD_LIBRARY_PATH there: the unpacked libidn is found through a private loader cache
        # (`ldconfig -X`: no links made anywhere), mounted over /etc/ld.so.cache below.
        libs = packages / "usr" / "lib" / "x86_64-linux-gnu"
        (self.root / "ld.so.conf").write_text(f"{libs}\ninclude /etc/ld.so.conf.d/*.conf\n")
        done = subprocess.run(
            [
                LDCONFIG,
                "-X",
                "-C",
                str(self.root / "ld.so.cache"),
                "-f",
                str(self.root / "ld.so.conf"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ldconfig failed: {done.stderr}")
        sbin = packages / "usr" / "sbin"
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LD_LIBRARY_PATH": str(packages / "usr" / "lib" / "x86_64-linux-gnu"),
        }
        prefix = [
            exim.UNSHARE or "unshare",
            "-m",
            "sh",
            "-c",
            # Exim re-executes itself from its compiled-in path (/usr/sbin/exim4) for each
            # delivery: a copy is mounted there, in this namespace only.
            'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group'
            ' && mount --bind "$3" /usr/sbin && mount --bind "$4" /etc/ld.so.cache'
            ' && shift 4 && exec "$@"',
            "sh",
            str(passwd),
            str(group),
            str(sbin),
            str(self.root / "ld.so.cache"),
            "/usr/sbin/exim4",
            "-C",
            str(self.root / "configure"),
        ]
        self.process = subprocess.Popen(
            [*prefix, "-bdf", "-oX", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "stderr").open("wb"),
            env=env,
        )
        deadline = time.monotonic() + exim.START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Exim exited at start:\n{self.excerpt()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    if sock.recv(512).startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Exim did not greet in time:\n{self.excerpt()}")
            time.sleep(exim.POLL)

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(exim.STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(exim.STOP_TIMEOUT)
        finally:
            self.process = None
            shutil.rmtree(self.root, ignore_errors=True)

    def log_lines(self) -> list[str]:
        try:
            return (self.root / "log" / "mainlog").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def excerpt(self) -> str:
        lines = []
        for name in ("log/mainlog", "log/paniclog", "stderr"):
            path = self.root / name
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()[-20:]
        return "\n".join(lines)


def _relay_exim(
    drives: Sequence[Drive], sink: Sink, sink_port: int, catalogue: Catalogue, report: Report
) -> None:
    relay = EximRelay(drives, sink_port).start()
    try:
        for drive in drives:
            _submit(relay.port, _EXIM_QUEUED, drive, report)
        waiting = {d.queue_id: d for d in drives if d.queue_id is not None}
        deadline = time.monotonic() + BATCH_TIMEOUT
        while waiting and time.monotonic() < deadline:
            sink.arrived.wait(0.2)
            sink.arrived.clear()
            # Every delivery line of each message, and which messages Exim is done with.
            lines: dict[str, list[str]] = defaultdict(list)
            done: set[str] = set()
            for line in relay.log_lines():
                status = _EXIM_STATUS.match(line)
                if status and status.group(1) in waiting:
                    lines[status.group(1)].append(line)
                elif line.endswith(" Completed"):
                    done.add(line.split()[2])
            texts = [m.decode("utf-8", "replace").replace("\r\n", "\n") for m in sink.messages]
            for queue_id in [q for q in waiting if q in done]:
                if not any(" ** " in line or " == " in line for line in lines[queue_id]):
                    report.accepted.append(f"exim {_name(waiting.pop(queue_id))}")
                    continue
                # The bounce returns the message's headers, its Received line with its id.
                bounce = next((t for t in texts if f"id {queue_id}" in t), None)
                if bounce is not None:
                    logged = _exim_line(lines[queue_id], diagnostic(bounce) or "")
                    _keep(waiting.pop(queue_id), bounce, logged, catalogue, report, "exim")
        for drive in waiting.values():
            report.skipped.append((f"exim {_name(drive)}", "no outcome in time"))
    finally:
        relay.stop()


def _exim_line(lines: Sequence[str], reply: str) -> str:
    """The log line that carries the bounce's reply: a `**` failure, or for a 4xx the `==`
    deferral (the `**` after it, no retry rules, only says "retry timeout exceeded")."""
    wanted = " ".join(reply.removesuffix(": retry timeout exceeded").split())
    for line in lines:
        if (" ** " in line or " == " in line) and wanted in " ".join(
            line.replace("\\n", " ").split()
        ):
            return line
    return next(line for line in lines if " ** " in line)


def _play_before(drive: Drive, thread: ReceiverThread) -> None:
    receiver = thread.receiver
    for case in drive.before:
        now = receiver.world.clock.now()
        play(case, "127.0.0.1", thread.port, now, PLAY_TIMEOUT, message=message_bytes(case, now))
    thread.call(receiver.settle())
    drive.seen_sessions = {s["id"] for s in thread.call(receiver.journal.sessions(limit=1000))}


def _submit(port: int, queued_as: re.Pattern[str], drive: Drive, report: Report) -> None:
    """Hand the drive's message to the MTA on `port`; its queue id from the DATA reply."""
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
            "127.0.0.1", port, local_hostname=drive.submit_helo, timeout=10
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
        report.skipped.append((_name(drive), f"the relay did not take the message: {exc}"))
        return
    queued = queued_as.search(text.decode("utf-8", "replace"))
    if code != 250 or queued is None:
        report.skipped.append((_name(drive), f"the relay did not queue it: {code} {text!r}"))
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
                _keep(drive, dsns[queue_id], logged, catalogue, report, "postfix")
    for drive in waiting.values():
        report.skipped.append((_name(drive), f"no outcome within {BATCH_TIMEOUT:.0f} s"))


def _keep(
    drive: Drive, dsn: str, line: str, catalogue: Catalogue, report: Report, mta: str
) -> None:
    reply = diagnostic(dsn)
    if reply is None:
        report.skipped.append((_name(drive), f"{mta}'s bounce has no Diagnostic-Code"))
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
            # The reply is another entry's: kept out, so a group is one entry's reply.
            report.mismatched.append(
                f"{mta} {drive.entry}: reproduces {entry.policy}/{entry.outcome}, "
                f"the journal says {policy}/{outcome}"
            )
            return
    report.bounces.append(Bounce(drive, family, group, policy, outcome, dsn, line, reply, mta))


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
    for b in sorted(bounces, key=lambda b: (b.group, b.drive.origin, b.mta, b.drive.n)):
        origin = b.drive.origin
        dsn = "\n".join(line.rstrip() for line in b.dsn.strip("\n").split("\n")) + "\n"
        forms = [(f"{b.mta}-dsn:{origin}", dsn), (f"{b.mta}-log:{origin}", b.log.strip())]
        if b.mta == "postfix":
            forms.append((f"reply:{origin}", b.reply))
        else:
            # Exim's is a bounce message (its report part is RFC 3464's); the reply it
            # quotes is the receiver's, kept once, from Postfix's bounce of that case.
            forms[0] = (f"exim-bounce:{origin}", dsn)
        for source, text in forms:
            out.append({"family": b.family, "input": text, "source": source, "group": b.group})
    return out


HEADER = """\
# Real bounces written by real MTAs relaying to strictmx (generate_mta.py beside this file,
# run as root, rewrites it; do not edit by hand). Per refused case, Postfix 3.7: the DSN it
# returned to the sender, its own status= log line, and the reply from the DSN's
# Diagnostic-Code; Exim 4.96: its bounce message and its `**` log line (`==` for a 4xx).
# `family` is what strictmx's journal recorded for the session (the family of the policy
# whose refusal was sent), never what explain says. Queue ids, dates and ports vary per run.
"""


def write(bounces: Sequence[Bounce], path: Path) -> None:
    kept = items(bounces)
    out = [HEADER, "items:\n" if kept else "items: []\n"]
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
    parser.add_argument(
        "--mta", nargs="*", default=["postfix", "exim"], help="which relays (postfix, exim)"
    )
    args = parser.parse_args(argv)
    if UNAVAILABLE is not None:
        print(f"cannot run Postfix here: {UNAVAILABLE}", file=sys.stderr)
        return 2
    mtas = list(args.mta)
    if "exim" in mtas and exim.UNAVAILABLE is not None:
        print(f"no Exim bounces: {exim.UNAVAILABLE}", file=sys.stderr)
        mtas.remove("exim")
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
    for mta in mtas:
        for start in range(0, len(drives), BATCH):
            run_batch(drives[start : start + BATCH], catalogue, report, mta)
            print(f"  {mta} {min(start + BATCH, len(drives))}/{len(drives)}", flush=True)
    write(report.bounces, args.output)
    kept = items(report.bounces)
    print(f"wrote {args.output}: {len(kept)} items from {len(report.bounces)} bounces")
    print(f"accepted (no bounce): {len(report.accepted)}: {', '.join(report.accepted)}")
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
