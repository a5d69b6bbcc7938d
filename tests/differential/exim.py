"""A private Exim 4.96 receiver configured like the `exim-strict` persona: the live reference
for the `exim` dialect.

Debian's exim4 and postfix conflict as installed packages, so Exim is never installed here:
`fetch()` runs `apt-get download` for exim4-daemon-light, exim4-base and libidn12 and unpacks
them with `dpkg -x` into a cache directory (`$STRICTMX_EXIM_CACHE`, default
`~/.cache/strictmx/exim`) the first time a test needs Exim; later runs reuse it. The binary
looks up its compiled-in user `Debian-exim` before it reads `-C`, so the daemon runs inside
`unshare -m` with private copies of /etc/passwd and /etc/group bind-mounted over the system's
(the system files are never changed).

Everything else is the instance's own, under one temporary directory: configuration, spool,
logs and pid file. It listens on 127.0.0.1 only, on a free port, queues what it accepts
(`queue_only`: nothing is delivered) and is stopped by the PID of the daemon it started.

The configuration is the `exim-strict` persona without DNS: hostname mx.strictmx.test, the
banner the persona announces, Exim's built-in HELO syntax check, `smtp_max_unknown_commands
= 3`, Exim's defaults for `smtp_max_synprot_errors` (3), `smtp_accept_max_nonmail` (10) and
`smtp_enforce_sync` (on), stated explicitly; local domain strictmx.test with postmaster,
abuse, alice and bob; relay denied for every other domain. The RCPT ACL is the one of Exim's
default configuration (`relay not permitted`, `verify = recipient`) with the DNS checks left
out: DNSBLs, reverse lookups and sender callouts need the world strictmx simulates.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

PACKAGES = ("exim4-daemon-light", "exim4-base", "libidn12")
APT_GET = shutil.which("apt-get")
DPKG = shutil.which("dpkg")
UNSHARE = shutil.which("unshare")

#: How long the daemon may take to answer its first connection, and to exit when stopped.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POLL = 0.05


def cache_dir() -> Path:
    configured = os.environ.get("STRICTMX_EXIM_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "strictmx" / "exim"


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "a private Exim runs as root (-C with a private file, unshare -m)"
    for tool, name in ((APT_GET, "apt-get"), (DPKG, "dpkg"), (UNSHARE, "unshare")):
        if tool is None:
            return f"{name} is not available"
    return None


#: Why Exim cannot run here, or None when it can.
UNAVAILABLE = _unavailable()


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def fetch() -> Path:
    """The unpacked packages' root (`usr/sbin/exim4` inside), downloaded on first use."""
    cache = cache_dir()
    unpacked = cache / "root"
    if (unpacked / "usr" / "sbin" / "exim4").is_file():
        return unpacked
    if UNAVAILABLE is not None:
        raise RuntimeError(f"cannot fetch Exim: {UNAVAILABLE}")
    assert APT_GET is not None and DPKG is not None
    cache.mkdir(parents=True, exist_ok=True)
    # Unpack beside the cache and rename into place, so an interrupted fetch never
    # leaves a half-unpacked root that the check above would take for a good one.
    work = Path(tempfile.mkdtemp(prefix="fetch-", dir=cache))
    try:
        try:
            _run([APT_GET, "download", "-q", *PACKAGES], cwd=work)
        except RuntimeError:
            # A fresh machine may have no package lists yet.
            _run([APT_GET, "update", "-qq"])
            _run([APT_GET, "download", "-q", *PACKAGES], cwd=work)
        staging = work / "root"
        for deb in sorted(work.glob("*.deb")):
            _run([DPKG, "-x", str(deb), str(staging)])
        if not (staging / "usr" / "sbin" / "exim4").is_file():
            raise RuntimeError(f"the unpacked packages hold no usr/sbin/exim4: {work}")
        try:
            staging.rename(unpacked)
        except OSError:
            # Another run unpacked it meanwhile; theirs is as good as ours.
            if not (unpacked / "usr" / "sbin" / "exim4").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return unpacked


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


