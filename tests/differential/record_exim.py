"""Ask a private Exim 4.96 what it answers, and write the probe table the `exim` dialect cites.

    .venv/bin/python -m tests.differential.record_exim [OUTPUT]

Each probe is one SMTP session over a raw socket: the greeting is read, then each step is
sent as is and one reply (or the close) is read before the next step. Probes that need
another setting than the persona's (a small message size, a short timeout) run against their
own instance. The output (default tests/differential/exim-recording.txt) lists, per probe,
what was sent (`C:`) and what Exim answered (`S:`), with the instance's settings.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.differential.exim import Exim

RECORDING_PATH = Path(__file__).with_name("exim-recording.txt")

#: How long a step waits for its reply; Exim answers loopback in milliseconds, and a step
#: that gets no reply (a message line) says so in the table.
REPLY_TIMEOUT = 3.0
#: After the last step: how long to wait for more, and for how many more replies at most.
LINGER = 0.3
MAX_TRAILING = 20
_LAST_LINE = re.compile(rb"^\d{3}(?: |$)")

E = "EHLO mail.example.net"
MAIL = "MAIL FROM:<a@example.net>"
RCPT = "RCPT TO:<alice@strictmx.test>"
MESSAGE = "Subject: probe\r\n\r\nA probe message.\r\n.\r\n"


@dataclass(frozen=True)
class Probe:
    name: str
    steps: Sequence[str | bytes]
    settings: Mapping[str, str] = field(default_factory=dict)
    #: Send the first step before reading the greeting (an early talker).
    early: bool = False
    #: "spool": the instance's spool cannot take a message (its input directory is a file).
    breaks: str | None = None


#: A step that is not sent: the probe starts TLS on the connection here.
TLS = b"<TLS handshake>"
#: Settings of an instance that offers STARTTLS (its certificate is made by `record`).
TLS_SETTINGS = {"tls_advertise_hosts": "*"}


def _line(step: str | bytes) -> bytes:
    """A str step is a command line (CRLF added); bytes are sent exactly."""
    return step if isinstance(step, bytes) else step.encode("latin-1") + b"\r\n"


PROBES: list[Probe] = [
    Probe("greeting", ["QUIT"]),
    # HELO / EHLO
    Probe("helo-ok", ["HELO mail.example.net"]),
    Probe("ehlo-ok", [E]),
    Probe("helo-empty", ["HELO"]),
    Probe("ehlo-empty", ["EHLO"]),
    Probe("helo-underscore", ["HELO mail_server.example.net"]),
    Probe("ehlo-underscore", ["EHLO mail_server.example.net"]),
    Probe("helo-two-words", ["HELO mail.example.net extra"]),
    Probe("helo-at", ["HELO mail@example.com"]),
    Probe("helo-8bit", [b"HELO m\xc3\xa4il.example.net\r\n"]),
    Probe("helo-literal", ["HELO [127.0.0.1]"]),
    Probe("helo-bad-literal", ["HELO [999.1.1.1]"]),
    Probe("ehlo-twice", [E, E]),
    # Sequence
    Probe("mail-before-helo", [MAIL]),
    Probe("rcpt-before-mail", [E, RCPT]),
    Probe("rcpt-before-helo", [RCPT]),
    Probe("data-before-helo", ["DATA"]),
    Probe("data-before-mail", [E, "DATA"]),
    Probe("data-before-rcpt", [E, MAIL, "DATA"]),
    Probe("mail-nested", [E, MAIL, MAIL]),
    Probe("data-no-valid-rcpt", [E, MAIL, "RCPT TO:<x@example.org>", "DATA"]),
    # MAIL grammar
    Probe("mail-ok", [E, MAIL]),
    Probe("mail-null", [E, "MAIL FROM:<>"]),
    Probe("mail-no-arg", [E, "MAIL"]),
    Probe("mail-from-only", [E, "MAIL FROM:"]),
    Probe("mail-no-colon", [E, "MAIL FROM <a@example.net>"]),
    Probe("mail-from-only-helo", ["HELO mail.example.net", "MAIL FROM:"]),
    Probe("mail-space-local", [E, "MAIL FROM:<a b@example.net>"]),
    Probe("mail-unclosed", [E, "MAIL FROM:<a@example.net"]),
    Probe("mail-no-brackets", [E, "MAIL FROM:a@example.net"]),
    Probe("mail-no-domain", [E, "MAIL FROM:<a@>"]),
    Probe("mail-unqualified", [E, "MAIL FROM:<alice>"]),
    Probe("mail-8bit", [E, b"MAIL FROM:<j\xc3\xb6rg@example.net>\r\n"]),
    Probe("mail-8bit-smtputf8", [E, b"MAIL FROM:<j\xc3\xb6rg@example.net> SMTPUTF8\r\n"]),
    Probe("mail-source-route", [E, "MAIL FROM:<@relay.example.net:a@example.net>"]),
    Probe("mail-quoted", [E, 'MAIL FROM:<"a b"@example.net>']),
    Probe("mail-trailing-junk", [E, "MAIL FROM:<a@example.net> junk"]),
    # ESMTP parameters
    Probe("size-ok", [E, "MAIL FROM:<a@example.net> SIZE=1000"]),
    Probe("size-too-big", [E, "MAIL FROM:<a@example.net> SIZE=999999999"]),
    Probe("size-syntax", [E, "MAIL FROM:<a@example.net> SIZE=abc"]),
    Probe("size-no-value", [E, "MAIL FROM:<a@example.net> SIZE"]),
    Probe("body-ok", [E, "MAIL FROM:<a@example.net> BODY=8BITMIME"]),
    Probe("body-syntax", [E, "MAIL FROM:<a@example.net> BODY=9BIT"]),
    Probe("smtputf8-ok", [E, "MAIL FROM:<a@example.net> SMTPUTF8"]),
    Probe("smtputf8-value", [E, "MAIL FROM:<a@example.net> SMTPUTF8=yes"]),
    Probe(
        "smtputf8-not-offered",
        [E, "MAIL FROM:<a@example.net> SMTPUTF8"],
        {"smtputf8_advertise_hosts": ":"},
    ),
    Probe("smtputf8-after-helo", ["HELO mail.example.net", "MAIL FROM:<a@example.net> SMTPUTF8"]),
    Probe("body-no-value", [E, "MAIL FROM:<a@example.net> BODY"]),
    Probe("size-empty", [E, "MAIL FROM:<a@example.net> SIZE="]),
    Probe("param-unknown", [E, "MAIL FROM:<a@example.net> FOO=bar"]),
    Probe("param-unknown-two", [E, "MAIL FROM:<a@example.net> FOO=bar SIZE=10"]),
    Probe("dsn-ret-bad", [E, "MAIL FROM:<a@example.net> RET=FOO"]),
    Probe("param-after-helo", ["HELO mail.example.net", "MAIL FROM:<a@example.net> SIZE=1000"]),
    Probe("dsn-ret", [E, "MAIL FROM:<a@example.net> RET=HDRS"]),
    Probe("dsn-envid", [E, "MAIL FROM:<a@example.net> ENVID=abc"]),
    Probe("dsn-notify", [E, MAIL, "RCPT TO:<alice@strictmx.test> NOTIFY=NEVER"]),
    Probe("dsn-orcpt", [E, MAIL, "RCPT TO:<alice@strictmx.test> ORCPT=rfc822;alice@strictmx.test"]),
    Probe("auth-param", [E, "MAIL FROM:<a@example.net> AUTH=<>"]),
    Probe(
        "dsn-ret-offered",
        [E, "MAIL FROM:<a@example.net> RET=FOO"],
        {"dsn_advertise_hosts": "*"},
    ),
    Probe(
        "dsn-envid-offered",
        [E, "MAIL FROM:<a@example.net> ENVID=a b"],
        {"dsn_advertise_hosts": "*"},
    ),
    Probe(
        "dsn-envid-xtext-offered",
        [E, "MAIL FROM:<a@example.net> ENVID=a+zz"],
        {"dsn_advertise_hosts": "*"},
    ),
    Probe(
        "dsn-ok-offered",
        [
            E,
            "MAIL FROM:<a@example.net> RET=HDRS ENVID=abc",
            "RCPT TO:<alice@strictmx.test> NOTIFY=NEVER ORCPT=rfc822;alice@strictmx.test",
        ],
        {"dsn_advertise_hosts": "*"},
    ),
    Probe(
        "dsn-notify-offered",
        [E, MAIL, "RCPT TO:<alice@strictmx.test> NOTIFY=SOMETIMES"],
        {"dsn_advertise_hosts": "*"},
    ),
    Probe(
        "dsn-orcpt-offered",
        [E, MAIL, "RCPT TO:<alice@strictmx.test> ORCPT=nosemicolon"],
        {"dsn_advertise_hosts": "*"},
    ),
    # RCPT
    Probe("rcpt-ok", [E, MAIL, RCPT]),
    Probe("rcpt-postmaster", [E, MAIL, "RCPT TO:<postmaster@strictmx.test>"]),
    Probe("rcpt-postmaster-bare", [E, MAIL, "RCPT TO:<postmaster>"]),
    Probe("rcpt-unknown-user", [E, MAIL, "RCPT TO:<carol@strictmx.test>"]),
    Probe("rcpt-relay", [E, MAIL, "RCPT TO:<x@example.org>"]),
    Probe("rcpt-no-arg", [E, MAIL, "RCPT"]),
    Probe("rcpt-to-only", [E, MAIL, "RCPT TO:"]),
    Probe("rcpt-to-only-helo", ["HELO mail.example.net", MAIL, "RCPT TO:"]),
    Probe("rcpt-param-unknown", [E, MAIL, "RCPT TO:<alice@strictmx.test> FOO=x"]),
    Probe("rcpt-null", [E, MAIL, "RCPT TO:<>"]),
    Probe("rcpt-space-local", [E, MAIL, "RCPT TO:<a b@strictmx.test>"]),
    Probe("rcpt-unqualified", [E, MAIL, "RCPT TO:<bob>"]),
    Probe("rcpt-restricted", [E, MAIL, "RCPT TO:<a%b@strictmx.test>"]),
    # DATA and BDAT
    Probe("data-ok", [E, MAIL, RCPT, "DATA"]),
    Probe("data-arg", [E, MAIL, RCPT, "DATA now"]),
    Probe("queued", [E, MAIL, RCPT, "DATA", MESSAGE.encode()]),
    Probe(
        "too-big",
        [E, MAIL, RCPT, "DATA", b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 40 + b".\r\n"],
        {"message_size_limit": "1K"},
    ),
    Probe(
        "too-big-size",
        [E, "MAIL FROM:<a@example.net> SIZE=2000"],
        {"message_size_limit": "1K"},
    ),
    Probe(
        "data-line-999",
        [E, MAIL, RCPT, "DATA", b"Subject: long\r\n\r\n" + b"y" * 999 + b"\r\n.\r\n"],
    ),
    Probe(
        "data-line-2100",
        [E, MAIL, RCPT, "DATA", b"Subject: long\r\n\r\n" + b"y" * 2100 + b"\r\n.\r\n"],
    ),
    Probe(
        "data-line-998",
        [E, MAIL, RCPT, "DATA", b"Subject: long\r\n\r\n" + b"y" * 998 + b"\r\n.\r\n"],
    ),
    Probe(
        "data-bare-lf",
        [E, MAIL, RCPT, "DATA", b"Subject: lf\r\n\r\nline one\nline two\r\n.\r\n"],
    ),
    Probe(
        "data-bare-lf-dot",
        [E, MAIL, RCPT, "DATA", b"Subject: lf\r\n\r\nline one\n.\n"],
    ),
    Probe("bdat-ok", [E, MAIL, RCPT, b"BDAT 28 LAST\r\nSubject: c\r\n\r\nchunked body\r\n"]),
    Probe(
        "bdat-chunks",
        [E, MAIL, RCPT, b"BDAT 14\r\nSubject: c\r\n\r\n", b"BDAT 14 LAST\r\nchunked body\r\n"],
    ),
    Probe(
        "bdat-zero-last",
        [E, MAIL, RCPT, b"BDAT 28\r\nSubject: c\r\n\r\nchunked body\r\n", "BDAT 0 LAST"],
    ),
    Probe("bdat-bad-last", [E, MAIL, RCPT, "BDAT 5 FIRST"]),
    Probe("bdat-syntax", [E, MAIL, RCPT, "BDAT x"]),
    Probe(
        "bdat-too-big",
        [E, MAIL, RCPT, b"BDAT 2000\r\n" + b"z" * 2000, b"BDAT 3 LAST\r\nabc"],
        {"message_size_limit": "1K"},
    ),
    Probe("bdat-no-arg", [E, MAIL, RCPT, "BDAT"]),
    Probe("bdat-before-mail", [E, b"BDAT 5 LAST\r\nhello"]),
    Probe("bdat-before-rcpt", [E, MAIL, b"BDAT 5 LAST\r\nhello"]),
    Probe("bdat-then-data", [E, MAIL, RCPT, b"BDAT 5\r\nhello", "DATA"]),
    Probe("bdat-then-rcpt", [E, MAIL, RCPT, b"BDAT 5\r\nhello", "RCPT TO:<bob@strictmx.test>"]),
    Probe("bdat-after-helo", ["HELO mail.example.net", MAIL, RCPT, b"BDAT 5 LAST\r\nhello"]),
    Probe(
        "bdat-not-offered",
        [E, MAIL, RCPT, b"BDAT 5 LAST\r\nhello"],
        {"chunking_advertise_hosts": ":"},
    ),
    # Other commands
    Probe("rset", [E, "RSET"]),
    Probe("rset-arg", [E, "RSET now"]),
    Probe("noop", [E, "NOOP"]),
    Probe("noop-arg", [E, "NOOP anything"]),
    Probe("quit-arg", [E, "QUIT now"]),
    Probe("vrfy", [E, "VRFY alice"]),
    Probe("vrfy-address", [E, "VRFY <alice@strictmx.test>"]),
    Probe("vrfy-empty", [E, "VRFY"]),
    Probe("vrfy-bad", [E, "VRFY <a b@strictmx.test>"]),
    Probe("vrfy-bad-open", [E, "VRFY <@"]),
    Probe("vrfy-allowed", [E, "VRFY <alice@strictmx.test>"], {"acl_smtp_vrfy": "acl_accept"}),
    Probe(
        "vrfy-allowed-unknown", [E, "VRFY <carol@strictmx.test>"], {"acl_smtp_vrfy": "acl_accept"}
    ),
    Probe("expn-allowed", [E, "EXPN alice"], {"acl_smtp_expn": "acl_accept"}),
    Probe("etrn-allowed", [E, "ETRN example.net"], {"acl_smtp_etrn": "acl_accept"}),
    Probe("etrn-allowed-empty", [E, "ETRN"], {"acl_smtp_etrn": "acl_accept"}),
    Probe("expn", [E, "EXPN staff"]),
    Probe("expn-empty", [E, "EXPN"]),
    Probe("help", [E, "HELP"]),
    Probe("help-arg", [E, "HELP MAIL"]),
    Probe("etrn", [E, "ETRN example.net"]),
    Probe("etrn-empty", [E, "ETRN"]),
    Probe("etrn-before-helo", ["ETRN #example.net"]),
    Probe("etrn-in-mail", [E, MAIL, "ETRN #example.net"]),
    Probe("etrn-in-mail-allowed", [E, MAIL, "ETRN #example.net"], {"acl_smtp_etrn": "acl_accept"}),
    Probe("starttls", [E, "STARTTLS"]),
    Probe("starttls-arg", [E, "STARTTLS now"]),
    Probe("starttls-offered", [E, "STARTTLS", TLS, E, "STARTTLS"], TLS_SETTINGS),
    Probe("starttls-offered-arg", [E, "STARTTLS now"], TLS_SETTINGS),
    Probe("starttls-active-arg", [E, "STARTTLS", TLS, E, "STARTTLS now"], TLS_SETTINGS),
    Probe("starttls-before-ehlo", ["STARTTLS"], TLS_SETTINGS),
    Probe("auth", [E, "AUTH PLAIN AGFAAGI="]),
    Probe("auth-empty", [E, "AUTH"]),
    Probe("xclient", [E, "XCLIENT ADDR=192.0.2.1"]),
    Probe("xforward", [E, "XFORWARD"]),
    Probe("xforward-name", [E, "XFORWARD NAME=x.example.net"]),
    # Unknown commands, junk, limits
    Probe("unknown", [E, "FOO"]),
    Probe("unknown-before-helo", ["FOO"]),
    Probe("unknown-cutoff", [E, "FOO", "BAR", "BAZ", "QUX"]),
    Probe("unknown-reset-by-good", [E, "FOO", "BAR", "NOOP", "BAZ", "QUX"]),
    Probe("get", ["GET / HTTP/1.0"]),
    Probe("post", ["POST / HTTP/1.0"]),
    Probe("connect", ["CONNECT example.net:25 HTTP/1.0"]),
    Probe("header-as-command", [E, "Subject: hello"]),
    Probe("lowercase", ["ehlo mail.example.net", "mail from:<a@example.net>"]),
    Probe("8bit-verb", [b"\xc3\x84HLO mail.example.net\r\n"]),
    Probe("nul-in-command", [E, b"NOOP a\x00b\r\n"]),
    Probe("empty-line", [E, ""]),
    Probe("unknown-cutoff-mail", [E, "MAIL", "MAIL", "MAIL", "MAIL"]),
    Probe("synprot-cutoff", [E, "MAIL FROM:", "MAIL FROM:", "MAIL FROM:", "MAIL FROM:"]),
    Probe("synprot-helo", ["HELO", "HELO", "HELO", "HELO"]),
    Probe("synprot-sequence", [E, "RCPT TO:<a@strictmx.test>", "DATA", "RCPT TO:<b@x>", "DATA"]),
    Probe(
        "nonmail-cutoff",
        [E] + ["NOOP"] * 12,
    ),
    Probe("nonmail-helo", ["HELO a.example.net"] * 12),
    Probe("nonmail-vrfy", [E] + ["VRFY alice"] * 12),
    Probe("nonmail-rset", [E] + ["RSET"] * 12),
    Probe("line-600", [E, "NOOP " + "x" * 600]),
    Probe("line-2100", [E, "NOOP " + "x" * 2100]),
    Probe("line-10000", [E, "NOOP " + "x" * 10000]),
    Probe("line-16383", [E, "NOOP " + "x" * 16378]),
    Probe("line-16384", [E, "NOOP " + "x" * 16379]),
    Probe("line-17000", [E, "NOOP " + "x" * 17000]),
    Probe("mail-line-600", [E, "MAIL FROM:<" + "a" * 580 + "@example.net>"]),
    Probe("bare-lf-command", [b"EHLO mail.example.net\n", b"NOOP\n"]),
    Probe("bare-cr-command", [E, b"NOOP\rNOOP\r\n"]),
    Probe("early-talker", [b"EHLO mail.example.net\r\n"], early=True),
    Probe(
        "sync-after-helo",
        [
            "HELO mail.example.net",
            b"MAIL FROM:<a@example.net>\r\nRCPT TO:<alice@strictmx.test>\r\n",
        ],
    ),
    Probe(
        "pipelined-after-ehlo",
        [E, b"MAIL FROM:<a@example.net>\r\nRCPT TO:<alice@strictmx.test>\r\nDATA\r\n"],
    ),
    Probe("pipelined-rset-noop", [E, b"RSET\r\nNOOP\r\nQUIT\r\n"]),
    Probe("timeout", [E], {"smtp_receive_timeout": "2s"}),
    Probe(
        "timeout-in-data",
        [E, MAIL, RCPT, "DATA", b"Subject: slow\r\n"],
        {"smtp_receive_timeout": "2s"},
    ),
    Probe("queue-error", [E, MAIL, RCPT, "DATA", MESSAGE.encode()], breaks="spool"),
    Probe("internal-error", [E, MAIL, RCPT], {"acl_smtp_rcpt": "acl_broken"}),
    Probe("internal-error-connect", [E], {"acl_smtp_connect": "acl_broken"}),
]


def _read_reply(sock: socket.socket, buffer: bytearray, timeout: float) -> tuple[list[str], bool]:
    """One reply's lines from `buffer` and the socket; True when the peer closed."""
    deadline = time.monotonic() + timeout
    while True:
        lines = buffer.split(b"\r\n")
        for count, line in enumerate(lines[:-1], start=1):
            if _LAST_LINE.match(line):
                reply = [ln.decode("latin-1") for ln in lines[:count]]
                del buffer[: sum(len(ln) + 2 for ln in lines[:count])]
                return reply, False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return [ln.decode("latin-1") for ln in lines if ln], False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            return [ln.decode("latin-1") for ln in buffer.split(b"\r\n") if ln], True
        buffer += chunk


