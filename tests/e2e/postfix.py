"""A private Postfix instance that relays to a strictmx receiver: the staging MTA under test.

Debian's `postfix` package provides the binaries; everything else is the instance's own,
under one temporary directory: main.cf and master.cf, the queue, the data directory and
the log (`maillog_file`, written by Postfix's postlogd). Nothing system-wide is touched:
no syslog, no port 25, no chroot. The instance listens for injection on a free loopback
port, relays everything to `[127.0.0.1]:PORT` (no MX lookup) and binds its outgoing
connections to a 127.0.0.x address, which the scenario's `world.clients` turns into the
public address strictmx judges.

What Postfix made of each recipient is read from its own log (`status=sent|bounced|
deferred` with the remote reply) and queue (`postqueue -j`). Every failure message carries
the excerpt of that log, so a red test says what Postfix saw.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

_SBIN = os.pathsep.join(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
POSTFIX = shutil.which("postfix", path=_SBIN)
POSTQUEUE = shutil.which("postqueue", path=_SBIN)
SWAKS = shutil.which("swaks")


def _unavailable() -> str | None:
    if POSTFIX is None or POSTQUEUE is None:
        return "postfix is not installed (apt-get install postfix)"
    if SWAKS is None:
        return "swaks is not installed"
    if os.geteuid() != 0:
        return "a Postfix instance starts as root"
    return None


#: Why these tests cannot run here, or None when they can.
UNAVAILABLE = _unavailable()

# postfix/smtp[123]: 4F2A1C0E3B: to=<bob@strictmx.test>, relay=127.0.0.1[127.0.0.1]:2525,
#   delay=0.1, delays=0.05/0/0.02/0.03, dsn=5.5.2, status=bounced (host ... said: ...)
_STATUS = re.compile(
    r": (?P<queue_id>[0-9A-Za-z]+): to=<(?P<recipient>[^>]*)>, (?:orig_to=<[^>]*>, )?"
    r"relay=(?P<relay>[^,]+), .*?dsn=(?P<dsn>[0-9.]+), status=(?P<status>\w+) "
    r"\((?P<detail>.*)\)$"
)
_QUEUED = re.compile(r"^<-  250 .*queued as (?P<queue_id>[0-9A-Za-z]+)$", re.MULTILINE)
# Lines worth showing whatever the message: a broken configuration explains itself here.
_TROUBLE = re.compile(r"\b(warning|error|fatal|panic):")

POLL = 0.05  # seconds between reads of the log while Postfix works

T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    """One `status=` line of Postfix's log: what its smtp client made of one recipient."""

    queue_id: str
    recipient: str
    relay: str
    dsn: str
    status: str
    #: The parenthesised text: `host 127.0.0.1[127.0.0.1] said: 550 ... (in reply to
    #: RCPT TO command)` for a refusal, `250 2.0.0 Ok: queued as ...` when sent.
    detail: str


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now; Postfix binds it from master.cf moments later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _main_cf(root: Path, relay: tuple[str, int], settings: Mapping[str, str]) -> dict[str, str]:
    relay_host, relay_port = relay
    config: dict[str, str] = {
        "compatibility_level": "3.6",
        "queue_directory": str(root / "queue"),
        "data_directory": str(root / "data"),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        # postlogd writes here instead of syslog; a path outside /var must be allowed.
        "maillog_file": str(root / "maillog"),
        "maillog_file_prefixes": str(root),
        "myhostname": "staging.strictmx.test",
        "myorigin": "$myhostname",
        "mydestination": "",
        # Nothing is delivered here: no alias or local-recipient tables to open.
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "smtpd_peername_lookup": "no",
        "biff": "no",
        # Everything goes to strictmx; the brackets say "this host, no MX lookup".
        "relayhost": f"[{relay_host}]:{relay_port}",
        "smtp_dns_support_level": "disabled",
        # One delivery, one SMTP session: a cached session would carry the receiver's
        # old world into a retry.
        "smtp_connection_cache_on_demand": "no",
        # Bounces to the test senders' domain are not strictmx's business: drop them.
        "transport_maps": "inline:{ {example.net = discard:bounce for a test sender} }",
    }
    config.update(settings)
    return config


# The services a relay-only instance uses; no chroot (column 5 "n"), smtpd on loopback.
# tlsmgr serves the smtp client's TLS (its PRNG and session cache) when a test turns
# STARTTLS on (`smtp_tls_security_level`); without it the client gives TLS up.
_MASTER_CF = """\
127.0.0.1:{smtpd_port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
tlsmgr    unix  - - n 1000? 1 tlsmgr
"""


