"""The aiosmtpd SMTP subclass: stages, transcript, error counting, XCLIENT and PROXY.

aiosmtpd gives hooks for MAIL, RCPT and end of data. Strict receivers also decide at
connect time (before the greeting), at HELO before any syntax check, before DATA's 354,
and on RSET/NOOP/VRFY/unknown commands; this class adds those points:

- every reply goes through `push`, so the greeting is where CONNECT runs, and every
  4xx/5xx the client receives (aiosmtpd's own 500/501/503 included) is counted and fed
  to the ERROR stage;
- every command goes through a wrapper around aiosmtpd's `smtp_*` methods;
- every line read or written is in the session's transcript.

The policies themselves never see this module: they get the sans-IO `Session`.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from email._header_value_parser import get_addr_spec, get_angle_addr
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Envelope, TLSSetupException
from aiosmtpd.smtp import Session as AioSession

from .engine import Decision, is_always_accepted
from .session import Client, Session
from .smtp_data import read_message
from .verdict import Reply, Stage, Verdict, wire_safe

if TYPE_CHECKING:
    from .server import Receiver

log = logging.getLogger(__name__)

XCLIENT_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT")
_XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")
#: Buffered transcript lines that force a hand-over to the journal (long sessions).
_FLUSH_LINES = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REPLY_HEAD = re.compile(r"^([2-5][0-9][0-9])([ -])")

Command = Callable[[str | None], Awaitable[None]]


def _now() -> datetime:
    return datetime.now(UTC)


class _RecordingReader(asyncio.StreamReader):
    """A StreamReader that hands every command line it reads to the protocol."""

    def __init__(self, protocol: StrictSMTP, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._protocol = protocol

    def readuntil(self, separator: bytes = b"\n") -> Coroutine[Any, Any, bytes]:  # type: ignore[override]
        # Only command lines come this way: message data is taken from the buffer by
        # strictmx/receiver/smtp_data.py and goes to the message, not the transcript.
        return self._command(super().readuntil(separator))

    async def _command(self, read: Coroutine[Any, Any, bytes]) -> bytes:
        try:
            line = await read
        except asyncio.LimitOverrunError:
            self._protocol.note_in("<command line over the length limit>")
            raise
        self._protocol.command_line(line)
        return line


class _Hooks:
    """aiosmtpd handler hooks, forwarded to the protocol instance that called them."""

    # No handle_EHLO: aiosmtpd inspects that hook's signature on every connection; the
    # EHLO keywords are adjusted in StrictSMTP.push instead.

    def __dir__(self) -> list[str]:
        # aiosmtpd walks dir(handler) twice per connection (AUTH mechanisms, hooks): the
        # hooks alone keep the walk short, as StrictSMTP.__dir__ does for the protocol.
        return ["handle_DATA", "handle_MAIL", "handle_PROXY", "handle_RCPT"]

    async def handle_MAIL(
        self, server: StrictSMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        return await server.on_mail(address, options)

    async def handle_RCPT(
        self, server: StrictSMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        return await server.on_rcpt(address, options)

    async def handle_DATA(self, server: StrictSMTP, session: Any, envelope: Any) -> str:
        return await server.on_message(envelope.original_content or b"")

    async def handle_PROXY(
        self, server: StrictSMTP, session: Any, envelope: Any, proxy: Any
    ) -> bool:
        return server.on_proxy(proxy)


HOOKS = _Hooks()


_AIOSMTPD_NAMES = [n for n in dir(SMTP) if n.startswith(("smtp_", "auth_"))]


class StrictSMTP(SMTP):
    def __dir__(self) -> list[str]:
        # aiosmtpd finds commands (smtp_*) and AUTH mechanisms (auth_*) by walking
        # dir(self) with inspect.getmembers on every connection; listing only those
        # names keeps that walk -- a large share of per-connection cost -- short.
        return list(_AIOSMTPD_NAMES)

    def __init__(self, receiver: Receiver) -> None:
        settings = receiver.scenario.receiver
        super().__init__(
            HOOKS,
            hostname=settings.hostname,
            ident="ESMTP",  # the greeting itself is written by `_greet` from the banner
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=settings.smtputf8,
            tls_context=receiver.tls_context,
            timeout=settings.timeout,
            proxy_protocol_timeout=receiver.proxy_timeout,
            loop=receiver.loop,
        )
        # Swap in the recording reader before any connection exists.
        asyncio.StreamReaderProtocol.__init__(
            self,
            _RecordingReader(self, limit=self.line_length_limit, loop=self.loop),
            client_connected_cb=self._cb_client_connected,
            loop=self.loop,
        )
        self.receiver = receiver
        self.settings = settings
        self.engine = receiver.engine
        self.ctx = receiver.context.for_session()
        self.journal = receiver.journal
        self.state: Session | None = None
        self._greeted = False
        self._pending_unknown = False
        self._reply_open = False  # inside a multi-line reply
        self._in_error_stage = False
        self._closing = False  # the reply being written is the last: the line closes after it
        self._in_data = False
        self._quit = False
        self._ended = False
        self._journaled: set[int] = set()
        # Journal writes buffered until the next message commit or the session's end.
        self._lines: list[tuple[float, str, str]] = []
        self._rcpts: list[str] = []
        self._fields: dict[str, str | bool | None] = {}
        self._proxied: tuple[str, int] | None = None
        self._smtp_methods = _Commands(self, {**self._smtp_methods, "XCLIENT": self.xclient})
        self._ehlo = False  # the next final 250 closes an EHLO reply
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
            self._writer.close()
            raise
        if problem is not None:
            await self.push(problem.value)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        envelope.content = envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd's own version defines a typing.Protocol class on every call (a class
        # per MAIL and RCPT command); the same parse, with results remembered.
        return _parse_path(arg, self.local_part_limit)

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
            self.state.tls = True
            self._fields["tls"] = True
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
        identity = self.ctx.world.clients.lookup(source[0])
        mapped = identity.address != source[0] or identity.name is not None
        state = Session(
            Client(
                peer=host,
                peer_port=port,
                address=identity.address,
                name=identity.name,
                port=source[1],
                via="world" if mapped else via,
            )
        )
        state.started = _now()
        self.state = state
        self.journal.session_started(
            state.id,
            started=state.started,
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
        state = self.state
        cut = not self._quit and (
            self._in_data or state.mail_from is not None or self.receiver.stopping
        )
        if not self._quit:
            self.note("connection closed" if not cut else "connection lost: session aborted")
        for verdict in state.delayed.values():
            self._journal_verdict(verdict)  # decided, never sent
        self._flush()
        self.journal.session_ended(state.id, outcome=self._outcome(state, cut), ended=_now())

    @staticmethod
    def _outcome(state: Session, cut: bool) -> str:
        if cut:
            return "aborted"
        if state.counters.messages:
            return "accepted"
        if state.counters.rejections:
            return "rejected"
        if state.counters.deferrals:
            return "deferred"
        return "idle"

    # -- transcript and replies -------------------------------------------------------
    def command_line(self, raw: bytes) -> None:
        if self.state is None:
            return
        if not raw.endswith(b"\r\n"):
            self.state.bare_lf = raw.endswith(b"\n")
        text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
        self._record("in", text)
        verb = text.split(" ", 1)[0].upper()
        if verb and verb not in self._smtp_methods:
            self.state.counters.unknown_commands += 1
            self._pending_unknown = True

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
        if self._fields:
            self.journal.session_updated(session_id, **self._fields)
            self._fields = {}
        self.journal.transcript_many(session_id, self._lines)
        self._lines = []
        self.journal.rcpts_tried(session_id, self._rcpts)
        self._rcpts = []

    async def push(self, status: str | bytes) -> None:
        line = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        if not self._greeted:
            self._greeted = True
            try:
                await self._greet(line)
            except Exception:
                # Before aiosmtpd's command loop (and its exception handler) runs: an
                # unanswered connection would hang until the idle timeout.
                log.exception("session %s: CONNECT failed", self.state and self.state.id)
                self._closing = True
                await self._write(_INTERNAL_ERROR_CLOSE)
                self._close()
            return
        if self._ehlo:
            if line.startswith("250-AUTH"):
                return  # strictmx offers no AUTH
            if line[3:4] == " ":
                self._ehlo = False
                if line.startswith("250"):
                    for keyword in self.ehlo_keywords():
                        await self._write(f"250-{keyword}")
        if self._pending_unknown and line.startswith("50"):
            self._pending_unknown = False
            decision = await self._run(Stage.UNKNOWN)
            if decision.reply is not None:
                await self._send_decision(decision)
                return
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
            state.counters.errors += 1
            if line.startswith("5"):
                state.counters.rejections += 1
            else:
                state.counters.deferrals += 1
            # The reply that closes the line ends the session: no further verdict (a
            # second 421 from the error limit after the junk limit's 421, for one).
            if not self._in_error_stage and not self._closing:
                self._in_error_stage = True
                try:
                    decision = await self._run(Stage.ERROR)
                    if decision.reply is not None:
                        await self._send_decision(decision)
                except Exception:
                    # The reply is out; a failing policy here must not end the session
                    # (this may be the reply to an earlier failure: nothing would catch it).
                    log.exception("session %s: the ERROR stage failed", state.id)
                    self.note("internal error in the error stage")
                finally:
                    self._in_error_stage = False

    async def _send_reply(self, reply: Reply) -> None:
        for line in reply.wire_lines(enhanced=self.settings.enhanced_status_codes):
            await self._write(line)

    async def _send_decision(self, decision: Decision) -> None:
        assert decision.reply is not None
        self._closing = self._closing or decision.close
        await self._send_reply(decision.reply)
        if decision.close:
            self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _timeout_cb(self) -> None:
        # aiosmtpd closes an idle line (no whole command within `timeout`: a slowloris
        # too) without a word; Postfix says why first (smtpd_timeout; reference
        # receivers.md §4.1). Not before the greeting: a PROXY header is still awaited.
        transport = self.transport
        if self._greeted and transport is not None and not transport.is_closing():
            hostname = self.settings.hostname
            line = wire_safe(self._ok(f"421 4.4.2 {hostname} Error: timeout exceeded"))
            self._writer.write(line.encode("ascii") + b"\r\n")
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
        if state is not None:
            state.reset_transaction()
        self.envelope = self._create_envelope()
        return self._ok(_INTERNAL_ERROR)

    async def _greet(self, _aiosmtpd_greeting: str) -> None:
        # First greeting: a new session. After XCLIENT: the same session, new identity.
        state = self.state or self._begin_session()
        decision = await self._run(Stage.CONNECT)
        if decision.reply is None:
            banner = self.settings.banner.format(hostname=self.settings.hostname)
            await self._write(f"220 {banner}")
            return
        if decision.close:
            await self._send_decision(decision)
            return
        # Refused without delay_reject: the reply replaces the greeting, and every later
        # command but QUIT gets it too (RFC 5321 §3.1 lets a server answer 554 at connect).
        state.refused = decision.sent
        await self._send_reply(decision.reply)

    async def _run(self, stage: Stage) -> Decision:
        assert self.state is not None
        decision = await self.engine.run(stage, self.state, self.ctx)
        for verdict in decision.verdicts:
            self._journal_verdict(verdict)
        return decision

    def _journal_verdict(self, verdict: Verdict) -> None:
        assert self.state is not None
        if id(verdict) in self._journaled:
            return
        self._journaled.add(id(verdict))
        self.state.verdicts.append(verdict)
        self.journal.verdict(self.state.id, verdict, _now())

    # -- commands ---------------------------------------------------------------------
    async def dispatch(self, verb: str, method: Command, arg: str | None) -> None:
        """Every command aiosmtpd recognises comes here first (see `_Commands`)."""
        state = self.state
        if state is None:
            await method(arg)
            return
        state.command = verb
        if state.refused is not None and verb != "QUIT":
            assert state.refused.reply is not None
            await self._send_reply(state.refused.reply)
            return
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
        state = self.state
        assert state is not None
        before = (state.helo, state.helo_verb)
        # Policies see every earlier accepted name in helo_history, the new one in helo.
        if before[0]:
            state.helo_history.append(before[0])
        state.helo, state.helo_verb = (arg or "").strip(), verb
        held = state.delayed.pop(Stage.HELO, None)
        decision = await self._run(Stage.HELO)
        accepted = decision.reply is None
        if accepted:
            self._ehlo = verb == "EHLO"
            await method(arg)
            accepted = bool(self._conn().host_name) and self._conn().host_name == arg
        else:
            await self._send_decision(decision)
        if accepted:
            state.esmtp = verb == "EHLO"
            state.reset_transaction()
            self._fields["helo"] = state.helo
            return
        # RFC 5321 §4.1.4: a refused EHLO leaves the session as it was.
        if before[0]:
            state.helo_history.pop()
        state.helo, state.helo_verb = before
        if held is not None:
            state.delayed.setdefault(Stage.HELO, held)

    def ehlo_keywords(self) -> list[str]:
        """What strictmx adds to aiosmtpd's EHLO keywords (before its final `250 HELP`)."""
        keywords = ["PIPELINING"]
        if self.settings.enhanced_status_codes:
            keywords.append("ENHANCEDSTATUSCODES")
        if self._may_xclient():
            keywords.append("XCLIENT " + " ".join(XCLIENT_ATTRIBUTES))
        return keywords

    async def on_mail(self, address: str, options: list[str]) -> str:
        state = self.state
        assert state is not None
        state.reset_transaction()
        state.mail_from = "" if address == "<>" else address
        state.mail_options = options
        state.smtputf8 = "SMTPUTF8" in options
        decision = await self._run(Stage.MAIL)
        if decision.reply is not None:
            state.mail_from = None
            return await self._hook_reply(decision)
        self._env().mail_from = address
        self._env().mail_options.extend(options)
        self._fields["mail_from"] = state.mail_from
        return self._ok("250 2.1.0 Ok")

    async def on_rcpt(self, address: str, options: list[str]) -> str:
        state = self.state
        assert state is not None
        state.rcpt = address
        state.counters.rcpts_tried += 1
        self._rcpts.append(address)
        if len(state.rcpts) >= self.settings.max_recipients:
            state.counters.bad_rcpts += 1
            return self._ok("452 4.5.3 Error: too many recipients")
        decision = await self._run(Stage.RCPT)
        if decision.reply is not None:
            state.counters.bad_rcpts += 1
            return await self._hook_reply(decision)
        if not is_always_accepted(address) and not self.settings.recipient_exists(address):
            state.counters.bad_rcpts += 1
            # Built, not parsed: a quoted local part may hold a CR or another line
            # boundary of str.splitlines, which Reply.parse would take for a second line.
            unknown = (
                f"<{address}>: Recipient address rejected: User unknown in local recipient table"
            )
            return Reply(550, "5.1.1", (unknown,)).render(
                enhanced=self.settings.enhanced_status_codes
            )
        state.rcpts.append(address)
        self._env().rcpt_tos.append(address)
        self._env().rcpt_options.extend(options)
        return self._ok("250 2.1.5 Ok")

    async def _on_data(self, method: Command, arg: str | None) -> None:
        state = self.state
        assert state is not None
        if self._conn().host_name and self._env().rcpt_tos and not arg:
            decision = await self._run(Stage.DATA)
            if decision.reply is not None:
                await self._send_decision(decision)
                return
        self._in_data = True
        try:
            await method(arg)
        finally:
            self._in_data = False

    async def on_message(self, raw: bytes) -> str:
        state = self.state
        assert state is not None
        state.message = raw
        state.bare_lf = state.bare_lf or _has_bare_lf(raw)
        self.note(f"message data: {len(raw)} octets" + (", bare LF" if state.bare_lf else ""))
        decision = await self._run(Stage.EOD)
        if decision.reply is not None:
            state.reset_transaction()
            return await self._hook_reply(decision)
        if state.add_headers:
            raw = "".join(f"{h}\r\n" for h in state.add_headers).encode() + raw
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
            state.reset_transaction()
            return self._ok("451 4.3.0 Error: queue file write error")
        state.counters.messages += 1
        # Postfix resets its error and junk counts once mail is delivered.
        state.counters.errors = 0
        state.counters.junk = 0
        state.tarpit = 0.0
        state.reset_transaction()
        status = "2.0.0 " if self.settings.enhanced_status_codes else ""
        return f"250 {status}Ok: queued as {state.id}-{n}"

    async def _on_rset(self, method: Command, arg: str | None) -> None:
        assert self.state is not None
        self.state.counters.rsets += 1
        if await self._junk(Stage.RSET, method, arg):
            self.state.reset_transaction()

    async def _on_noop(self, method: Command, arg: str | None) -> None:
        await self._junk(Stage.NOOP, method, arg)

    async def _on_vrfy(self, method: Command, arg: str | None) -> None:
        await self._junk(Stage.VRFY, method, arg)

    async def _junk(self, stage: Stage, method: Command, arg: str | None) -> bool:
        """NOOP/VRFY/RSET: count, let the stage object, else run aiosmtpd's command."""
        assert self.state is not None
        self.state.counters.junk += 1
        decision = await self._run(stage)
        if decision.reply is not None:
            await self._send_decision(decision)
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
        if self._tls_protocol is not None:
            # RFC 3207 §4.2: no second negotiation; aiosmtpd would say 220 and then fail
            # the handshake inside TLS. Postfix smtpd's reply (starttls_cmd).
            await self._write(self._ok("554 5.5.1 Error: TLS already active"))
            return
        await method(arg)

    async def _on_quit(self, method: Command, arg: str | None) -> None:
        if not arg:
            self._quit = True
        await method(arg)

    def _ok(self, line: str) -> str:
        """A reply of our own, with or without its enhanced code as the persona sends."""
        return _render(line, self.settings.enhanced_status_codes)

    async def _hook_reply(self, decision: Decision) -> str:
        """aiosmtpd pushes a hook's return value itself (one line): the lines before the
        last are written here; closing must wait for aiosmtpd's push."""
        assert decision.reply is not None
        lines = decision.reply.wire_lines(enhanced=self.settings.enhanced_status_codes)
        self._closing = self._closing or decision.close
        for line in lines[:-1]:
            await self._write(line)
        if decision.close:
            self.loop.call_soon(self._close)
        return lines[-1]

    # -- XCLIENT (Postfix XCLIENT_README) and PROXY -----------------------------------
    async def xclient(self, arg: str | None) -> None:
        state = self.state
        assert state is not None
        if not self._may_xclient():
            await self._write(self._ok("550 5.7.0 Error: insufficient authorization"))
            return
        if self._env().mail_from:
            await self._write(self._ok("503 5.5.1 Error: MAIL transaction in progress"))
            return
        if not arg:
            await self._write(self._ok("501 5.5.4 Syntax: XCLIENT attribute=value..."))
            return
        try:
            attrs, temporary = _parse_xclient(arg)
        except ValueError as exc:
            # The text quotes the client's value: built as one line, never parsed, so a
            # CR LF in it is text for the printable check, not a reply of its own.
            await self._send_reply(Reply(501, "5.5.4", (str(exc),)))
            return
        client = state.client
        if "ADDR" in attrs:
            client.address = attrs["ADDR"] or client.address
            client.name, client.name_status = None, "lookup"
        if "NAME" in attrs:
            client.name = attrs["NAME"]
            if client.name is not None:
                client.name_status = "given"
            else:
                client.name_status = "tempunavail" if "NAME" in temporary else "unavailable"
        if attrs.get("PORT"):
            client.port = int(attrs["PORT"] or 0)
        if "PROTO" in attrs:
            client.proto = attrs["PROTO"]
        client.via = "xclient"
        self.note(
            "XCLIENT: client is now "
            + f"{client.address} name={client.name or _NAME_NOTE[client.name_status]}"
            + (f" helo={attrs['HELO']}" if attrs.get("HELO") else "")
        )
        self._fields.update(client_address=client.address, client_name=client.name)
        # The session starts over with the new identity: HELO forgotten (or as given),
        # envelope and delayed verdicts dropped, CONNECT re-run, a new greeting sent.
        state.delayed.clear()
        state.reset_transaction()
        state.helo = attrs.get("HELO")
        state.helo_verb = None
        state.helo_history.clear()  # a new identity, as if it had just connected
        self._fields["helo"] = state.helo
        self._conn().host_name = None
        self.envelope = self._create_envelope()
        self._greeted = False
        await self.push("220")  # re-runs CONNECT and greets again

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