def _shown(step: str | bytes) -> str:
    text = _line(step).decode("latin-1")
    if len(text) > 120:
        text = f"{text[:60]}...[{len(text)} octets]...{text[-20:]}"
    return repr(text)[1:-1]


def play(port: int, probe: Probe, linger: float = LINGER) -> list[str]:
    """One probe's session: what was sent (`C:`) and answered (`S:`), and who closed."""
    out: list[str] = []
    buffer = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        sock: socket.socket = plain
        steps = list(probe.steps)
        if probe.early:
            sock.sendall(_line(steps[0]))
            out.append(f"C: {_shown(steps[0])}   (before the greeting)")
            steps = steps[1:]
        reply, closed = _read_reply(sock, buffer, REPLY_TIMEOUT)
        out += [f"S: {ln}" for ln in reply]
        for step in steps:
            if closed:
                break
            if step == TLS:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock)
                out.append(f"C: ({sock.version()} handshake done)")
                continue
            try:
                sock.sendall(_line(step))
            except OSError as exc:
                out.append(f"C: {_shown(step)}   (send failed: {exc.strerror})")
                closed = True
                break
            out.append(f"C: {_shown(step)}")
            wait = 10.0 if probe.name == "timeout" else REPLY_TIMEOUT
            reply, closed = _read_reply(sock, buffer, wait)
            out += [f"S: {ln}" for ln in reply] or ["S: (no reply)"]
        if probe.name == "timeout":
            reply, closed = _read_reply(sock, buffer, 10.0)
            out += [f"S: {ln}" for ln in reply]
        # What else Exim says unasked (pipelined replies, a close), within `linger`.
        for _ in range(MAX_TRAILING):
            if closed:
                break
            reply, closed = _read_reply(sock, buffer, linger)
            if not reply:
                break
            out += [f"S: {ln}" for ln in reply]
        out.append("-- closed by Exim" if closed else "-- open (probe hung up)")
    return out


