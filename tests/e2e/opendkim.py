"""A private OpenDKIM signing milter: the signer a staging Postfix hands its mail to.

Debian's `opendkim` package provides the binary; everything else is the instance's own,
under one temporary directory: opendkim.conf and the private key, an RSA 2048 key made
here with `cryptography`, so no key of the package or of `opendkim-genkey` is involved.
The milter listens on a free loopback port (`Socket inet:PORT@127.0.0.1`) in the
foreground (`-f`), so its process is the one started here and is stopped by that PID; the
package's system service is never touched.

OpenDKIM logs only through syslog; `Syslog no` keeps it off the machine's log, and its
stderr (where a bad configuration or key is reported before it listens) is kept in the
instance's directory and shown when it fails to start.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .postfix import free_port

_SBIN = os.pathsep.join(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
OPENDKIM = shutil.which("opendkim", path=_SBIN)
#: The unprivileged account Debian's package creates; the milter drops to it when
#: started as root, as the packaged service does.
USER = "opendkim"

POLL = 0.02  # seconds between connection attempts while the milter starts


def _unavailable() -> str | None:
    if OPENDKIM is None:
        return "opendkim is not installed (apt-get install opendkim opendkim-tools)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            return f"the {USER} account of Debian's opendkim package is missing"
    return None


#: Why OpenDKIM cannot run here, or None when it can.
UNAVAILABLE = _unavailable()


class OpenDKIM:
    """One private OpenDKIM in sign mode: `start()`, point a milter client at `socket`,
    publish `key_record` at `key_name`, `stop()`."""

    def __init__(
        self,
        domain: str,
        selector: str,
        *,
        canonicalization: str = "relaxed/relaxed",
        key_bits: int = 2048,
    ) -> None:
        self.domain = domain
        self.selector = selector
        self.port = free_port()
        # Made world-searchable so the milter still reads its files after dropping to the
        # opendkim account; the private key itself stays readable by that account only.
        self.root = Path(tempfile.mkdtemp(prefix="strictmx-opendkim-"))
        self.root.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        self.config = self.root / "opendkim.conf"
        self.key_file = self.root / f"{selector}.private"
        self.stderr_file = self.root / "stderr"
        private = rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
        self.private_pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public_der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        #: The TXT record to publish at `key_name` (RFC 6376 §3.6.1).
        self.key_record = f"v=DKIM1; k=rsa; p={base64.b64encode(public_der).decode()}"
        self.canonicalization = canonicalization
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def key_name(self) -> str:
        """Where verifiers look the key up: `selector._domainkey.domain`."""
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def milter(self) -> str:
        """The milter address as Postfix's `smtpd_milters` names it."""
        return f"inet:127.0.0.1:{self.port}"

    # -- life -----------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> OpenDKIM:
        self.key_file.write_bytes(self.private_pem)
        # OpenDKIM refuses a key others can read (RequireSafeKeys, on by default).
        self.key_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
        lines = {
            "Mode": "s",
            "Domain": self.domain,
            "Selector": self.selector,
            "KeyFile": str(self.key_file),
            "Socket": f"inet:{self.port}@127.0.0.1",
            "Canonicalization": self.canonicalization,
            "SignatureAlgorithm": "rsa-sha256",
            # Postfix connects from loopback: mail it relays counts as ours, to be signed.
            "InternalHosts": "127.0.0.0/8",
            "Syslog": "no",
            "Background": "no",
            "UMask": "007",
            # The safety check walks the key's path up to /, and /tmp is world-writable by
            # design; the key's own mode (0600, owned by the milter's account) still holds.
            "RequireSafeKeys": "no",
        }
        if os.geteuid() == 0:
            entry = pwd.getpwnam(USER)
            os.chown(self.key_file, entry.pw_uid, entry.pw_gid)
            lines["UserID"] = f"{USER}:{USER}"
        self.config.write_text("".join(f"{key} {value}\n" for key, value in lines.items()))
        assert OPENDKIM is not None
        with self.stderr_file.open("wb") as stderr:
            self.process = subprocess.Popen(
                [OPENDKIM, "-f", "-x", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        self._wait_listening(timeout)
        return self

    def _wait_listening(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                seen = f"opendkim exited ({self.process.returncode}) before listening:\n"
                seen += self.excerpt()
                self.stop()
                raise AssertionError(seen)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                seen = self.excerpt()
                self.stop()
                raise AssertionError(
                    f"opendkim did not listen on 127.0.0.1:{self.port} within {timeout:g}s:\n{seen}"
                )
            time.sleep(POLL)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the milter (the process started here, by its PID), remove its files."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                self._wait_exit(timeout)
        finally:
            self.process = None
            shutil.rmtree(self.root, ignore_errors=True)

    def _wait_exit(self, timeout: float) -> None:
        # libmilter notices a stop request when its listener wakes: at a new connection,
        # else at its poll timeout (5 s). A connection made before the signal is handled
        # does not count, so knock until the process is gone.
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait(timeout=timeout)
                return
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=POLL)

    def excerpt(self) -> str:
        try:
            text = self.stderr_file.read_text(errors="replace").strip()
        except FileNotFoundError:
            text = ""
        config = self.config.read_text() if self.config.exists() else "(not written)"
        return f"--- opendkim stderr ---\n{text or '(empty)'}\n--- {self.config} ---\n{config}"
