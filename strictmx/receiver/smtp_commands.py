"""The protocol's small commands, answered in the persona's dialect.

RSET, NOOP, VRFY, HELP, EXPN, AUTH, ETRN, STARTTLS, QUIT and BDAT, and EHLO's keyword
list: what each says is the dialect's (strictmx/receiver/dialect.py), so the same session
hears aiosmtpd's words from an aiosmtpd persona and Postfix's from a Postfix one. They
are functions of the SMTP session (strictmx/receiver/smtp.py's StrictSMTP, named here by
its shape, `Speaker`), kept apart so the transport stays readable.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import ssl
from typing import Any, Protocol

from aiosmtpd.smtp import Envelope

from .conversation import XCLIENT_ATTRIBUTES, Conversation, Step
from .dialect import Dialect
from .grammar import Refusal, rcpt_argument, vrfy_argument
from .smtp_auth import AuthSettings
from .verdict import Stage

#: BDAT chunks are read and dropped in pieces of at most this many octets, so a chunk
#: that cannot be kept never sits in memory whole.
_PIECE = 1 << 16
_VRFY_SYNTAX = Refusal("vrfy_syntax")


class Speaker(Protocol):
    """What these commands need from the SMTP session."""

    dialect: Dialect
    conv: Conversation
    envelope: Envelope | None
    tls_context: ssl.SSLContext | None
    data_size_limit: int | None
    enable_SMTPUTF8: bool
    command_size_limits: dict[str, int]
    _enhanced: bool
    _push_as: str | None
    _reader: asyncio.StreamReader
    #: The message being sent in BDAT chunks (None: no BDAT transaction).
    chunks: bytearray | None
    #: A chunk failed: the rest of the transaction's chunks are discarded.
    chunks_failed: bool
    #: SMTP AUTH as the scenario offers it (None: not offered).
    sasl_settings: AuthSettings | None

    async def _say(self, refusal: Refusal) -> None: ...
    async def _send_step(self, step: Step) -> None: ...
    async def _write(self, line: str) -> None: ...
    def _line(self, key: str) -> str: ...
    def _first_lines(self, key: str, **fields: str) -> tuple[str, ...]: ...
    def _hello_fields(self) -> dict[str, str]: ...
    async def _junk(self, stage: Stage) -> bool: ...
    def _has_helo(self) -> bool: ...
    def _state_tls(self) -> bool: ...
    def _may_xclient(self) -> bool: ...
    async def smtp_STARTTLS(self, arg: str) -> None: ...
    async def on_message(self, raw: bytes, *, chunked: int | None = None) -> str: ...
    async def push(self, status: str | bytes) -> None: ...
    async def authenticate(self, arg: str | None) -> None: ...
    def sasl_keyword(self) -> str | None: ...


@functools.lru_cache(maxsize=64)
def data_lines(dialect: Dialect, enhanced: bool) -> dict[str, str]:
    """DATA's replies in `dialect`, as sent (StrictSMTP.data_lines), by situation."""
    keys = {
        "helo_first": "data_no_helo",
        "need_rcpt": "data_need_rcpt",
        "no_valid_rcpt": "data_no_valid_rcpt",
        "syntax": "data_syntax",
        "ok": "data_ok",
        "too_long": "data_line_too_long",
        "too_much": "message_too_big",
    }
    return {k: dialect.replies[v].wire_lines(enhanced=enhanced)[-1] for k, v in keys.items()}


def proxy_source(proxy: Any) -> tuple[bool, tuple[str, int] | None]:
    """A PROXY header from a trusted peer: whether it is valid, and the client's address
    and port it names (None: PROXY ... UNKNOWN / LOCAL, the socket's address stands)."""
    src = getattr(proxy, "src_addr", None)
    if src is None:
        return bool(getattr(proxy, "valid", False)), None
    address = str(src)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False, None
    return True, (address, int(getattr(proxy, "src_port", 0) or 0))


async def skip_line(reader: asyncio.StreamReader, consumed: int) -> bytes:
    """Discard the rest of an over-long command line, however long, up to its end: its
    first `consumed` octets, as a line of their own (CRLF-ended)."""
    head = await reader.read(consumed)
    while True:
        try:
            await reader.readuntil()
            return head.rstrip(b"\r") + b"\r\n"
        except asyncio.LimitOverrunError as error:
            await reader.read(error.consumed)