def _certificate(folder: Path) -> dict[str, str]:
    """A throwaway self-signed certificate, readable by Exim's user, for STARTTLS probes."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mx.strictmx.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    folder.chmod(0o755)
    for path in (cert, key):
        path.chmod(0o644)
    return {"tls_certificate": str(cert), "tls_privatekey": str(key)}


def _compact(lines: list[str], seen: dict[str, str], name: str) -> list[str]:
    """The EHLO reply in full the first time a probe table shows it, then by reference."""
    out: list[str] = []
    index = 0
    while index < len(lines):
        if lines[index].startswith("S: 250-"):
            end = index
            while end < len(lines) and lines[end].startswith("S: 250-"):
                end += 1
            block = "\n".join(lines[index : end + 1])
            if block in seen:
                out.append(f"S: (the EHLO reply of probe {seen[block]})")
                index = end + 1
                continue
            seen[block] = name
            out += lines[index : end + 1]
            index = end + 1
            continue
        out.append(lines[index])
        index += 1
    return out


def record(probes: Sequence[Probe] = PROBES) -> str:
    instances: dict[tuple[object, ...], Exim] = {}
    sections: list[str] = []
    seen: dict[str, str] = {}
    version = ""
    scratch = Path(tempfile.mkdtemp(prefix="strictmx-exim-cert-"))
    tls = _certificate(scratch)
    try:
        for probe in probes:
            settings = dict(probe.settings)
            if settings.get("tls_advertise_hosts") == "*":
                settings.update(tls)
            key = (*sorted(settings.items()), probe.breaks)
            if key not in instances:
                instances[key] = Exim(settings=settings).start()
                if probe.breaks == "spool":
                    # Exim makes spool/input on the first message; a file there makes
                    # the spool file impossible to create.
                    (instances[key].root / "spool" / "input").write_text("")
            exim = instances[key]
            version = exim.version
            head = f"== {probe.name}"
            if probe.settings:
                head += (
                    "   ["
                    + ", ".join(f"{k} = {v}" for k, v in sorted(probe.settings.items()))
                    + "]"
                )
            if probe.breaks == "spool":
                head += "   [spool/input is a file, not a directory]"
            lines = play(exim.port, probe)
            sections.append("\n".join([head, *_compact(lines, seen, probe.name)]))
    finally:
        for exim in instances.values():
            exim.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    intro = (
        f"# {version}, Debian exim4-daemon-light, recorded live by"
        " tests/differential/record_exim.py\n"
        "# configured like scenarios/exim-strict.yaml (tests/differential/exim.py DEFAULTS);\n"
        "# C: what was sent (CRLF shown as \\r\\n), S: what Exim answered.\n"
    )
    return intro + "\n\n".join(sections) + "\n"


def main(argv: Sequence[str]) -> int:
    target = Path(argv[0]) if argv else RECORDING_PATH
    target.write_text(record())
    print(f"{len(PROBES)} probes -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