class _Commands(dict[str, Command]):
    """aiosmtpd's command table, each command routed through `StrictSMTP.dispatch`.

    aiosmtpd looks commands up with `.get`; the routing is bound at that moment, so a
    connection costs no wrapper per command it never sends.
    """

    def __init__(self, protocol: StrictSMTP, methods: dict[str, Command]) -> None:
        super().__init__(methods)
        self._protocol = protocol

    def get(self, verb: str, default: Any = None) -> Any:
        method = super().get(verb)
        if method is None:
            return default
        return functools.partial(self._protocol.dispatch, verb, method)


@functools.lru_cache(maxsize=4096)
def _parse_path(arg: str, local_part_limit: int) -> tuple[str | None, str | None]:
    """MAIL/RCPT's `<path> params` as aiosmtpd parses it: (address, rest), (None, None)
    when unparsable or the local part is over the limit (0: no limit).

    The email package's parser is not total: on some truncated paths (`<@`, `"`, `0@[`,
    `0@[<TAB>`) it raises IndexError, AttributeError or UnboundLocalError, which aiosmtpd
    answers with a 500 naming the exception. It is a pure function of the text, so here
    any exception it raises means a malformed address.
    """
    if not arg:
        return "", ""
    try:
        parse = get_angle_addr if arg.lstrip().startswith("<") else get_addr_spec
        token, rest = parse(arg)
        address: str = token.addr_spec
    except Exception:  # HeaderParseError, and the parser's own bugs (see above)
        return None, None
    if local_part_limit and len(address.rpartition("@")[0]) > local_part_limit:
        return None, None
    return address, rest


