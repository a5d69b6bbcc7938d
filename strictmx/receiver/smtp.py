"""The aiosmtpd SMTP subclass: stages, transcript, error counting, XCLIENT and PROXY.

aiosmtpd gives hooks for MAIL, RCPT and end of data. Strict receivers also decide at
connect time (before the greeting), at HELO before any syntax check, before DATA's 354,
and on RSET/NOOP/VRFY/unknown commands; this class adds those points:

- every reply goes through `push`, so the greeting is where CONNECT runs, and every
  4xx/5xx the client receives (aiosmtpd's own 500/501/503 included) is counted and fed
  to the ERROR stage;
- the command loop is strictmx's own (`_handle_client`): it reads every line, answers
  the lines no command sees, and hands each known command to strictmx's handler and
  the conversation before (or instead of) aiosmtpd's `smtp_*` method;
- every line read or written is in the session's transcript.

The policies themselves never see this module: they get the sans-IO `Session`.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiosmtpd.proxy_protocol import get_proxy
from aiosmtpd.smtp import SMTP, Envelope, TLSSetupException
from aiosmtpd.smtp import Session as AioSession

from .command_syntax import Refusal, mail_argument, rcpt_argument, split_command, vrfy_argument
from .conversation import XCLIENT_ATTRIBUTES, Conversation, Step
from .journal import Journal
from .persona import Persona
from .policy import Context
from .scenario import Scenario
from .session import Client, Session
from .smtp_data import read_message
from .verdict import Reply, Stage, Verdict, wire_safe

log = logging.getLogger(__name__)

#: Buffered transcript lines that force a hand-over to the journal (long sessions).
_FLUSH_LINES = 200
_REPLY_HEAD = re.compile(r"^([2-5][0-9][0-9])([ -])")

Command = Callable[[str | None], Awaitable[None]]

# Until the persona's dialect renders them (data/dialects/aiosmtpd.yaml), command_syntax's
# refusals and the lines no command sees are answered with aiosmtpd 1.4's texts, which
# clients and the tests know (aiosmtpd/smtp.py).
_AIOSMTPD_TEXTS = {
    "bad_syntax": "500 Error: bad syntax",
    "not_ascii": "500 Error: strict ASCII mode",
    "mail_syntax": "501 Syntax: MAIL FROM: <address>",
    "mail_syntax_esmtp": "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
    "rcpt_syntax": "501 Syntax: RCPT TO: <address>",
    "rcpt_syntax_esmtp": "501 Syntax: RCPT TO: <address> [SP <mail-parameters>]",
    "mail_bad_address": "553 5.1.3 Error: malformed address",
    "rcpt_bad_address": "553 5.1.3 Error: malformed address",
    "mail_nested": "503 Error: nested MAIL command",
    "body_syntax": "501 Error: BODY can only be one of 7BIT, 8BITMIME",
    "smtputf8_syntax": "501 Error: SMTPUTF8 takes no arguments",
    "smtputf8_disabled": "501 Error: SMTPUTF8 disabled",
    "size_too_big": "552 Error: message size exceeds fixed maximum message size",
    "param_unknown": "555 MAIL FROM parameters not recognized or not implemented",
    "rcpt_param_unknown": "555 RCPT TO parameters not recognized or not implemented",
    "vrfy_syntax": "501 Syntax: VRFY <address>",
    "vrfy_bad_address": "502 Could not VRFY {arg}",
    "vrfy_ok": "252 Cannot VRFY user, but will accept message and attempt delivery",
    "line_too_long": "500 Command line too long",
    "too_many_unknown": "502 5.5.1 Too many unrecognized commands, goodbye.",
    "unknown_command": '500 Error: command "{verb}" not recognized',
}
#: Unknown commands in a connection before too_many_unknown (aiosmtpd's BOGUS_LIMIT).
_UNKNOWN_LIMIT = 5


def _refusal_line(refusal: Refusal) -> str:
    return _AIOSMTPD_TEXTS[refusal.key].format_map(refusal.fields)


def _now() -> datetime:
    return datetime.now(UTC)


class _Hooks:
    """aiosmtpd's handler: the DATA hook alone. strictmx's command loop answers every
    other command itself (MAIL and RCPT through the conversation)."""

    def __dir__(self) -> list[str]:
        # aiosmtpd walks dir(handler) twice per connection (AUTH mechanisms, hooks): the
        # hook alone keeps the walk short, as StrictSMTP.__dir__ does for the protocol.
        return ["handle_DATA"]

    async def handle_DATA(self, server: StrictSMTP, session: Any, envelope: Any) -> str:
        return await server.on_message(envelope.original_content or b"")


HOOKS = _Hooks()


_AIOSMTPD_NAMES = [n for n in dir(SMTP) if n.startswith(("smtp_", "auth_"))]

#: The commands strictmx knows, each with the method that answers it (aiosmtpd's smtp_*,
#: some wrapped by a handler in `_HANDLERS`; XCLIENT is strictmx's own).
_METHODS = {n[5:]: n for n in _AIOSMTPD_NAMES if n.startswith("smtp_")} | {"XCLIENT": ""}


class Host(Protocol):
    """What a session needs from the receiver that accepted its connection (the Receiver of
    strictmx/receiver/server.py, which imports this module: so it is named here by shape)."""

    scenario: Scenario
    persona: Persona
    journal: Journal
    stopping: bool
    loop: asyncio.AbstractEventLoop | None

    @property
    def context(self) -> Context: ...

    @property
    def tls_context(self) -> ssl.SSLContext | None: ...

    @property
    def proxy_timeout(self) -> float | None: ...

    def trusts(self, peer: Any) -> bool: ...

    def session_opened(self, protocol: StrictSMTP) -> None: ...

    def session_closed(self, protocol: StrictSMTP) -> None: ...


class StrictSMTP(SMTP):
    def __dir__(self) -> list[str]:
        # aiosmtpd finds commands (smtp_*) and AUTH mechanisms (auth_*) by walking
        # dir(self) with inspect.getmembers on every connection; listing only those
        # names keeps that walk -- a large share of per-connection cost -- short.
        return list(_AIOSMTPD_NAMES)

    def __init__(self, receiver: Host) -> None:
        settings = receiver.scenario.receiver
        super().__init__(
            HOOKS,
            hostname=settings.hostname,
            ident="ESMTP",  # unused: the greeting is written by `_greet` from the banner
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=settings.smtputf8,
            tls_context=receiver.tls_context,
            timeout=settings.timeout,
            proxy_protocol_timeout=receiver.proxy_timeout,
            loop=receiver.loop,
        )
        self.receiver = receiver
        self.settings = settings
        self.journal = receiver.journal
        self.conv = Conversation(
            receiver.persona,
            receiver.context.for_session(),
            record=self._journal_verdict,
            note=self.note,
        )
        self.state: Session | None = None
        self._greeted = False
        self._reply_open = False  # inside a multi-line reply
        self._in_data = False
        self._ended = False
        # Journal writes buffered until the next message commit or the session's end.
        self._lines: list[tuple[float, str, str]] = []
        self._rcpts: list[str] = []
        self._proxied: tuple[str, int] | None = None
        self._held: list[str] = []  # continuation lines of the reply being written

    # Methods, not properties: aiosmtpd's __init__ inspects every attribute.
    def _conn(self) -> AioSession:
        """aiosmtpd's per-connection state (set from connection_made on)."""
        assert self.session is not None
        return self.session

    def _env(self) -> Envelope:
        assert self.envelope is not None
        return self.envelope

    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's DATA command, the message read in whole buffers (smtp_data.py)
        # rather than a coroutine per line; the same checks, replies and limits.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert envelope is not None
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            problem, content = await read_message(
                self._reader, self.line_length_limit, self.data_size_limit
            )
        except asyncio.CancelledError:  # the connection went away during DATA
            self._close()
            raise
        if problem is not None:
            await self.push(problem.value)
            self.envelope = Envelope()  # as after any DATA
            return
        envelope.content = envelope.original_content = content
        # The handler's DATA hook, called with the arguments aiosmtpd's own call passes
        # (tests/unit/test_smtp_data.py runs this method in a plain aiosmtpd SMTP).
        status = await self.event_handler.handle_DATA(self, self.session, envelope)
        self.envelope = Envelope()
        await self.push(status)

    # -- the command loop ---------------------------------------------------------------
    async def _handle_client(self) -> None:
        """strictmx's command loop, run by aiosmtpd's connection_made in place of its own.

        aiosmtpd stays the transport (the connection, STARTTLS's handshake, the idle
        timer); every line is read, recorded and answered here: command_syntax.py
        splits it and has the replies to lines no command sees (aiosmtpd 1.4's texts).
        """
        if self.receiver.proxy_timeout is not None:
            # The PROXY header first, within its own time (aiosmtpd/proxy_protocol.py).
            self._reset_timeout(self.receiver.proxy_timeout)
            proxy = await get_proxy(self._reader)
            self._conn().proxy_data = proxy
            if not proxy or not self.on_proxy(proxy):
                self._close()
                return
            self._reset_timeout()
        await self._greet()
        if self.state is None:  # no session could open: _greet has closed the line
            return
        unknown_left = _UNKNOWN_LIMIT
        while self.transport is not None:
            try:
                try:
                    raw = await self._reader.readuntil()
                except asyncio.LimitOverrunError as error:
                    self.note_in("<command line over the length limit>")
                    await self._skip_line(error.consumed)
                    await self._refuse_line(_AIOSMTPD_TEXTS["line_too_long"])
                    continue
                self._command_line(raw)
                line = raw.rstrip(b"\r\n")
                command = split_command(line, grammar="aiosmtpd", smtputf8=self.enable_SMTPUTF8)
                if isinstance(command, Refusal):
                    await self._refuse_line(_refusal_line(command))
                    continue
                verb, arg = command
                limit = (
                    self.command_size_limits[verb]
                    if self._conn().extended_smtp
                    else self.command_size_limit
                )
                if len(line) > limit:
                    await self._refuse_line(_AIOSMTPD_TEXTS["line_too_long"])
                    continue
                if verb not in _METHODS:
                    unknown_left -= 1
                    if unknown_left < 1:
                        await self._refuse_line(_AIOSMTPD_TEXTS["too_many_unknown"])
                        self._close()
                        continue
                    await self._refuse_line(
                        _refusal_line(Refusal("unknown_command", {"verb": verb}))
                    )
                    continue
                self._reset_timeout()  # a whole, known command: the client is alive
                await self._run(verb, arg)
            except (asyncio.CancelledError, ConnectionResetError):
                self._close()  # the connection went away mid-command
                raise
            except Exception as error:
                try:
                    status = await self.handle_exception(error)
                except Exception:
                    log.exception(
                        "session %s: handling an error failed", self.state and self.state.id
                    )
                    status = _INTERNAL_ERROR
                if isinstance(error, TLSSetupException):
                    # As aiosmtpd does: the handshake failed, the line cannot go on.
                    self._close()
                    self.connection_lost(error)
                else:
                    await self.push(status)

    async def _skip_line(self, consumed: int) -> None:
        """Discard the rest of an over-long line, however long, up to its end."""
        await self._reader.read(consumed)
        while True:
            try:
                await self._reader.readuntil()
                return
            except asyncio.LimitOverrunError as error:
                await self._reader.read(error.consumed)

    # -- connection life --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        # Plaintext the client sent after STARTTLS, which aiosmtpd drops once the
        # handshake is done (RFC 3207 §4.2, §6: it must not run inside TLS).
        injected = 0 if first else len(self._reader._buffer)  # type: ignore[attr-defined]
        super().connection_made(transport)
        if first:
            self.receiver.session_opened(self)
        elif self.state is not None:  # STARTTLS finished: same session, now encrypted
            self.conv.tls_started()
            self.note("TLS established")
            if injected:
                self.note(f"{injected} octets sent in plaintext after STARTTLS discarded")

    def connection_lost(self, error: Exception | None) -> None:
        try:
            self._end_session()
        finally:
            super().connection_lost(error)
            self.receiver.session_closed(self)

    def eof_received(self) -> bool | None:
        keep = super().eof_received()  # aiosmtpd cancels its command loop here
        if not self._greeted and self.transport is not None:
            # Still reading a PROXY header: the loop's own cleanup has not started, so
            # nothing else would close the line before the PROXY timeout.
            self.transport.close()
            return False
        return keep

    def _begin_session(self) -> Session:
        peer = self._conn().peer
        host, port = (peer[0], int(peer[1])) if isinstance(peer, tuple) else ("0.0.0.0", 0)
        source, via = (self._proxied, "proxy") if self._proxied else ((host, port), "socket")
        identity = self.conv.ctx.world.clients.lookup(source[0])
        mapped = identity.address != source[0] or identity.name is not None
        client = Client(
            peer=host,
            peer_port=port,
            address=identity.address,
            name=identity.name,
            port=source[1],
            via="world" if mapped else via,
        )
        started = _now()
        state = self.state = self.conv.open(client, started)
        self.journal.session_started(
            state.id,
            started=started,
            peer=host,
            peer_port=port,
            client_address=state.client.address,
            client_name=state.client.name,
            scenario=self.receiver.scenario.name,
        )
        if source[0] != state.client.address or via == "proxy":
            self.note(f"client {source[0]} is seen as {state.client.address} ({state.client.via})")
        return state

    def _end_session(self) -> None:
        if self._ended or self.state is None:
            return
        self._ended = True
        outcome = self.conv.end(in_data=self._in_data, stopping=self.receiver.stopping)
        self._flush()
        self.journal.session_ended(self.state.id, outcome=outcome, ended=_now())

    # -- transcript and replies -------------------------------------------------------
    def _command_line(self, raw: bytes) -> None:
        """Record a command line as received and tell the conversation what it is."""
        text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
        self._record("in", text)
        verb = text.split(" ", 1)[0].upper()
        bare_lf = not raw.endswith(b"\r\n") and raw.endswith(b"\n")
        known = not verb or verb in _METHODS
        if bare_lf or not known:  # an ordinary line changes nothing: no call (hot path)
            self.conv.line(text, bare_lf=bare_lf, known=known)

    async def _refuse_line(self, line: str) -> None:
        """A reply to a line no command gets to see (too long, bad syntax, unknown verb):
        the UNKNOWN stage may replace it when the verb was not a command."""
        step = await self.conv.unknown()
        if step.reply is not None:
            await self._send_step(step)
        else:
            await self._write(line)

    def note_in(self, text: str) -> None:
        if self.state is not None:
            self._record("in", text)

    def note(self, text: str) -> None:
        if self.state is not None:
            self._record("note", text)

    def _record(self, direction: str, line: str) -> None:
        self._lines.append((time.time(), direction, line))
        if len(self._lines) >= _FLUSH_LINES:
            self._flush()

    def _flush(self) -> None:
        """Hand buffered transcript lines, recipients and fields to the journal at once."""
        assert self.state is not None
        session_id = self.state.id
        if self.conv.fields:
            self.journal.session_updated(session_id, **self.conv.fields)
            self.conv.fields = {}
        self.journal.transcript_many(session_id, self._lines)
        self._lines = []
        self.journal.rcpts_tried(session_id, self._rcpts)
        self._rcpts = []

    async def push(self, status: str | bytes) -> None:
        line = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        await self._write(line)

    async def _write(self, line: str) -> None:
        """Send one wire line; count errors and feed the ERROR stage after a final line.

        Every reply leaves through here, aiosmtpd's own (which echo commands and
        arguments as received) included: the reply builder's printable check and line
        limit apply to all of them (RFC 5321 §4.2, §4.5.3.1.5).
        """
        line = wire_safe(line)
        if self.transport is None or self.transport.is_closing():
            return  # the connection is going away: nobody to answer
        state = self.state
        head = _REPLY_HEAD.match(line)
        if state is not None and state.tarpit and not self._reply_open:
            await asyncio.sleep(state.tarpit)
        continued = bool(head and head.group(2) == "-")
        if continued:
            # A multi-line reply (EHLO's keywords) goes out in one write with its last line.
            self._held.append(line)
        elif self._held:
            self._held.append(line)
            await super().push("\r\n".join(self._held))
            self._held = []
        else:
            await super().push(line)
        self._reply_open = continued
        if state is None:
            return
        self._record("out", line)
        if head and head.group(2) == " " and head.group(1)[0] in "45":
            step = await self.conv.sent(int(head.group(1)))
            if step.reply is not None:
                await self._send_step(step)

    async def _send_reply(self, reply: Reply) -> None:
        for line in _wire_lines(reply, self.settings.enhanced_status_codes):
            await self._write(line)

    async def _send_step(self, step: Step) -> None:
        assert step.reply is not None
        for line in _wire_lines(step.reply, self.settings.enhanced_status_codes):
            await self._write(line)
        if step.close:
            self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _timeout_cb(self) -> None:
        # aiosmtpd closes an idle line (no whole command within `timeout`: a slowloris
        # too) without a word; Postfix says why first (smtpd_timeout; reference
        # receivers.md §4.1). Not before the greeting: a PROXY header is still awaited.
        transport = self.transport
        if (
            self._greeted
            and isinstance(transport, asyncio.WriteTransport)
            and not transport.is_closing()
        ):
            hostname = self.settings.hostname
            line = wire_safe(self._ok(f"421 4.4.2 {hostname} Error: timeout exceeded"))
            transport.write(line.encode("ascii") + b"\r\n")  # the close flushes it first
            if self.state is not None:
                self._record("out", line)
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def handle_exception(self, error: Exception) -> str:
        """What aiosmtpd answers when a command raised: a fixed reply, never the error.

        aiosmtpd's own answer is `500 Error: (ExcType) text`, which puts exception text
        (and the client bytes it often quotes) on the wire. The error is logged and
        noted in the transcript by type; the transaction is dropped, so nothing half
        done lingers, and the session goes on with a temporary failure.
        """
        state = self.state
        if isinstance(error, TLSSetupException):  # aiosmtpd closes without a reply
            log.info("session %s: TLS handshake failed: %r", state and state.id, error)
            self.note("TLS handshake failed")
            return _INTERNAL_ERROR
        if isinstance(error, ConnectionError | asyncio.IncompleteReadError):
            self._close()  # the peer went away: nobody to answer
            return _INTERNAL_ERROR
        log.error(
            "session %s: %s command failed",
            state and state.id,
            state and state.command,
            exc_info=error,
        )
        self.note(f"internal error ({type(error).__name__}); answered 451")
        self.conv.failed()
        self.envelope = Envelope()
        return self._ok(_INTERNAL_ERROR)

    async def _greet(self) -> None:
        """The greeting, CONNECT's decision. First: a new session. After XCLIENT: the
        same session, new identity."""
        self._greeted = True
        try:
            if self.state is None:
                self._begin_session()
            step = await self.conv.connect()
            await self._send_step(step)
        except Exception:
            # Outside the command loop's exception handler: an unanswered connection
            # would hang until the idle timeout.
            log.exception("session %s: CONNECT failed", self.state and self.state.id)
            self.conv.closing = True
            await self._write(_INTERNAL_ERROR_CLOSE)
            self._close()

    def _journal_verdict(self, verdict: Verdict) -> None:
        assert self.state is not None
        self.journal.verdict(self.state.id, verdict, _now())

    # -- commands ---------------------------------------------------------------------
    async def _run(self, verb: str, arg: str | None) -> None:
        """A known command: the conversation may refuse it outright (a CONNECT refusal
        answers everything); else strictmx's handler, or aiosmtpd's method alone."""
        refusal = self.conv.command(verb)
        if refusal is not None:
            await self._send_reply(refusal)
            return
        if verb == "XCLIENT":
            await self.xclient(arg)
            return
        method: Command = getattr(self, _METHODS[verb])
        handler = _HANDLERS.get(verb)
        if handler is None:
            await method(arg)
        else:
            await handler(self, method, arg)

    async def _on_helo(self, method: Command, arg: str | None) -> None:
        await self._hello("HELO", method, arg)

    async def _on_ehlo(self, method: Command, arg: str | None) -> None:
        await self._hello("EHLO", method, arg)

    async def _hello(self, verb: str, method: Command, arg: str | None) -> None:
        step = await self.conv.hello(verb, arg)
        if step.reply is not None:
            await self._send_step(step)
            return
        if verb == "EHLO":
            await self._ehlo_reply(arg)
        else:
            await method(arg)
        self.conv.hello_done(bool(self._conn().host_name) and self._conn().host_name == arg)

    async def _ehlo_reply(self, name: str | None) -> None:
        """EHLO's reply: aiosmtpd 1.4's smtp_EHLO (its keywords and their order, the
        MAIL line-length allowances RFC 1870 §3 and RFC 6531 §3.4 add), without its
        AUTH (strictmx offers none), with strictmx's keywords before the last line."""
        if not name:
            await self._write("501 Syntax: EHLO hostname")
            return
        conn = self._conn()
        self.envelope = Envelope()  # a new EHLO resets the transaction (RFC 5321 §4.1.4)
        conn.extended_smtp = True
        lines = [f"250-{self.hostname}"]
        if self.data_size_limit:
            lines.append(f"250-SIZE {self.data_size_limit}")
            self.command_size_limits["MAIL"] += 26
        lines.append("250-8BITMIME")
        if self.enable_SMTPUTF8:
            lines.append("250-SMTPUTF8")
            self.command_size_limits["MAIL"] += 10
        if self.tls_context is not None and not self._state_tls():
            lines.append("250-STARTTLS")
        conn.host_name = name
        lines += [f"250-{keyword}" for keyword in self.ehlo_keywords()]
        lines.append("250 HELP")
        for line in lines:
            await self._write(line)

    def _state_tls(self) -> bool:
        return self.state is not None and self.state.tls

    def ehlo_keywords(self) -> list[str]:
        """What strictmx adds to the EHLO keywords."""
        keywords = ["PIPELINING"]
        if self.settings.enhanced_status_codes:
            keywords.append("ENHANCEDSTATUSCODES")
        if self._may_xclient():
            keywords.append("XCLIENT " + " ".join(XCLIENT_ATTRIBUTES))
        return keywords

    async def _on_mail(self, method: Command, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        envelope = self._env()
        parsed = mail_argument(
            arg,
            grammar="aiosmtpd",
            extended=self._conn().extended_smtp,
            nested=bool(envelope.mail_from),
            smtputf8=self.enable_SMTPUTF8,
            size_limit=self.data_size_limit,
            dsn=False,
        )
        if isinstance(parsed, Refusal):
            await self.push(_refusal_line(parsed))
            return
        reply = await self.on_mail(parsed.address, parsed.options)
        if envelope.mail_from:
            envelope.smtp_utf8 = parsed.smtputf8
        await self.push(reply)

    async def _on_rcpt(self, method: Command, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if not self._env().mail_from:
            await self.push("503 Error: need MAIL command")
            return
        parsed = rcpt_argument(
            arg, grammar="aiosmtpd", extended=self._conn().extended_smtp, smtputf8=False, dsn=False
        )
        if isinstance(parsed, Refusal):
            await self.push(_refusal_line(parsed))
            return
        await self.push(await self.on_rcpt(parsed.address, parsed.options))

    async def on_mail(self, address: str, options: list[str]) -> str:
        step = await self.conv.mail(address, options)
        if step.reply is not None and step.reply.code < 300:
            self._env().mail_from = address
            self._env().mail_options.extend(options)
        line = self._one_line(step)
        return line if line is not None else await self._hook_reply(step)

    async def on_rcpt(self, address: str, options: list[str]) -> str:
        self._rcpts.append(address)
        step = await self.conv.rcpt(address)
        if step.reply is not None and step.reply.code < 300:
            self._env().rcpt_tos.append(address)
            self._env().rcpt_options.extend(options)
        line = self._one_line(step)
        return line if line is not None else await self._hook_reply(step)

    async def _on_data(self, method: Command, arg: str | None) -> None:
        if not arg:
            step = await self.conv.data()
            if step.reply is not None:
                await self._send_step(step)
                return
        self._in_data = True
        try:
            await method(arg)
        finally:
            self._in_data = False

    async def on_message(self, raw: bytes) -> str:
        state = self.state
        assert state is not None
        step = await self.conv.message(raw)
        if step.reply is not None:
            line = self._one_line(step)
            return line if line is not None else await self._hook_reply(step)
        raw = self.conv.stored_form(raw)
        self._flush()  # the transcript up to here is committed with the message
        try:
            n = await self.journal.add_message(
                state.id,
                mail_from=state.mail_from or "",
                rcpts=list(state.rcpts),
                raw=raw,
                when=_now(),
            )
        except Exception as exc:  # the journal cannot keep it: never claim we took it
            log.error("journal refused message of session %s: %s", state.id, exc)
            step = self.conv.queue_failed(f"the journal could not keep it ({type(exc).__name__})")
            line = self._one_line(step)
            return line if line is not None else await self._hook_reply(step)
        queued = self.conv.queued(f"{state.id}-{n}").reply
        assert queued is not None
        # One line, new for every message: rendered here, not through the reply cache.
        return queued.wire_lines(enhanced=self.settings.enhanced_status_codes)[-1]

    async def _on_rset(self, method: Command, arg: str | None) -> None:
        if await self._junk(Stage.RSET, method, arg):
            self.conv.reset()

    async def _on_noop(self, method: Command, arg: str | None) -> None:
        await self._junk(Stage.NOOP, method, arg)

    async def _on_vrfy(self, method: Command, arg: str | None) -> None:
        await self._junk(Stage.VRFY, self._vrfy, arg)

    async def _vrfy(self, arg: str | None) -> None:
        address = vrfy_argument(arg, grammar="aiosmtpd")
        refusal = address if isinstance(address, Refusal) else Refusal("vrfy_ok")
        await self.push(_refusal_line(refusal))

    async def _junk(self, stage: Stage, method: Command, arg: str | None) -> bool:
        """NOOP/VRFY/RSET: count, let the stage object, else run aiosmtpd's command."""
        step = await self.conv.junk(stage)
        if step.reply is not None:
            await self._send_step(step)
            return False
        await method(arg)
        return True

    async def _on_help(self, method: Command, arg: str | None) -> None:
        # HELP is a non-mail command like NOOP: counted as junk and judged by the NOOP
        # stage, so session_limits' junk limit ends a flood of them (Exim counts HELP
        # among its nonmail commands, smtp_accept_max_nonmail; Postfix has no HELP and
        # counts it as an error; shared reference receivers.md §4).
        await self._junk(Stage.NOOP, method, arg)

    async def _on_starttls(self, method: Command, arg: str | None) -> None:
        if self.state is not None and self.state.tls:
            # RFC 3207 §4.2: no second negotiation; aiosmtpd would say 220 and then fail
            # the handshake inside TLS. Postfix smtpd's reply (starttls_cmd).
            await self._write(self._ok("554 5.5.1 Error: TLS already active"))
            return
        await method(arg)

    async def _on_quit(self, method: Command, arg: str | None) -> None:
        if not arg:
            self.conv.quit = True
        await method(arg)

    def _ok(self, line: str) -> str:
        """A reply of our own, with or without its enhanced code as the persona sends."""
        return _render(line, self.settings.enhanced_status_codes)

    def _one_line(self, step: Step) -> str | None:
        """A hook's reply when it is one line and does not close (an acceptance, most
        refusals): aiosmtpd sends it, and no coroutine of `_hook_reply` is needed."""
        assert step.reply is not None
        lines = _wire_lines(step.reply, self.settings.enhanced_status_codes)
        return lines[0] if len(lines) == 1 and not step.close else None

    async def _hook_reply(self, step: Step) -> str:
        """aiosmtpd pushes a hook's return value itself (one line): the lines before the
        last are written here; closing must wait for aiosmtpd's push."""
        assert step.reply is not None
        lines = _wire_lines(step.reply, self.settings.enhanced_status_codes)
        for line in lines[:-1]:
            await self._write(line)
        if step.close:
            self.loop.call_soon(self._close)
        return lines[-1]

    # -- XCLIENT (Postfix XCLIENT_README) and PROXY -----------------------------------
    async def xclient(self, arg: str | None) -> None:
        step = await self.conv.xclient(arg, trusted=self._may_xclient())
        if step.reply is not None:
            await self._send_reply(step.reply)
            return
        # A new identity: aiosmtpd forgets the HELO and envelope too, and greets again.
        self._conn().host_name = None
        self.envelope = Envelope()
        await self._greet()  # re-runs CONNECT and greets again

    def _may_xclient(self) -> bool:
        # Behind a PROXY header the client is the proxied one, not the trusted proxy.
        return self.receiver.trusts(self._proxied or self._conn().peer)

    def on_proxy(self, proxy: Any) -> bool:
        peer = self._conn().peer
        if not self.receiver.trusts(peer):
            log.warning("PROXY header from untrusted %s refused", peer)
            return False
        src = getattr(proxy, "src_addr", None)
        if src is None:  # PROXY ... UNKNOWN / LOCAL: keep the socket's address
            return bool(getattr(proxy, "valid", False))
        address = str(src)
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return False
        self._proxied = (address, int(getattr(proxy, "src_port", 0) or 0))
        return True


@functools.lru_cache(maxsize=1024)
def _wire_lines(reply: Reply, enhanced: bool) -> tuple[str, ...]:
    """A reply's wire lines; most replies are the same few values, rendered once."""
    return tuple(reply.wire_lines(enhanced=enhanced))


@functools.lru_cache(maxsize=256)
def _render(line: str, enhanced: bool) -> str:
    return Reply.parse(line).render(enhanced=enhanced)


#: The reply to a command that failed inside strictmx (RFC 5321 §4.2.3's 451 text), and
#: the one that closes a connection that cannot go on (RFC 5321 §3.8).
_INTERNAL_ERROR = "451 4.3.0 Requested action aborted: local error in processing"
_INTERNAL_ERROR_CLOSE = "421 4.3.0 Service not available, closing transmission channel"

#: Commands strictmx handles before (or instead of) aiosmtpd's own method.
_HANDLERS: dict[str, Callable[[StrictSMTP, Command, str | None], Awaitable[None]]] = {
    "HELO": StrictSMTP._on_helo,
    "MAIL": StrictSMTP._on_mail,
    "RCPT": StrictSMTP._on_rcpt,
    "EHLO": StrictSMTP._on_ehlo,
    "DATA": StrictSMTP._on_data,
    "RSET": StrictSMTP._on_rset,
    "NOOP": StrictSMTP._on_noop,
    "VRFY": StrictSMTP._on_vrfy,
    "QUIT": StrictSMTP._on_quit,
    "HELP": StrictSMTP._on_help,
    "STARTTLS": StrictSMTP._on_starttls,
}
