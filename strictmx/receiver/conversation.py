"""The SMTP conversation, sans-IO: events in, decisions and replies out.

One `Conversation` per SMTP session. It never touches a socket: the transport
(strictmx/receiver/smtp.py) tells it what the client did -- a greeting, a command and its
argument, the message, TLS established, a reply it sent -- and gets back a `Step`: the
`Reply` to send (None: the transport's own normal reply for that command) and whether the
line closes after it. `strictmx check` drives the same object with no transport at all,
so what check reports is what serve does.

It owns what happens to the `Session` at each stage: HELO history and its rollback on a
refused HELO, the envelope, the counters, CONNECT refusals that answer every later
command, delay_reject (through the engine), the ERROR and UNKNOWN stages, XCLIENT's new
identity, and which verdicts are recorded (each once, through `record`). Its methods are
coroutines only because policies await the world (DNS, callouts).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from .dialect import Dialect
from .engine import Decision, Engine
from .persona import Persona
from .policy import Context
from .scenario import ReceiverSettings
from .session import Client, Session
from .verdict import Reply, Stage, Verdict

log = logging.getLogger(__name__)

XCLIENT_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT")
_XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: Journal fields a session may change (strictmx/receiver/journal.py session_updated).
Fields = dict[str, str | bool | None]


class Step(NamedTuple):
    """What the transport does after an event (a tuple: made for every command)."""

    #: The reply to send; None: the command's normal reply (the transport's own).
    reply: Reply | None = None
    #: Close the line once the reply is out.
    close: bool = False


PROCEED = Step()

# The conversation's own replies (MAIL and RCPT accepted, queued, the greeting) are the
# persona's dialect's (strictmx/receiver/dialect.py); the recipient limit is a verdict
# (strictmx/policies/smtpd.py).
# XCLIENT (Postfix smtpd.c xclient_cmd).
_XCLIENT_DENIED = Reply(550, "5.7.0", ("Error: insufficient authorization",))
_XCLIENT_IN_MAIL = Reply(503, "5.5.1", ("Error: MAIL transaction in progress",))
_XCLIENT_SYNTAX = Reply(501, "5.5.4", ("Syntax: XCLIENT attribute=value...",))

#: How the journal's XCLIENT note shows a client without a name.
_NAME_NOTE = {
    "lookup": "unknown",
    "given": "unknown",
    "unavailable": "[UNAVAILABLE]",
    "tempunavail": "[TEMPUNAVAIL]",
}


def _ignore(_: object) -> None:
    return None


class Conversation:
    def __init__(
        self,
        persona: Persona,
        ctx: Context,
        *,
        record: Callable[[Verdict], None] = _ignore,
        note: Callable[[str], None] = _ignore,
    ) -> None:
        self.settings: ReceiverSettings = persona.settings
        self.engine: Engine = persona.engine
        self.smtpd = persona.smtpd
        self.dialect = dialect = persona.dialect
        self._greeting, self._ok_mail, self._ok_rcpt = _steps(dialect)
        self.ctx = ctx
        #: Called once for every verdict to keep (the journal, check's report).
        self.record = record
        #: Called with a line for the transcript's notes.
        self.note = note
        self.session: Session | None = None
        #: Journal fields changed since the transport last took them.
        self.fields: Fields = {}
        #: A HELO/EHLO was accepted and not forgotten since (XCLIENT forgets it).
        self.helo_accepted = False
        #: The reply being sent is the last: no further stage runs (ERROR after a 421).
        self.closing = False
        #: The client sent QUIT (the session ends by its wish, not cut).
        self.quit = False
        #: warn_only: the stage each objection's reply would be sent at, by id(verdict).
        self.would_reply_at: dict[int, Stage] = {}
        self._recorded: set[int] = set()
        self._pending_unknown = False
        self._answering_error = False
        self._hello_before: tuple[str | None, str | None] = (None, None)
        self._hello_held: Verdict | None = None

    # -- the session --------------------------------------------------------------------
    def open(self, client: Client, started: datetime) -> Session:
        session = Session(client, started=started)
        self.session = session
        return session

    def _state(self) -> Session:
        assert self.session is not None, "open() first"
        return self.session

    async def connect(self) -> Step:
        """CONNECT: the greeting, or the refusal that replaces it (RFC 5321 §3.1 lets a
        server answer 554 at connect). Refused without delay_reject, every later command
        but QUIT gets that reply too (`refusal`)."""
        state = self.session
        assert state is not None, "open() first"
        decision = await self.engine.run(Stage.CONNECT, state, self.ctx)
        if decision.verdicts or decision.would_reply_at:
            self._took(decision)
        if decision.reply is None:
            return self._greeting
        if decision.close:
            return self._decided(decision)
        state.refused = decision.sent
        return Step(decision.reply)

    def command(self, verb: str) -> Reply | None:
        """A command is about to be handled: its reply if the session is refused."""
        state = self.session
        assert state is not None, "open() first"
        state.command = verb
        refused = state.refused
        if refused is not None and verb != "QUIT":
            return refused.reply
        return None

    def line(self, text: str, *, bare_lf: bool, known: bool) -> None:
        """A command line arrived (`known`: its verb is a command the transport has)."""
        state = self.session
        assert state is not None, "open() first"
        if bare_lf:
            state.bare_lf = True
        if not known:
            state.counters.unknown_commands += 1
            self._pending_unknown = True

    async def unknown(self) -> Step:
        """The unknown command's 50x is about to go out: the UNKNOWN stage may replace it."""
        if not self._pending_unknown:
            return PROCEED
        self._pending_unknown = False
        state = self.session
        assert state is not None, "open() first"
        decision = await self.engine.run(Stage.UNKNOWN, state, self.ctx)
        if decision.verdicts or decision.would_reply_at:
            self._took(decision)
        return self._decided(decision) if decision.reply is not None else PROCEED

    def tls_started(self, version: str | None = None) -> None:
        """STARTTLS finished; `version` is the protocol negotiated ("TLSv1.3")."""
        self._state().tls = True
        self._state().tls_version = version
        self.fields["tls"] = True

    # -- HELO/EHLO ----------------------------------------------------------------------
    async def hello(self, verb: str, name: str | None) -> Step:
        """HELO/EHLO: policies see every earlier accepted name in helo_history, the new
        one in helo. PROCEED: the transport answers, then tells `hello_done`."""
        state = self.session
        assert state is not None, "open() first"
        self._hello_before = (state.helo, state.helo_verb)
        if state.helo:
            state.helo_history.append(state.helo)
        state.helo, state.helo_verb = (name or "").strip(), verb
        if state.helo and not self.helo_accepted:
            # Until a name is accepted, the journal keeps the one sent, refused or not
            # (the session forgets it, RFC 5321 §4.1.4): a session refused at HELO is
            # looked for by that name. An accepted name is not replaced by a refused one.
            self.fields["helo"] = state.helo
        self._hello_held = state.delayed.pop(Stage.HELO, None)
        decision = await self.engine.run(Stage.HELO, state, self.ctx)
        if decision.verdicts or decision.would_reply_at:
            self._took(decision)
        if decision.reply is None:
            return PROCEED
        self.hello_done(False)
        return self._decided(decision)

    def hello_done(self, accepted: bool) -> None:
        state = self.session
        assert state is not None, "open() first"
        if accepted:
            self.helo_accepted = True
            state.esmtp = state.helo_verb == "EHLO"
            state.reset_transaction()
            self.fields["helo"] = state.helo
            return
        # RFC 5321 §4.1.4: a refused EHLO leaves the session as it was.
        before = self._hello_before
        if before[0]:
            state.helo_history.pop()
        state.helo, state.helo_verb = before
        if self._hello_held is not None:
            state.delayed.setdefault(Stage.HELO, self._hello_held)
        self._hello_held = None

    # -- the envelope -------------------------------------------------------------------
    async def mail(self, address: str, options: list[str]) -> Step:
        state = self.session
        assert state is not None, "open() first"
        state.reset_transaction()
        state.mail_from = "" if address == "<>" else address
        state.mail_options = options
        state.smtputf8 = "SMTPUTF8" in options
        # Kept in the journal refused or not, as the HELO name is: the sender is how a
        # refused transaction is found.
        self.fields["mail_from"] = state.mail_from
        decision = await self.engine.run(Stage.MAIL, state, self.ctx)
        if decision.verdicts or decision.would_reply_at:
            self._took(decision)
        if decision.reply is not None:
            state.mail_from = None
            return self._decided(decision)
        return self._ok_mail

    async def rcpt(self, address: str) -> Step:
        state = self.session
        assert state is not None, "open() first"
        state.rcpt = address
        state.counters.rcpts_tried += 1
        decision = None
        limit = self.settings.max_recipients
        if len(state.rcpts) >= limit:
            # Before the RCPT policies, as Postfix checks smtpd_recipient_limit.
            reason = f"the transaction has {len(state.rcpts)} recipients; the limit is {limit}"
            decision = self._refuse("TOO_MANY_RECIPIENTS", Stage.RCPT, reason)
        if decision is None or decision.reply is None:
            # Unknown users too: local_recipients ends the chain (persona.py).
            decision = await self.engine.run(Stage.RCPT, state, self.ctx)
            if decision.verdicts or decision.would_reply_at:
                self._took(decision)
        if decision.reply is not None:
            state.counters.bad_rcpts += 1
            return self._decided(decision)
        state.rcpts.append(address)
        return self._ok_rcpt

    async def vrfy(self, address: str) -> Step:
        """VRFY of `address` where the dialect has VRFY run the recipient checks (Postfix
        smtpd.c vrfy_cmd: smtpd_check_rcpt before its 252): the RCPT stage's policies on
        it, the recipient limit aside. It is no recipient: the transaction, the recipient
        counters and the delayed verdicts stay as they were (a delayed refusal is the
        answer, as at RCPT). PROCEED: the transport's own 252."""
        state = self.session
        assert state is not None, "open() first"
        before = state.rcpt
        state.rcpt = address
        try:
            decision = await self.engine.run(Stage.RCPT, state, self.ctx)
        finally:
            state.rcpt = before
        if decision.verdicts or decision.would_reply_at:
            self._took(decision)
        return self._decided(decision) if decision.reply is not None else PROCEED

    async def data(self) -> Step:
        """DATA, before its 354: the DATA stage may refuse (PROCEED: the transport goes
        on with its own checks and the 354)."""
        state = self.session
        if not (self.helo_accepted and state is not None and state.rcpts):
            return PROCEED
        decision = await self.engine.run(Stage.DATA, state, self.ctx)
        if decision.verdicts or decision.would_reply_at:
            self._took(decision)
        return self._decided(decision) if decision.reply is not None else PROCEED

    async def message(self, raw: bytes) -> Step:
        """End of data. PROCEED: store `stored_form(raw)`, then `queued` or `queue_failed`."""
        state = self.session
        assert state is not None, "open() first"
        state.message = raw
        in_message = _has_bare_lf(raw)
        state.bare_lf = state.bare_lf or in_message
        self.note(f"message data: {len(raw)} octets" + (", bare LF" if state.bare_lf else ""))
        if in_message and self.dialect.data_bare_lf == "reject":
            # The dialect's own rule, before any policy (Postfix smtpd, with
            # smtpd_forbid_bare_newline = reject, refuses it before cleanup sees it); the
            # session goes on (recorded live: QUIT after it gets 221).
            self.note("message refused: a line ends in a bare LF (the dialect's data_bare_lf)")
            state.reset_transaction()
            return Step(self.dialect.replies["bare_lf"])
        decision = await self.engine.run(Stage.EOD, state, self.ctx)
        if decision.verdicts or decision.would_reply_at:
            self._took(decision)
        if decision.reply is not None:
            state.reset_transaction()
            return self._decided(decision)
        return PROCEED

    def stored_form(self, raw: bytes) -> bytes:
        """The message as kept: with the header lines policies added (Received-SPF, ...) and,
        when an authentication policy ran, Authentication-Results (RFC 8601)."""
        assert self.session is not None, "open() first"
        headers = self.session.add_headers
        if self.session.auth.any():
            headers = [self.session.auth.header(self.ctx.hostname), *headers]
        if not headers:
            return raw
        return "".join(f"{h}\r\n" for h in headers).encode() + raw

    def queued(self, queue_id: str) -> Step:
        state = self.session
        assert state is not None, "open() first"
        state.counters.messages += 1
        # Postfix resets its error and junk counts once mail is delivered.
        state.counters.errors = 0
        state.counters.junk = 0
        state.tarpit = 0.0
        state.reset_transaction()
        # Not through Reply.format: one per message, and the id is strictmx's own.
        queued = self.dialect.replies["queued"]
        lines = tuple(line.replace("{queue_id}", queue_id) for line in queued.lines)
        return Step(Reply(queued.code, queued.status, lines))

    def queue_failed(self, reason: str) -> Step:
        """The message could not be kept: never claim it was taken, warn_only or not."""
        self._state().reset_transaction()
        self.note(f"message not kept: {reason}")
        return Step(self.dialect.replies["queue_error"])

    # -- NOOP, VRFY, RSET, HELP ---------------------------------------------------------
    async def junk(self, stage: Stage) -> Step:
        """A non-mail command: counted, and its stage may object (PROCEED: the transport
        answers it; after RSET, `reset`)."""
        state = self.session
        assert state is not None, "open() first"
        if stage is Stage.RSET:
            state.counters.rsets += 1
        state.counters.junk += 1
        decision = await self.engine.run(stage, state, self.ctx)
        if decision.verdicts or decision.would_reply_at:
            self._took(decision)
        return self._decided(decision) if decision.reply is not None else PROCEED

    def reset(self) -> None:
        self._state().reset_transaction()

    # -- replies sent -------------------------------------------------------------------
    async def sent(self, code: int) -> Step:
        """A reply's last line went out: count 4xx/5xx and let the ERROR stage answer."""
        if code < 400:
            return PROCEED
        state = self.session
        assert state is not None, "open() first"
        state.counters.errors += 1
        if code >= 500:
            state.counters.rejections += 1
        else:
            state.counters.deferrals += 1
        if self._answering_error:
            self._answering_error = False  # that was the ERROR stage's own reply
            return PROCEED
        # The reply that closes the line ends the session: no further verdict (a second
        # 421 from the error limit after the junk limit's 421, for one).
        if self.closing:
            return PROCEED
        try:
            decision = await self.engine.run(Stage.ERROR, state, self.ctx)
            if decision.verdicts or decision.would_reply_at:
                self._took(decision)
        except Exception:
            # The reply is out; a failing policy here must not end the session (this may
            # be the reply to an earlier failure: nothing would catch it).
            log.exception("session %s: the ERROR stage failed", state.id)
            self.note("internal error in the error stage")
            return PROCEED
        if decision.reply is None:
            return PROCEED
        self._answering_error = True
        return self._decided(decision)

    def failed(self) -> None:
        """A command failed inside strictmx: nothing half done lingers."""
        if self.session is not None:
            self.session.reset_transaction()

    # -- XCLIENT (Postfix XCLIENT_README) -----------------------------------------------
    async def xclient(self, arg: str | None, *, trusted: bool) -> Step:
        """XCLIENT: the refusal, or PROCEED from a `trusted` peer: the session has its new
        identity, and the transport greets again (`connect`: CONNECT runs again)."""
        state = self.session
        assert state is not None, "open() first"
        if not trusted:
            return Step(_XCLIENT_DENIED)
        if state.mail_from is not None:
            return Step(_XCLIENT_IN_MAIL)
        if not arg:
            return Step(_XCLIENT_SYNTAX)
        try:
            attrs, temporary = parse_xclient(arg)
        except ValueError as exc:
            # The text quotes the client's value: built as one line, never parsed, so a
            # CR LF in it is text for the printable check, not a reply of its own.
            return Step(Reply(501, "5.5.4", (str(exc),)))
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
        self.fields.update(client_address=client.address, client_name=client.name)
        # The session starts over with the new identity: HELO forgotten (or as given),
        # envelope and delayed verdicts dropped, CONNECT re-run, a new greeting sent.
        state.delayed.clear()
        state.reset_transaction()
        state.helo = attrs.get("HELO")
        state.helo_verb = None
        state.helo_history.clear()  # a new identity, as if it had just connected
        self.helo_accepted = False
        self.fields["helo"] = state.helo
        return PROCEED

    # -- the end ------------------------------------------------------------------------
    def end(self, *, in_data: bool, stopping: bool) -> str:
        """The line closed: record what was decided and never sent; the session's outcome."""
        state = self.session
        assert state is not None, "open() first"
        cut = not self.quit and (in_data or state.mail_from is not None or stopping)
        if not self.quit:
            self.note("connection closed" if not cut else "connection lost: session aborted")
        for verdict in state.delayed.values():
            self._record(verdict)  # decided, never sent
        if cut:
            return "aborted"
        if state.counters.messages:
            return "accepted"
        if state.counters.rejections:
            return "rejected"
        if state.counters.deferrals:
            return "deferred"
        return "idle"

    # -- the engine ---------------------------------------------------------------------
    def _took(self, decision: Decision) -> Decision:
        """Record what a stage decided (not a coroutine of its own: the hot path)."""
        for verdict in decision.verdicts:
            self._record(verdict)
        if decision.would_reply_at:
            self.would_reply_at.update(decision.would_reply_at)
        return decision

    def _refuse(self, outcome: str, stage: Stage, reason: str) -> Decision:
        decision = self.engine.refuse(self.smtpd, outcome, stage, self._state(), self.ctx, reason)
        for verdict in decision.verdicts:
            self._record(verdict)
        if decision.would_reply_at:
            self.would_reply_at.update(decision.would_reply_at)
        return decision

    def _record(self, verdict: Verdict) -> None:
        if id(verdict) in self._recorded:
            return
        self._recorded.add(id(verdict))
        self._state().verdicts.append(verdict)
        self.record(verdict)

    def _decided(self, decision: Decision) -> Step:
        assert decision.reply is not None
        if decision.close:
            self.closing = True
        return Step(decision.reply, decision.close)


@functools.lru_cache(maxsize=64)
def _steps(dialect: Dialect) -> tuple[Step, Step, Step]:
    """The steps every session takes alike: the greeting, MAIL and RCPT accepted."""
    replies = dialect.replies
    return Step(replies["greeting_default"]), Step(replies["mail_ok"]), Step(replies["rcpt_ok"])


def _has_bare_lf(raw: bytes) -> bool:
    return raw.count(b"\n") != raw.count(b"\r\n")


def parse_xclient(arg: str) -> tuple[dict[str, str | None], set[str]]:
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