def ehlo_lines(server: Speaker) -> tuple[str, ...]:
    """EHLO's reply: the dialect's first line and keywords in its order, those that depend
    on the session kept or dropped (STARTTLS, VRFY, ...); and the MAIL line-length
    allowances RFC 1870 §3 and RFC 6531 §3.4 add (aiosmtpd's) for SIZE and SMTPUTF8."""
    dialect = server.dialect
    lines, size, utf8 = _ehlo(
        dialect,
        server._first_lines("ehlo_ok", **server._hello_fields()),
        server.data_size_limit,
        server.enable_SMTPUTF8,
        server.tls_context is not None and not server._state_tls(),
        "XCLIENT" in dialect.ehlo_keywords and server._may_xclient(),
        server._enhanced,
        server.sasl_keyword(),
    )
    if size:
        server.command_size_limits["MAIL"] += 26
    if utf8:
        server.command_size_limits["MAIL"] += 10
    return lines


@functools.lru_cache(maxsize=256)
def _ehlo(
    dialect: Dialect,
    first: tuple[str, ...],
    size: int | None,
    smtputf8: bool,
    starttls: bool,
    xclient: bool,
    enhanced: bool,
    auth: str | None,
) -> tuple[tuple[str, ...], bool, bool]:
    """EHLO's lines for one combination of what a session is offered (a handful per
    persona: computed once each), and whether SIZE and SMTPUTF8 are among them.

    `auth`: the AUTH keyword the scenario offers now (None: none). No dialect file lists
    AUTH (none was recorded offering it), so it goes where Postfix puts it: after
    STARTTLS's place in the list (offered or not), else last."""
    session = {
        "SIZE": bool(size),
        "SMTPUTF8": smtputf8,
        "STARTTLS": starttls,
        "VRFY": dialect.vrfy,
        "ENHANCEDSTATUSCODES": enhanced,
        "XCLIENT": xclient,
        "AUTH": False,  # a dialect's own AUTH keyword: the scenario's `auth` decides
    }
    offered = []
    for keyword in dialect.ehlo_keywords:
        name = keyword.split(" ", 1)[0]
        if name == "STARTTLS" and auth is not None:
            if starttls:
                offered.append(keyword)
            offered.append(auth)
            auth = None
            continue
        if not session.get(name, True):
            continue
        if name == "SIZE":
            keyword = keyword.format(size=size)
        elif name == "XCLIENT":
            keyword = "XCLIENT " + " ".join(XCLIENT_ATTRIBUTES)
        offered.append(keyword)
    if auth is not None:
        offered.append(auth)
    lines = [*first, *(f"{first[-1][:3]} {k}" for k in offered)]
    wire = (*(f"{line[:3]}-{line[4:]}" for line in lines[:-1]), lines[-1])
    names = {k.split(" ", 1)[0] for k in offered}
    return wire, "SIZE" in names, "SMTPUTF8" in names


async def rset(server: Speaker, arg: str | None) -> None:
    if await server._junk(Stage.RSET):
        if arg:
            await server._say(Refusal("rset_syntax"))
            return
        server.envelope = Envelope()
        server.chunks, server.chunks_failed = None, False
        server.conv.reset()
        await server._write(server._line("rset_ok"))


async def noop(server: Speaker, arg: str | None) -> None:
    if await server._junk(Stage.NOOP):
        await server._write(server._line("noop_arg" if arg else "noop_ok"))


async def vrfy(server: Speaker, arg: str | None) -> None:
    if not await server._junk(Stage.VRFY):
        return
    if not server.dialect.vrfy:
        await server._say(Refusal("vrfy_disabled"))
        return
    dialect = server.dialect
    address = vrfy_argument(arg, grammar=dialect.address_grammar)
    if address == _VRFY_SYNTAX and server.enable_SMTPUTF8:  # Postfix names the option
        address = Refusal("vrfy_syntax_smtputf8")
    elif not isinstance(address, Refusal):
        sent = address  # the argument as sent: Postfix's 252 quotes it so (argv[1])
        address = _vrfy_address(sent, dialect)
        if dialect.vrfy_checks_recipient:
            step = await server.conv.vrfy(address)
            if step.reply is not None:
                await server._send_step(step)
                return
        await server._say(Refusal("vrfy_ok", {"address": address, "arg": sent}))
        return
    await server._say(address)


def _vrfy_address(sent: str, dialect: Dialect) -> str:
    """The address a VRFY argument names, as the RCPT checks take it: the grammar's
    reading of it as a RCPT path (Postfix vrfy_cmd's extract_addr: brackets dropped,
    quotes undone); the argument itself, less one pair of brackets, where the grammar
    reads no path in it."""
    path = sent if sent.startswith("<") else f"<{sent}>"
    parsed = rcpt_argument(
        "TO:" + path, grammar=dialect.address_grammar, extended=False, smtputf8=True, dsn=False
    )
    if isinstance(parsed, Refusal):
        return sent[1:-1] if sent.startswith("<") and sent.endswith(">") else sent
    return parsed.address


async def help_(server: Speaker, arg: str | None) -> None:
    # HELP is a non-mail command like NOOP: counted as junk and judged by the NOOP stage,
    # so session_limits' junk limit ends a flood of them (Exim counts HELP among its
    # nonmail commands, smtp_accept_max_nonmail; Postfix has no HELP and counts it as an
    # error; shared reference receivers.md §4).
    if await server._junk(Stage.NOOP):
        await server._say(Refusal("help"))