@functools.lru_cache(maxsize=256)
def _render(line: str, enhanced: bool) -> str:
    return Reply.parse(line).render(enhanced=enhanced)


def _has_bare_lf(raw: bytes) -> bool:
    return raw.count(b"\n") != raw.count(b"\r\n")


#: The reply to a command that failed inside strictmx (RFC 5321 §4.2.3's 451 text), and
#: the one that closes a connection that cannot go on (RFC 5321 §3.8).
_INTERNAL_ERROR = "451 4.3.0 Requested action aborted: local error in processing"
_INTERNAL_ERROR_CLOSE = "421 4.3.0 Service not available, closing transmission channel"

#: How the journal's XCLIENT note shows a client without a name.
_NAME_NOTE = {
    "lookup": "unknown",
    "given": "unknown",
    "unavailable": "[UNAVAILABLE]",
    "tempunavail": "[TEMPUNAVAIL]",
}


def _parse_xclient(arg: str) -> tuple[dict[str, str | None], set[str]]:
    """`NAME=x ADDR=y ...` with xtext values: the attributes, and which of them were
    `[TEMPUNAVAIL]`. That and `[UNAVAILABLE]` give None (XCLIENT_README); a NAME keeps the
    difference: a permanent or a temporary failure of the client's name lookup."""
    attrs: dict[str, str | None] = {}
    temporary: set[str] = set()
    # The 501 texts are Postfix's (smtpd.c xclient_cmd): "Bad %s syntax: %s" for a value,
    # "Bad XCLIENT attribute name: %s" for an attribute it does not know.
    for item in arg.split():
        name, eq, raw = item.partition("=")
        name = name.upper()
        if not eq or name not in XCLIENT_ATTRIBUTES:
            raise ValueError(f"Bad XCLIENT attribute name: {name}")
        value = _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), raw)
        if _CONTROL.search(value):
            # A name, HELO or login with a CR, LF or NUL in it is no name at all; it
            # would also reach the journal and every later reply that quotes it.
            raise ValueError(f"Bad {name} syntax: {value}")
        if value.upper() in ("[UNAVAILABLE]", "[TEMPUNAVAIL]", "[TEMPORARY]"):
            attrs[name] = None
            if value.upper() != "[UNAVAILABLE]":
                temporary.add(name)
            continue
        if name == "ADDR":
            address = value[5:] if value.upper().startswith("IPV6:") else value
            try:
                value = str(ipaddress.ip_address(address))
            except ValueError:
                raise ValueError(f"Bad ADDR syntax: {value}") from None
        elif name == "PORT" and not (value.isdigit() and int(value) < 65536):
            raise ValueError(f"Bad PORT syntax: {value}")
        elif name == "PROTO" and value.upper() not in ("SMTP", "ESMTP"):
            raise ValueError(f"Bad PROTO syntax: {value}")
        attrs[name] = value
        temporary.discard(name)
    return attrs, temporary


#: Commands strictmx handles before (or instead of) aiosmtpd's own method.
_HANDLERS: dict[str, Callable[[StrictSMTP, Command, str | None], Awaitable[None]]] = {
    "HELO": StrictSMTP._on_helo,
    "EHLO": StrictSMTP._on_ehlo,
    "DATA": StrictSMTP._on_data,
    "RSET": StrictSMTP._on_rset,
    "NOOP": StrictSMTP._on_noop,
    "VRFY": StrictSMTP._on_vrfy,
    "QUIT": StrictSMTP._on_quit,
    "HELP": StrictSMTP._on_help,
    "STARTTLS": StrictSMTP._on_starttls,
}