class Postfix:
    """One private Postfix instance: `start()`, `submit()` mail, read what it did, `stop()`."""

    def __init__(
        self,
        relay: tuple[str, int],
        *,
        helo_name: str = "mail.example.net",
        bind_address: str = "127.0.0.1",
        settings: Mapping[str, str] | None = None,
        services: str = "",
    ) -> None:
        # Postfix's daemons run as `postfix` and must reach the queue: pytest's own
        # temporary directories are private to root, so this one is made world-searchable.
        self.root = Path(tempfile.mkdtemp(prefix="strictmx-postfix-"))
        self.root.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        self.config_dir = self.root / "etc"
        self.config_dir.mkdir()
        # `postfix` enters the queue directory before anything else; the rest of the
        # tree (maildrop, active, ..., the data directory) is made by its first start.
        (self.root / "queue").mkdir()
        self.maillog = self.root / "maillog"
        self.smtpd_port = free_port()
        self.settings = _main_cf(
            self.root,
            relay,
            {"smtp_helo_name": helo_name, "smtp_bind_address": bind_address, **(settings or {})},
        )
        #: master.cf lines added after the standard services (transports of a caller's own).
        self.services = services
        self.running = False

    # -- life -----------------------------------------------------------------------------
    def start(self) -> Postfix:
        main_cf = "".join(f"{key} = {value}\n" for key, value in self.settings.items())
        (self.config_dir / "main.cf").write_text(main_cf)
        master_cf = _MASTER_CF.format(smtpd_port=self.smtpd_port) + self.services
        (self.config_dir / "master.cf").write_text(master_cf)
        # Postfix re-reads a main.cf changed within the last second until it settles
        # (300 ms naps, about two seconds): date the fresh files back instead.
        settled = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.config_dir / name, (settled, settled))
        # `master -w` inside `postfix start` returns once the listeners are open.
        self._postfix("start")
        self.running = True
        return self

    def stop(self) -> None:
        """Stop this instance's master (its pid file, not a process name), remove its files."""
        try:
            if self.running:
                self._postfix("stop")
                self.running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _postfix(self, *args: str) -> None:
        assert POSTFIX is not None
        done = self._run([POSTFIX, "-c", str(self.config_dir), *args])
        if done.returncode != 0:
            raise AssertionError(
                f"postfix {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}\n{self.excerpt()}"
            )

    def _run(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "PATH": os.pathsep.join([_SBIN, os.environ.get("PATH", "")])},
        )

    # -- mail in --------------------------------------------------------------------------
    def submit(
        self,
        sender: str,
        recipients: Iterable[str],
        *,
        headers: Iterable[str] = (),
        body: str = "A message relayed by Postfix to strictmx.",
    ) -> str:
        """Hand a message to Postfix's smtpd with swaks; the queue id Postfix gave it."""
        assert SWAKS is not None
        argv = [
            SWAKS,
            "--server",
            f"127.0.0.1:{self.smtpd_port}",
            "--timeout",
            "10",
            "--helo",
            "app.example.net",
            "--from",
            sender,
            "--to",
            ",".join(recipients),
            "--body",
            body,
        ]
        for header in headers:
            argv += ["--header", header]
        done = self._run(argv, timeout=30)
        queued = _QUEUED.search(done.stdout)
        if done.returncode != 0 or queued is None:
            raise AssertionError(
                f"Postfix did not queue the message (swaks exit {done.returncode}):\n"
                f"{done.stdout}{done.stderr}\n{self.excerpt()}"
            )
        return queued["queue_id"]

    # -- what Postfix saw -----------------------------------------------------------------
    def log_lines(self) -> list[str]:
        try:
            return self.maillog.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def deliveries(self, queue_id: str) -> list[Delivery]:
        """Every `status=` line for the message so far, oldest first."""
        found = []
        for line in self.log_lines():
            match = _STATUS.search(line)
            if match and match["queue_id"] == queue_id:
                found.append(Delivery(**match.groupdict()))
        return found

    def wait(
        self,
        queue_id: str,
        until: Callable[[list[Delivery]], bool],
        what: str,
        timeout: float = 30.0,
    ) -> list[Delivery]:
        """Read the log until `until(deliveries)` holds; fail with the log excerpt if not."""
        return _poll(
            lambda: self.deliveries(queue_id),
            until,
            timeout,
            lambda: (
                f"Postfix did not log {what} for {queue_id} within {timeout:.0f}s\n"
                + self.excerpt(queue_id)
            ),
        )

    def outcome(self, queue_id: str, recipient: str, status: str | None = None) -> Delivery:
        """The first `status=` line for `recipient` (of that status, when given)."""

        def match(d: Delivery) -> bool:
            return d.recipient == recipient and status in (None, d.status)

        found = self.wait(
            queue_id,
            lambda ds: any(match(d) for d in ds),
            f"status={status or '*'} for <{recipient}>",
        )
        return next(d for d in found if match(d))

    def queue(self) -> list[dict[str, Any]]:
        """`postqueue -j`: one JSON object per message still queued."""
        assert POSTQUEUE is not None
        done = self._run([POSTQUEUE, "-c", str(self.config_dir), "-j"])
        if done.returncode != 0:
            raise AssertionError(f"postqueue -j failed: {done.stderr}\n{self.excerpt()}")
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def wait_queue(
        self, until: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Ask `postqueue -j` until `until(queue)` holds: the queue manager moves a message
        after its delivery agent has logged the outcome."""
        return _poll(
            self.queue,
            until,
            timeout,
            lambda: (
                f"Postfix's queue did not show {what} within {timeout:.0f}s: {self.queue()}\n"
                + self.excerpt()
            ),
        )

    def excerpt(self, queue_id: str | None = None, tail: int = 40) -> str:
        """Postfix's log as a failure message shows it: the message's lines and any
        warning or error, or (without a queue id) the last `tail` lines."""
        lines = self.log_lines()
        if queue_id is not None:
            lines = [ln for ln in lines if f" {queue_id}: " in ln or _TROUBLE.search(ln)]
        else:
            lines = lines[-tail:]
        shown = "\n".join(f"    {line}" for line in lines) or "    (empty)"
        return f"--- Postfix log {self.maillog} ---\n{shown}"


def _poll(
    read: Callable[[], T], until: Callable[[T], bool], timeout: float, failure: Callable[[], str]
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        seen = read()
        if until(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(failure())
        time.sleep(POLL)