async def expn(server: Speaker, arg: str | None) -> None:
    await server._say(Refusal("expn"))


async def auth(server: Speaker, arg: str | None) -> None:
    if not server._has_helo():
        await server._say(Refusal("helo_first"))
    elif server.sasl_settings is None:
        await server._say(Refusal("auth_unavailable"))
    else:
        await server.authenticate(arg)


async def etrn(server: Speaker, arg: str | None) -> None:
    if not server._has_helo():
        await server._say(Refusal("etrn_helo_first"))
    elif not arg:
        await server._say(Refusal("etrn_syntax"))
    elif server.envelope is not None and server.envelope.mail_from is not None:
        await server._say(Refusal("etrn_in_mail"))
    else:  # no queue to flush for anyone (Postfix without fast_flush_domains)
        domain = arg[1:] if arg[:1] in ("@", "#") else arg  # Postfix quotes the domain alone
        await server._say(Refusal("etrn_reply", {"arg": domain}))


async def xforward(server: Speaker, arg: str | None) -> None:
    # strictmx trusts no client to forward another's attributes (Postfix's default
    # smtpd_authorized_xforward_hosts is empty); the syntax is checked first.
    await server._say(Refusal("xforward_denied" if arg else "xforward_syntax"))


async def starttls(server: Speaker, arg: str | None) -> None:
    if server._state_tls():
        # RFC 3207 §4.2: no second negotiation; aiosmtpd would say 220 and then fail the
        # handshake inside TLS. Postfix checks the syntax first: its own key says so.
        await server._say(Refusal("starttls_active_syntax" if arg else "starttls_active"))
    elif arg:
        await server._say(Refusal("starttls_syntax"))
    elif server.tls_context is None:
        await server._say(Refusal("starttls_unavailable"))
    else:  # aiosmtpd's handshake, its 220 in the dialect's words
        server._push_as = server._line("starttls_ready")
        await server.smtp_STARTTLS("")


async def quit_(server: Speaker, arg: str | None) -> None:
    key = "quit_syntax" if arg else "quit"
    closes = server.dialect.replies[key].code == 221  # Postfix: QUIT with words is QUIT
    server.conv.quit = closes
    await server._say(Refusal(key, close=closes))


def bdat_arguments(arg: str | None) -> tuple[int, bool] | None:
    """`BDAT size [LAST]` (RFC 3030 §2): the chunk's size and whether it is the last."""
    words = (arg or "").split(" ")
    if not words[0].isdigit() or len(words) > 2 or words[1:] not in ([], ["LAST"]):
        return None
    return int(words[0]), len(words) == 2


async def bdat(server: Speaker, arg: str | None) -> None:
    """BDAT (RFC 3030): the chunk is read whatever the answer, since it is on its way. A
    chunk that would make the message too big fails the transaction: later chunks are
    read and discarded up to the last, as Postfix does."""
    parsed = bdat_arguments(arg)
    if parsed is None:
        await server._say(Refusal("bdat_syntax", close=True))
        return
    size, last = parsed
    envelope = server.envelope
    if envelope is not None and envelope.rcpt_tos and server.chunks is None:
        server.chunks = bytearray()
    chunks = server.chunks
    limit = server.data_size_limit
    failed = server.chunks_failed
    too_big = chunks is not None and not failed and bool(limit and len(chunks) + size > limit)
    keep = chunks is not None and not failed and not too_big
    left = size
    while left:  # read even when dropped: the octets are not commands
        piece = await server._reader.readexactly(min(left, _PIECE))
        if keep and chunks is not None:
            chunks += piece
        left -= len(piece)
    if chunks is None:  # after MAIL, every recipient refused: as DATA (Postfix)
        no_rcpt = envelope is not None and envelope.mail_from is not None
        await server._say(Refusal("data_no_valid_rcpt" if no_rcpt else "bdat_need_rcpt"))
        return
    if not keep:
        server.chunks_failed = not last
        if last:
            server.chunks, server.envelope = None, Envelope()
            server.conv.reset()
        else:
            chunks.clear()
        if too_big:
            await server._say(Refusal("bdat_too_big"))
        else:
            await server._say(Refusal("bdat_discarded", {"size": str(size)}))
        return
    if not last:
        await server._say(Refusal("bdat_ok", {"size": str(size)}))
        return
    raw = bytes(chunks)
    server.chunks = None
    # Postfix counts the CRLF it adds to a message that does not end in one.
    counted = len(raw) + (0 if raw.endswith(b"\r\n") else 2)
    status = await server.on_message(raw, chunked=counted)
    server.envelope = Envelope()
    await server.push(status)
