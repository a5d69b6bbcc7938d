"""Session state, sans-IO: who the client is, what it said, and the counters policies read.

`strictmx.receiver.smtp` fills it in as commands arrive; policies only read it (and the counters
the engine keeps). Nothing here touches a socket.
"""

from __future__ import annotations

import ipaddress
import itertools
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from .authentication import AuthResults
from .verdict import Stage, Verdict
from .world.names import ip_of

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NameStatus = Literal["lookup", "given", "unavailable", "tempunavail"]


@dataclass
class Client:
    """Who is connecting, as the policies judge it.

    `peer` is the socket's address; `address` is the simulated public address the world
    maps it to (or an XCLIENT/PROXY override); `name` is a name asserted by XCLIENT NAME,
    which replaces a PTR lookup when given. `name_status` says where the client's name
    comes from, as Postfix keeps it (XCLIENT_README): "lookup" (the world's PTR records),
    "given" (XCLIENT NAME=host), "unavailable" (NAME=[UNAVAILABLE]: no name, as a lookup
    that found none) or "tempunavail" (NAME=[TEMPUNAVAIL]: the lookup failed temporarily).
    """

    peer: str
    peer_port: int = 0
    address: str = ""
    name: str | None = None
    port: int = 0
    name_status: NameStatus = "lookup"
    proto: str | None = None
    via: str = "socket"  # socket | world | xclient | proxy

    def __post_init__(self) -> None:
        if not self.address:
            self.address = self.peer
        if self.name is not None and self.name_status == "lookup":
            self.name_status = "given"

    @property
    def ip(self) -> IPAddress:
        # Remembered there: several policies ask at every stage, for the same clients.
        return ip_of(self.address)


@dataclass
class Counters:
    """Per-session counts. Each resets as Postfix resets it (see the field comments)."""

    errors: int = 0  # every 4xx/5xx reply sent; for the whole session
    rsets: int = 0  # RSET commands; for the whole session
    junk: int = 0  # NOOP/VRFY/RSET; reset when a message is accepted
    bad_rcpts: int = 0  # rejected RCPTs; for the whole session
    rcpts_tried: int = 0  # RCPT commands; for the whole session
    unknown_commands: int = 0
    messages: int = 0  # messages accepted
    rejections: int = 0  # 5xx replies sent; never reset (the session's outcome)
    deferrals: int = 0  # 4xx replies sent; never reset


_SEQUENCE = itertools.count()


def new_session_id() -> str:
    """A session id that sorts by creation: milliseconds since the epoch, a sequence
    number, and random bits so that two receivers on one journal do not collide.

    Time-ordered keys go in at the right edge of the journal's indexes; random ones would
    touch a different page of every index for every session, and the commit writes each.
    """
    millis = time.time_ns() // 1_000_000
    return f"{millis:011x}{next(_SEQUENCE) & 0xFFFF:04x}{secrets.randbits(20):05x}"


@dataclass
class Session:
    client: Client
    id: str = field(default_factory=lambda: new_session_id())
    started: datetime | None = None
    helo: str | None = None
    helo_verb: str | None = None  # HELO or EHLO
    helo_history: list[str] = field(default_factory=list)
    esmtp: bool = False
    smtputf8: bool = False  # the current MAIL FROM asked for SMTPUTF8
    tls: bool = False
    mail_from: str | None = None
    mail_options: list[str] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)
    rcpt: str | None = None  # the RCPT being judged
    command: str = ""  # the verb being handled (RSET, NOOP, ...)
    message: bytes | None = None  # at EOD: the message as received (dot-unstuffed)
    bare_lf: bool = False  # a line of this message (or command) ended in bare LF
    #: Header lines (without CRLF) policies add to the accepted message, e.g. Received-SPF.
    add_headers: list[str] = field(default_factory=list)
    #: What SPF, DKIM, ARC and DMARC concluded about this message (see authentication.py).
    auth: AuthResults = field(default_factory=AuthResults)
    #: The TLS version negotiated by STARTTLS ("TLSv1.3"), None in clear text.
    tls_version: str | None = None
    counters: Counters = field(default_factory=Counters)
    verdicts: list[Verdict] = field(default_factory=list)
    #: delay_reject: decisive verdicts remembered by the stage that decided them.
    delayed: dict[Stage, Verdict] = field(default_factory=dict)
    #: Set by a non-delayed CONNECT rejection: every later command gets this reply.
    refused: Verdict | None = None
    tarpit: float = 0.0

    @property
    def tag(self) -> str:
        """A short per-session tag, as large providers append to replies (`- gsmtp`).

        The id's tail: its head is the time, shared by the sessions of one millisecond."""
        return self.id[-12:]

    def reset_transaction(self) -> None:
        """RSET, a new HELO/EHLO, or a finished message: forget the envelope."""
        self.mail_from = None
        self.mail_options = []
        self.rcpts = []
        self.rcpt = None
        self.message = None
        self.smtputf8 = False
        self.bare_lf = False
        self.add_headers = []
        self.auth = AuthResults()
        self.delayed.pop(Stage.MAIL, None)

    def fields(self, hostname: str) -> dict[str, object]:
        """What a reply template can say: `{ip}`, `{helo}`, `{sender}`, ..."""
        return {
            "ip": self.client.address,
            "client_name": self.client.name or "unknown",
            "helo": self.helo or "",
            "verb": self.helo_verb or "HELO",
            "sender": self.mail_from if self.mail_from is not None else "",
            "rcpt": self.rcpt or "",
            "hostname": hostname,
            "myhostname": hostname,
            "tag": self.tag,
            "session": self.id,
        }


#: Placeholders every reply template may use (see `Session.fields`).
BASE_FIELDS = frozenset(Session(Client("127.0.0.1")).fields("x"))
