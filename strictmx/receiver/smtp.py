"""The aiosmtpd SMTP subclass: stages, transcript, error counting, XCLIENT and PROXY.

Every reply it sends is the persona's: its dialect's (strictmx/receiver/dialect.py) for
the protocol -- syntax and sequence errors, QUIT, NOOP, limits, junk -- and the policies'
verdicts for the rest. aiosmtpd is the transport alone: the connection, STARTTLS's
handshake, PROXY and the idle timer; none of its replies or limits reaches the wire.

aiosmtpd gives hooks for MAIL, RCPT and end of data. Strict receivers also decide at
connect time (before the greeting), at HELO before any syntax check, before DATA's 354,
and on RSET/NOOP/VRFY/unknown commands; this class adds those points:

- every reply goes through `_write`, so the greeting is where CONNECT runs, and every
  4xx/5xx the client receives is counted and fed to the ERROR stage;
- the command loop is strictmx's own (`_handle_client`): it reads every line, answers
  the lines no command sees, and hands each command the dialect knows to its handler
  here and to the conversation;
- every line read or written is in the session's transcript.

The policies themselves never see this module: they get the sans-IO `Session`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
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

from . import dialect as dialects
from . import smtp_auth
from . import smtp_commands as commands
from .conversation import Conversation, Step
from .grammar import Refusal, mail_argument, rcpt_argument, split_command
from .journal import Journal
from .persona import Persona
from .policy import Context
from .scenario import Scenario
from .session import Client, Session
from .session_log import SHOWN_RCPTS, SessionEnd
from .smtp_commands import data_lines, ehlo_lines, proxy_source, skip_line
from .smtp_data import Problem, read_message, read_message_lf
from .verdict import Reply, Stage, Verdict, wire_safe

log = logging.getLogger(__name__)


def _not_aiosmtpd_auth(record: logging.LogRecord) -> bool:
    """aiosmtpd logs the AUTH mechanisms its own SMTP class has (LOGIN, PLAIN) for every
    connection; strictmx never offers those (its command loop answers AUTH itself, and
    offers the scenario's `receiver.auth` mechanisms only, after STARTTLS by default), so
    the line would tell a `-vv` reader of AUTH that is not there, or not yet there."""
    return not str(record.msg).startswith("Available AUTH mechanisms")


logging.getLogger("mail.log").addFilter(_not_aiosmtpd_auth)

#: Buffered transcript lines that force a hand-over to the journal (long sessions).
_FLUSH_LINES = 200
_REPLY_HEAD = re.compile(r"^([2-5][0-9][0-9])([ -])")
#: A header line sent as a command (`Subject: x`): a field name, then a colon (RFC 5322
#: §2.2), which Postfix takes for a client talking mail at an SMTP server.
_HEADER = re.compile(r"[!-9;-~]+:")
#: Where a command line is cut when the dialect refuses none for its length: Postfix's
#: line_length_limit (a longer line is cut there and the rest discarded).
_CUT = 2048


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


class Host(Protocol):
    """What a session needs from the receiver that accepted its connection (the Receiver of
    strictmx/receiver/server.py, which imports this module: so it is named here by shape)."""

    scenario: Scenario
    persona: Persona
    journal: Journal
    stopping: bool
    loop: asyncio.AbstractEventLoop | None
    #: Told of every session that ends (`strictmx serve`'s line per session), if set.
    session_log: Callable[[SessionEnd], None] | None

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

    #: DATA's replies by situation, as sent (`smtp_DATA` runs in a plain aiosmtpd SMTP
    #: too: tests/unit/test_smtp_data.py); each session has its dialect's.
    data_lines: dict[str, str]
    #: Octets a message line may have (None: no limit of its own; the size limit holds).
    data_line_limit: int | None
    #: MAIL, RCPT and DATA need a HELO/EHLO first (receiver.helo_required).
    helo_required = True
    #: A bare LF ends a message line as CRLF does (the dialect's data_bare_lf: line_end).
    data_lf_ends_line = False

    def __init__(self, receiver: Host) -> None:
        settings = receiver.scenario.receiver
        dialect = receiver.persona.dialect
        # The stream's limit: a message line's (aiosmtpd's line_length_limit), or where
        # an over-long command line is cut when the dialect has no limit for either.
        self.line_length_limit = dialect.data_line or _CUT
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
        self.dialect = dialect
        self._enhanced = settings.enhanced_status_codes
        #: SMTP AUTH as the scenario offers it (None: not at all), and who logged in.
        self.sasl_settings = settings.auth
        self.sasl_replies = smtp_auth.replies_for(dialect.name)
        self.sasl_user: str | None = None
        # A dialect without AUTH among its commands still answers it when the scenario
        # offers AUTH: a client that logs in must reach the exchange.
        self._known = _known(
            dialect.commands | {"AUTH"} if settings.auth is not None else dialect.commands
        )
        self.data_lines = data_lines(dialect, self._enhanced)
        self.data_line_limit = dialect.data_line
        self.data_lf_ends_line = dialect.data_bare_lf == "line_end"
        self.helo_required = settings.helo_required
        limit = dialect.command_line
        if limit is not None and limit != self.command_size_limit:  # aiosmtpd's is 512
            self.command_size_limit = limit
            self.command_size_limits = collections.defaultdict(lambda: limit)
        self._push_as: str | None = None  # what the next push says instead (STARTTLS)
        # RFC 3461 parameters are taken where the persona offers DSN.
        self._dsn = "DSN" in dialect.ehlo_keywords
        self.chunks: bytearray | None = None  # a message in BDAT chunks (RFC 3030)
        self.chunks_failed = False
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
        # For the line per session: the journal fields as last handed over, the first
        # recipients tried and how many.
        self._kept: dict[str, object] = {}
        self._first_rcpts: list[str] = []
        self._rcpt_count = 0
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
        # rather than a coroutine per line; the same checks and limits, the dialect's
        # replies (`data_lines`).
        lines = self.data_lines
        assert self.session is not None
        if not self.session.host_name and self.helo_required:
            await self.push(lines["helo_first"])
            return
        envelope = self.envelope
        assert envelope is not None
        if not envelope.rcpt_tos:
            # After MAIL, every recipient refused (or none given): Postfix says so.
            await self.push(lines["need_rcpt" if envelope.mail_from is None else "no_valid_rcpt"])
            return
        if arg:
            await self.push(lines["syntax"])
            return
        await self.push(lines["ok"])
        limit = self.data_line_limit
        try:
            if self.data_lf_ends_line:
                problem, content = await read_message_lf(self._reader, limit, self.data_size_limit)
            else:
                problem, content = await read_message(
                    self._reader, limit or self.data_size_limit or _CUT, self.data_size_limit
                )
        except asyncio.CancelledError:  # the connection went away during DATA
            self._close()
            raise
        if problem is not None:
            # With no line limit of its own, a line longer than the message may be is
            # a message too big.
            too_long = "too_long" if limit else "too_much"
            await self.push(lines[too_long if problem is Problem.TOO_LONG else "too_much"])
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
        timer); every line is read, recorded and answered here, in the dialect's words:
        its limits, its forbidden commands, its handling of a bare LF.
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
        dialect = self.dialect
        # N unknown verbs are answered; the next one gets too_many_unknown and the close.
        unknown_left = None if dialect.unknown_commands is None else dialect.unknown_commands + 1
        while self.transport is not None and not self.transport.is_closing():
            try:
                try:
                    raw = await self._reader.readuntil()
                except asyncio.LimitOverrunError as error:
                    if dialect.command_line is not None:
                        self.note_in("<command line over the length limit>")
                        await skip_line(self._reader, error.consumed)
                        await self._refuse_line(Refusal("line_too_long"))
                        continue
                    # No limit: the line is cut where the stream's limit is (Postfix).
                    raw = await skip_line(self._reader, error.consumed)
                if self._command_line(raw) and dialect.bare_lf == "reject":
                    await self._say(Refusal("bare_lf", close=True))
                    continue
                line = raw.rstrip(b"\r\n")
                command = split_command(
                    line, grammar=dialect.address_grammar, smtputf8=self.enable_SMTPUTF8
                )
                if isinstance(command, Refusal):
                    await self._refuse_line(command)
                    continue
                verb, arg = command
                if (
                    verb in dialect.forbidden_commands
                    or (dialect.header_commands_forbidden and _HEADER.match(verb))
                    or (
                        dialect.forbidden_pattern is not None
                        and verb not in self._known
                        and dialect.forbidden_pattern.search(_first_word(line)) is not None
                    )
                ):
                    await self._say(Refusal("forbidden_command", {"verb": verb}, close=True))
                    continue
                if dialect.command_line is not None and len(line) > (
                    self.command_size_limits[verb]
                    if self._conn().extended_smtp
                    else self.command_size_limit
                ):
                    await self._refuse_line(Refusal("line_too_long"))
                    continue
                if verb not in self._known:
                    if unknown_left is not None:
                        unknown_left -= 1
                        if unknown_left < 1:
                            await self._refuse_line(Refusal("too_many_unknown"))
                            self._close()
                            continue
                    await self._refuse_line(Refusal("unknown_command", {"verb": verb}))
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
                    status = self._line("internal_error")
                if isinstance(error, TLSSetupException):
                    # As aiosmtpd does: the handshake failed, the line cannot go on.
                    self._close()
                    self.connection_lost(error)
                else:
                    await self.push(status)

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
            ssl_object = transport.get_extra_info("ssl_object")
            version = ssl_object.version() if ssl_object is not None else None
            self.conv.tls_started(version)
            self.note("TLS established")
            # RFC 3207 §4.2: what was learnt before TLS, a login included, is forgotten.
            self.sasl_user = None
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
        transport = self.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is not None:  # the SMTPS listener: TLS from the first octet (RFC 8314)
            self.conv.tls_started(ssl_object.version())
            self.note("TLS established (implicit TLS)")
        return state

    def _end_session(self) -> None:
        if self._ended or self.state is None:
            return
        self._ended = True
        outcome = self.conv.end(in_data=self._in_data, stopping=self.receiver.stopping)
        self._flush()
        ended = _now()
        self.journal.session_ended(self.state.id, outcome=outcome, ended=ended)
        if self.receiver.session_log is not None:
            try:
                self.receiver.session_log(self._summary(self.state, outcome, ended))
            except Exception:  # a log line must never keep a session from closing
                log.exception("session %s: the session line failed", self.state.id)

    def _summary(self, state: Session, outcome: str, ended: datetime) -> SessionEnd:
        kept = self._kept
        client = state.client
        deciding = next(
            (
                v
                for v in reversed(state.verdicts)
                if v.objection and v.replied_at is not None and not v.warned
            ),
            None,
        )
        reply = deciding.reply if deciding is not None else None
        return SessionEnd(
            session=state.id,
            ended=ended,
            peer=client.peer,
            peer_port=client.peer_port,
            client=client.address,
            client_name=client.name,
            helo=_text_or_none(kept.get("helo")),
            mail_from=_text_or_none(kept.get("mail_from")),
            rcpts=tuple(self._first_rcpts),
            rcpt_count=self._rcpt_count,
            outcome=outcome,
            policy=deciding.policy if deciding is not None else None,
            policy_outcome=deciding.outcome if deciding is not None else None,
            code=reply.code if reply is not None else None,
            status=reply.status if reply is not None and self._enhanced else None,
            text=reply.text if reply is not None else None,
        )

    # -- transcript and replies -------------------------------------------------------
    def _command_line(self, raw: bytes) -> bool:
        """Record a command line as received and tell the conversation what it is;
        whether it ended in a bare LF."""
        text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
        verb = text.split(" ", 1)[0].upper()
        if verb == "AUTH":
            self._record("in", smtp_auth.shown(text))
        else:
            self._record("in", text)
        bare_lf = not raw.endswith(b"\r\n") and raw.endswith(b"\n")
        known = not verb or verb in self._known
        if bare_lf or not known:  # an ordinary line changes nothing: no call (hot path)
            self.conv.line(text, bare_lf=bare_lf, known=known)
        return bare_lf

    async def _refuse_line(self, refusal: Refusal) -> None:
        """A reply to a line no command gets to see (too long, bad syntax, unknown verb):
        the UNKNOWN stage may replace it when the verb was not a command."""
        step = await self.conv.unknown()
        if step.reply is not None:
            await self._send_step(step)
        else:
            await self._say(refusal)

    async def _say(self, refusal: Refusal) -> None:
        """The dialect's reply for a situation; the line closes after it if it says so."""
        if refusal.close:
            self.conv.closing = True  # the reply that closes: no ERROR stage after it
        reply = self.dialect.reply(refusal.key, **refusal.fields)
        for line in _wire_lines(reply, self._enhanced):
            await self._write(line)
        if refusal.close:
            self._close()

    def _line(self, key: str) -> str:
        """The dialect's one-line reply for `key`, as sent."""
        return _wire_lines(self.dialect.replies[key], self._enhanced)[-1]

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
            self._kept.update(self.conv.fields)
            self.conv.fields = {}
        self.journal.transcript_many(session_id, self._lines)
        self._lines = []
        if self._rcpts:
            self.journal.rcpts_tried(session_id, self._rcpts)
            room = SHOWN_RCPTS - len(self._first_rcpts)
            if room > 0:
                self._first_rcpts.extend(self._rcpts[:room])
            self._rcpt_count += len(self._rcpts)
            self._rcpts = []

    async def push(self, status: str | bytes) -> None:
        line = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if self._push_as is not None:  # aiosmtpd's STARTTLS reply, in the dialect's words
            line, self._push_as = self._push_as, None
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
            line = wire_safe(self._line("timeout"))
            transport.write(line.encode("ascii") + b"\r\n")  # the close flushes it first
            if self.state is not None:
                self._record("out", line)
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def shut_down(self) -> None:
        """The receiver stops and this session is still open: `SHUTTING_DOWN`, then the
        close. Written at once, as `_timeout_cb` writes its 421: no tarpit, and no ERROR
        stage can follow the last reply. Not before the greeting (no SMTP yet)."""
        transport = self.transport
        if (
            self._greeted
            and isinstance(transport, asyncio.WriteTransport)
            and not transport.is_closing()
        ):
            for line in _wire_lines(SHUTTING_DOWN, self._enhanced):
                transport.write(line.encode("ascii") + b"\r\n")  # the close flushes it first
                if self.state is not None:
                    self._record("out", line)
        self._close()

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
            return self._line("internal_error")
        if isinstance(error, ConnectionError | asyncio.IncompleteReadError):
            self._close()  # the peer went away: nobody to answer
            return self._line("internal_error")
        log.error(
            "session %s: %s command failed",
            state and state.id,
            state and state.command,
            exc_info=error,
        )
        self.note(f"internal error ({type(error).__name__}); answered 451")
        self.conv.failed()
        self.envelope = Envelope()
        return self._line("internal_error")

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
            await self._write(self._line("internal_error_close"))
            self._close()

    def _journal_verdict(self, verdict: Verdict) -> None:
        assert self.state is not None
        self.journal.verdict(self.state.id, verdict, _now())

    # -- commands ---------------------------------------------------------------------
    async def _run(self, verb: str, arg: str | None) -> None:
        """A command the dialect knows: the conversation may refuse it outright (a CONNECT
        refusal answers everything); else its handler here."""
        refusal = self.conv.command(verb)
        if refusal is not None:
            await self._send_reply(refusal)
            return
        await _HANDLERS[verb](self, arg)

    def _need_helo(self) -> Refusal | None:
        return None if self._conn().host_name or not self.helo_required else _HELO_FIRST

    def _has_helo(self) -> bool:
        return bool(self._conn().host_name)

    def _first_lines(self, key: str, **fields: str) -> tuple[str, ...]:
        return _wire_lines(self.dialect.reply(key, **fields), self._enhanced)

    def _hello_fields(self) -> dict[str, str]:
        """What a HELO/EHLO reply may quote: the name given and the client's address."""
        client = self.state.client.address if self.state is not None else ""
        return {"helo": self._conn().host_name or "", "client_ip": client}

    async def _on_helo(self, arg: str | None) -> None:
        await self._hello("HELO", arg)

    async def _on_ehlo(self, arg: str | None) -> None:
        await self._hello("EHLO", arg)

    async def _hello(self, verb: str, arg: str | None) -> None:
        step = await self.conv.hello(verb, arg)
        if step.reply is not None:
            await self._send_step(step)
            return
        if not arg:
            await self._say(Refusal("ehlo_syntax" if verb == "EHLO" else "helo_syntax"))
            self.conv.hello_done(False)
            return
        conn = self._conn()
        self.envelope = Envelope()  # a new HELO/EHLO resets the transaction (RFC 5321 §4.1.4)
        conn.extended_smtp = verb == "EHLO"
        conn.host_name = arg
        if verb == "EHLO":
            for line in ehlo_lines(self):
                await self._write(line)
        else:
            await self._write(self._first_lines("helo_ok", **self._hello_fields())[-1])
        self.conv.hello_done(True)

    def _state_tls(self) -> bool:
        return self.state is not None and self.state.tls

    async def _on_mail(self, arg: str | None) -> None:
        sasl = self.sasl_settings
        if sasl is not None and sasl.required and self.sasl_user is None and self._has_helo():
            await self._send_reply(self.sasl_replies.required)
            return
        envelope = self._env()
        parsed = self._need_helo() or mail_argument(
            arg,
            grammar=self.dialect.address_grammar,
            extended=self._conn().extended_smtp,
            nested=envelope.mail_from is not None,
            smtputf8=self.enable_SMTPUTF8,
            size_limit=self.data_size_limit,
            dsn=self._dsn,
        )
        if isinstance(parsed, Refusal):
            await self._say(parsed)
            return
        reply = await self.on_mail(parsed.address, parsed.options)
        if envelope.mail_from is not None:
            envelope.smtp_utf8 = parsed.smtputf8
        await self.push(reply)

    async def _on_rcpt(self, arg: str | None) -> None:
        parsed = (
            (None if self._has_helo() or not self.helo_required else _RCPT_NO_HELO)
            or (_RCPT_NEED_MAIL if self._env().mail_from is None else None)
            or (None if self.chunks is None else Refusal("rcpt_after_bdat"))
            or rcpt_argument(
                arg,
                grammar=self.dialect.address_grammar,
                extended=self._conn().extended_smtp,
                smtputf8=self._env().smtp_utf8,
                dsn=self._dsn,
            )
        )
        if isinstance(parsed, Refusal):
            await self._say(parsed)
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

    async def _on_data(self, arg: str | None) -> None:
        if self.chunks is not None:
            await self._say(Refusal("data_after_bdat"))
            return
        if not arg:
            step = await self.conv.data()
            if step.reply is not None:
                await self._send_step(step)
                return
        self._in_data = True
        try:
            await self.smtp_DATA(arg or "")
        finally:
            self._in_data = False

    async def on_message(self, raw: bytes, *, chunked: int | None = None) -> str:
        """End of data (`chunked`: of BDAT's chunks, that many octets): the reply."""
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
        queue_id = f"{state.id}-{n}"
        queued = self.conv.queued(queue_id).reply
        assert queued is not None
        if chunked is not None:
            queued = self.dialect.reply("bdat_queued", size=chunked, queue_id=queue_id)
        # One line, new for every message: rendered here, not through the reply cache.
        return queued.wire_lines(enhanced=self._enhanced)[-1]

    async def _junk(self, stage: Stage) -> bool:
        """NOOP/VRFY/RSET/HELP: count, let the stage object; whether to answer it."""
        step = await self.conv.junk(stage)
        if step.reply is not None:
            await self._send_step(step)
            return False
        return True

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

    # -- AUTH (RFC 4954; strictmx/receiver/smtp_auth.py) ----------------------------------
    def sasl_keyword(self) -> str | None:
        """EHLO's AUTH keyword when this session is offered AUTH now, else None."""
        sasl = self.sasl_settings
        if sasl is None or (sasl.require_tls and not self._state_tls()):
            return None
        return sasl.keyword()

    async def authenticate(self, arg: str | None) -> None:
        """AUTH: the exchange of challenges and responses, then its final reply. Response
        lines are read here (they are not commands) and shown hidden in the transcript."""
        sasl = self.sasl_settings
        assert sasl is not None
        exchange = smtp_auth.begin(
            arg,
            sasl,
            self.sasl_replies,
            tls=self._state_tls(),
            authenticated=self.sasl_user is not None,
            in_transaction=self._env().mail_from is not None,
        )
        if isinstance(exchange, Reply):
            await self._send_reply(exchange)
            return
        while exchange.challenge is not None:
            await self._write(f"334 {exchange.challenge}")
            try:
                raw = await self._reader.readuntil()
            except asyncio.LimitOverrunError as error:
                await skip_line(self._reader, error.consumed)
                self.note_in(smtp_auth.HIDDEN)
                await self._send_reply(self.sasl_replies.too_long)
                return
            self._reset_timeout()
            self.note_in(smtp_auth.HIDDEN)
            exchange.feed(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
        assert exchange.reply is not None
        if exchange.user is not None:
            self.sasl_user = exchange.user
            self.conv.fields["auth_user"] = exchange.user
            self.note(f"authenticated as {exchange.user!r} ({exchange.mechanism})")
        await self._send_reply(exchange.reply)

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
        valid, self._proxied = proxy_source(proxy)
        return valid


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _first_word(line: bytes) -> str:
    """A command line's first word as sent (not upper-cased: Postfix matches its forbidden
    commands against the verb as the client wrote it)."""
    words = line.split(None, 1)
    return words[0].decode("utf-8", "surrogateescape") if words else ""


@functools.lru_cache(maxsize=1024)
def _wire_lines(reply: Reply, enhanced: bool) -> tuple[str, ...]:
    """A reply's wire lines; most replies are the same few values, rendered once."""
    return tuple(reply.wire_lines(enhanced=enhanced))


@functools.lru_cache(maxsize=64)
def _known(commands: frozenset[str]) -> frozenset[str]:
    """The dialect's commands strictmx can answer: any other verb is an unknown command."""
    return commands & _HANDLERS.keys()


#: Said to a session still open when the receiver stops: RFC 5321 §3.8 (a server shut down
#: by external means SHOULD send a 421 before it closes) with RFC 3463's X.3.2 (system not
#: accepting network messages). strictmx's own, in every dialect: no receiver's words for
#: it were recorded.
SHUTTING_DOWN = Reply.parse("421 4.3.2 Service shutting down")

_HELO_FIRST = Refusal("helo_first")
_RCPT_NO_HELO = Refusal("rcpt_no_helo")
_RCPT_NEED_MAIL = Refusal("rcpt_need_mail")

#: Every command strictmx answers, and its handler; a dialect knows some of them.
_HANDLERS: dict[str, Callable[[StrictSMTP, str | None], Awaitable[None]]] = {
    "HELO": StrictSMTP._on_helo,
    "MAIL": StrictSMTP._on_mail,
    "RCPT": StrictSMTP._on_rcpt,
    "EHLO": StrictSMTP._on_ehlo,
    "DATA": StrictSMTP._on_data,
    "RSET": commands.rset,
    "NOOP": commands.noop,
    "VRFY": commands.vrfy,
    "QUIT": commands.quit_,
    "HELP": commands.help_,
    "STARTTLS": commands.starttls,
    "EXPN": commands.expn,
    "AUTH": commands.auth,
    "ETRN": commands.etrn,
    "BDAT": commands.bdat,
    "XFORWARD": commands.xforward,
    "XCLIENT": StrictSMTP.xclient,
}

#: The data lines of a plain aiosmtpd SMTP running `smtp_DATA` (tests/unit/test_smtp_data.py).
StrictSMTP.data_lines = data_lines(dialects.load(dialects.DEFAULT), True)
StrictSMTP.data_line_limit = SMTP.line_length_limit