#: The user Debian's exim4 binary was built to run as; it looks the name up before -C.
EXIM_USER = "Debian-exim"
HOSTNAME = "mx.strictmx.test"
LOCAL_DOMAIN = "strictmx.test"
LOCAL_USERS = ("postmaster", "abuse", "alice", "bob")

#: Main options, each overridable per instance (a case that needs another limit, a short
#: timeout or a small message size starts its own Exim with `settings=`).
DEFAULTS: dict[str, str] = {
    "primary_hostname": HOSTNAME,
    "qualify_domain": LOCAL_DOMAIN,
    # The persona's banner; Exim's default adds the time of day, which no comparison wants.
    "smtp_banner": "$smtp_active_hostname ESMTP Exim $version_number",
    "smtp_max_unknown_commands": "3",
    "smtp_max_synprot_errors": "3",
    "smtp_accept_max_nonmail": "10",
    "smtp_enforce_sync": "true",
    # What is advertised is said here, not left to build-time defaults.
    "chunking_advertise_hosts": "*",
    "pipelining_advertise_hosts": "*",
    "pipelining_connect_advertise_hosts": ":",
    "tls_advertise_hosts": ":",
    "dsn_advertise_hosts": ":",
    "smtputf8_advertise_hosts": "*",
    # strictmx's default max_message_size, which exim-strict keeps (Exim's own is 50M).
    "message_size_limit": "10M",
    # No DNS and no ident: the persona's DNS checks are strictmx's simulated world.
    "host_lookup": ":",
    "rfc1413_hosts": ":",
    "queue_only": "true",
    "smtp_receive_timeout": "5m",
    "acl_smtp_rcpt": "acl_check_rcpt",
}

_CONFIGURE = """\
{main}
exim_user = Debian-exim
exim_group = Debian-exim
never_users = root
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
pid_file_path = {root}/exim.pid
local_interfaces = <; 127.0.0.1
daemon_smtp_ports = {port}
domainlist local_domains = {local_domain}

begin acl

acl_check_rcpt:
  accept  hosts = :
  deny    domains = +local_domains
          local_parts = ^[.] : ^.*[@%!/|]
          message = Restricted characters in address
  accept  local_parts = postmaster : abuse
          domains = +local_domains
  require message = relay not permitted
          domains = +local_domains
  require verify = recipient
  accept

# For probes that need an ACL which allows (acl_smtp_vrfy = acl_accept) or one that
# fails with a temporary error, as a broken configuration does (acl_smtp_rcpt = acl_broken).
acl_accept:
  accept

acl_broken:
  accept  condition = ${{lookup{{x}}lsearch{{/nonexistent/strictmx-no-such-file}}}}

begin routers

local_user:
  driver = accept
  domains = +local_domains
  local_parts = {local_users}
  transport = spool_only

begin transports

# Never run: queue_only keeps every accepted message in the spool.
spool_only:
  driver = appendfile
  file = {root}/mailbox
  user = Debian-exim
"""


def _private_accounts(root: Path) -> tuple[Path, Path, int, int]:
    """Copies of /etc/passwd and /etc/group that also name Exim's compiled-in user, and
    that user's uid and gid (a free id when the system has no such user)."""
    passwd = Path("/etc/passwd").read_text()
    group = Path("/etc/group").read_text()
    try:
        entry = pwd.getpwnam(EXIM_USER)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        taken = {int(line.split(":")[2]) for line in passwd.splitlines() if line.count(":") >= 3}
        taken |= {int(line.split(":")[2]) for line in group.splitlines() if line.count(":") >= 3}
        uid = gid = next(n for n in range(64000, 65000) if n not in taken)
        passwd += (
            f"{EXIM_USER}:x:{uid}:{gid}:Exim for strictmx tests:/nonexistent:/usr/sbin/nologin\n"
        )
        group += f"{EXIM_USER}:x:{gid}:\n"
    (root / "passwd").write_text(passwd)
    (root / "group").write_text(group)
    return root / "passwd", root / "group", uid, gid


class Exim:
    """One private Exim daemon: `start()`, talk SMTP to `port`, read `mainlog()`, `stop()`."""

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="strictmx-exim-"))
        self.port = free_port()
        self.settings = {**DEFAULTS, **(settings or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.version = ""
        self._stderr: IO[bytes] | None = None
        # The command that runs the unpacked exim4 in its namespace, and its environment.
        self._prefix: list[str] = []
        self._env: dict[str, str] = {}

    @property
    def configure(self) -> Path:
        return self.root / "configure"

    def start(self) -> Exim:
        """Fetch Exim if need be, write the configuration, start the daemon and wait until
        it greets; on any failure nothing is left behind (no process, no directory)."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Exim:
        packages = fetch()
        binary = packages / "usr" / "sbin" / "exim4"
        for sub in ("spool", "log"):
            (self.root / sub).mkdir()
        passwd, group, uid, gid = _private_accounts(self.root)
        main = "\n".join(f"{key} = {value}" for key, value in self.settings.items())
        self.configure.write_text(
            _CONFIGURE.format(
                main=main,
                root=self.root,
                port=self.port,
                local_domain=LOCAL_DOMAIN,
                local_users=" : ".join(LOCAL_USERS),
            )
        )
        # Exim's user owns its spool and logs once the daemon drops privileges.
        for sub in ("spool", "log"):
            os.chown(self.root / sub, uid, gid)
        self.root.chmod(0o755)
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "LD_LIBRARY_PATH": str(packages / "usr" / "lib" / "x86_64-linux-gnu"),
        }
        self._prefix = [
            UNSHARE or "unshare",
            "-m",
            "sh",
            "-c",
            # The accounts are bind-mounted in a private mount namespace only; `exec`
            # keeps one process from unshare to Exim, so its PID is the one Popen knows.
            'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@"',
            "sh",
            str(passwd),
            str(group),
            str(binary),
            "-C",
            str(self.configure),
        ]
        # -bV checks the configuration and says what is wrong with it, before any daemon.
        checked = subprocess.run(
            [*self._prefix, "-bV"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self._env,
            timeout=60,
            check=False,
        )
        if checked.returncode != 0:
            raise RuntimeError(
                f"exim -bV refused {self.configure}:\n{checked.stdout}{checked.stderr}"
            )
        self.version = checked.stdout.splitlines()[0] if checked.stdout else ""
        # -bdf: the daemon stays in the foreground, a child of this process.
        self._stderr = (self.root / "stderr").open("wb")
        self.process = subprocess.Popen(
            [*self._prefix, "-bdf", "-oX", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=self._env,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Until the daemon answers a connection (its greeting), then QUIT."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Exim exited ({self.process.returncode}) at start\n{self.excerpt()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    greeting = sock.recv(512)
                    sock.sendall(b"QUIT\r\n")
                    sock.recv(512)
                # Any reply means the daemon is serving (a connect ACL may refuse at once).
                if re.match(rb"[2-5][0-9][0-9][ -]", greeting):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Exim did not greet within {START_TIMEOUT:.0f}s\n{self.excerpt()}"
                )
            time.sleep(POLL)

    def stop(self) -> None:
        """SIGTERM to the daemon this instance started (its PID), then remove its files."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(STOP_TIMEOUT)
        finally:
            self.process = None
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
            shutil.rmtree(self.root, ignore_errors=True)

    def mainlog(self) -> str:
        try:
            return (self.root / "log" / "mainlog").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def excerpt(self, tail: int = 30) -> str:
        lines = []
        for name in ("mainlog", "rejectlog", "paniclog"):
            path = self.root / "log" / name
            if path.exists():
                lines += [
                    f"{name}: {ln}" for ln in path.read_text(errors="replace").splitlines()[-tail:]
                ]
        stderr = self.root / "stderr"
        if stderr.exists():
            lines += [
                f"stderr: {ln}" for ln in stderr.read_text(errors="replace").splitlines()[-tail:]
            ]
        shown = "\n".join(f"    {ln}" for ln in lines) or "    (empty)"
        return f"--- Exim logs under {self.root} ---\n{shown}"

    def __enter__(self) -> Exim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
