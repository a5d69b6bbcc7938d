"""session_limits: how a client behaves over a session, and over earlier sessions.

Checks, each off when its option is None (or False):

- CONNECT: errors this client address caused in earlier sessions within `error_window`
  seconds reach `max_errors_per_client` -> TOO_MANY_ERRORS_FROM_IP,
  `550 Too many errors from your IP` (seed-28).
- HELO: with `forbid_helo_change`, a HELO/EHLO whose name differs (case-insensitively) from
  the previous one in the session -> HELO_CHANGED,
  `550 Sending system changed during session` (seed-26).
- RCPT: `max_bad_rcpts` rejected recipients in the session -> TOO_MANY_BAD_RCPTS,
  `550 Too many bad addresses` (seed-27); every later RCPT is refused, valid ones too.
  With `bad_rcpt_ratio`, Exim's default-configuration rule applies instead: more than
  `max_bad_rcpts` RCPT commands and fewer than half of them accepted (Exim's text,
  `550 Rejected for too many bad recipients`, is a reply override away). Exim counts per
  message; this counts per session.
- RSET: more than `max_rsets` RSETs in the session -> TOO_MANY_RSETS, `550 Too many RSETs`
  (seed-25). The RSET is refused; the connection stays open.
- RSET, NOOP, VRFY: Postfix's smtpd_junk_command_limit. Once more than
  `junk_command_limit` junk commands came before this one, each further one adds one to
  `session.counters.errors` (a side effect on the session; the SMTP layer runs no ERROR
  stage for it) and may reach the hard error limit -> TOO_MANY_ERRORS.
- UNKNOWN: more than `max_unknown_commands` unrecognized commands -> TOO_MANY_UNKNOWN_COMMANDS,
  `500 5.5.1 Too many unrecognized commands`, then disconnect (Exim's
  smtp_max_unknown_commands, 3 in Exim; off here by default).
- ERROR (after every 4xx/5xx reply): `hard_error_limit` errors -> TOO_MANY_ERRORS,
  `421 4.7.0 {hostname} Error: too many errors`, then disconnect (Postfix's
  smtpd_hard_error_limit). `soft_error_limit` errors -> ERROR_TARPIT: a DUNNO verdict with
  `delay = error_sleep_time`, after which the SMTP layer delays every later reply (Postfix's
  smtpd_soft_error_limit and smtpd_error_sleep_time; Postfix's code sleeps from
  `error_count >= limit`, its documentation says "exceeds").

ERROR_TARPIT refuses nothing and sends no reply of its own, so it is not one of `outcomes`
(each of those is an objection with an overridable reply): its verdict carries
`reply=None`, and a scenario cannot override a reply that is never sent.

RFC 5321: a server may close the connection only after QUIT, after a 421, or on a timeout
(§3.8); closing defensively against abuse is allowed (§7.8), which covers the 421 of
TOO_MANY_ERRORS. Closing on unrecognized commands "is in violation" (§3.8), so
TOO_MANY_UNKNOWN_COMMANDS is flagged. An RSET without arguments MUST get 250 and MUST NOT
close the connection (§4.1.1.5), and a client may send EHLO again (§4.1.4); refusing either
is a strict receiver's choice the RFC does not give it, so TOO_MANY_RSETS and HELO_CHANGED
are flagged too.
"""

from __future__ import annotations

from pydantic import Field

from strictmx.receiver.outcome import HOST, NUMBER
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import (
    DEFAULT_HELO,
    LOOPBACK_SOURCE,
    Build,
    Request,
    domain_of,
    is_name,
)
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Action, Stage, Verdict

_JUNK_STAGES = frozenset({Stage.RSET, Stage.NOOP, Stage.VRFY})
#: ClientHistory kind under which errors are remembered across sessions.
ERROR_EVENT = "error"
TARPIT = "ERROR_TARPIT"


class SessionLimitsOptions(PolicyOptions):
    max_rsets: int | None = Field(
        default=None, ge=0, description="Refuse an RSET once the session has sent more than this."
    )
    max_bad_rcpts: int | None = Field(
        default=10, ge=1, description="Refuse every RCPT once this many were rejected."
    )
    bad_rcpt_ratio: bool = Field(
        default=False,
        description="Exim's rule: refuse after max_bad_rcpts RCPTs if under half were accepted.",
    )
    forbid_helo_change: bool = Field(
        default=False, description="Refuse a HELO/EHLO that names a different host than before."
    )
    soft_error_limit: int | None = Field(
        default=10, ge=1, description="From this many errors on, tarpit every reply."
    )
    error_sleep_time: float = Field(
        default=1.0, ge=0, description="Tarpit delay in seconds once the soft limit is reached."
    )
    hard_error_limit: int | None = Field(
        default=20, ge=1, description="Reply 421 and disconnect at this many errors."
    )
    junk_command_limit: int | None = Field(
        default=100, ge=0, description="NOOP/VRFY/RSET beyond this many each count as an error."
    )
    max_errors_per_client: int | None = Field(
        default=None, ge=1, description="Refuse a client address with this many recent errors."
    )
    error_window: float = Field(
        default=3600.0, gt=0, description="Seconds over which max_errors_per_client counts."
    )
    max_unknown_commands: int | None = Field(
        default=None, ge=0, description="Disconnect after more than this many unknown commands."
    )


class SessionLimits(Policy[SessionLimitsOptions]):
    """Error, junk-command, RSET, bad-recipient and HELO-change limits (see the module doc)."""

    name = "session_limits"
    summary = "Session behaviour limits: errors, junk commands, RSETs, bad recipients, HELO"
    stages = frozenset(
        {
            Stage.CONNECT,
            Stage.HELO,
            Stage.RCPT,
            Stage.RSET,
            Stage.NOOP,
            Stage.VRFY,
            Stage.UNKNOWN,
            Stage.ERROR,
        }
    )
    Options = SessionLimitsOptions
    outcomes = (
        Outcome(
            "TOO_MANY_RSETS",
            FROM_CATALOGUE,
            "More RSET commands in one session than max_rsets.",
            rfc_allows=False,
            fields={"count": NUMBER, "limit": NUMBER},
            stage=Stage.RSET,
        ),
        Outcome(
            "TOO_MANY_BAD_RCPTS",
            FROM_CATALOGUE,
            "Too many rejected recipients in one session; every later RCPT is refused.",
            fields={"count": NUMBER, "limit": NUMBER},
            stage=Stage.RCPT,
        ),
        Outcome(
            "HELO_CHANGED",
            FROM_CATALOGUE,
            "A new HELO/EHLO named a different host than the previous one.",
            rfc_allows=False,
            fields={"previous": HOST},
            stage=Stage.HELO,
        ),
        Outcome(
            "TOO_MANY_ERRORS",
            FROM_CATALOGUE,
            "The session reached hard_error_limit errors.",
            action=Action.DISCONNECT,
            fields={"count": NUMBER, "limit": NUMBER},
            stage=Stage.ERROR,
        ),
        Outcome(
            "TOO_MANY_ERRORS_FROM_IP",
            FROM_CATALOGUE,
            "The client address caused max_errors_per_client errors within error_window.",
            fields={"count": NUMBER, "limit": NUMBER},
            stage=Stage.CONNECT,
        ),
        Outcome(
            "TOO_MANY_UNKNOWN_COMMANDS",
            FROM_CATALOGUE,
            "More unrecognized commands than max_unknown_commands.",
            action=Action.DISCONNECT,
            rfc_allows=False,
            fields={"count": NUMBER, "limit": NUMBER},
            stage=Stage.UNKNOWN,
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """The command sequence that runs past the limit the outcome names."""
        ident = req.identity
        outcome = req.entry.outcome
        helo = f"EHLO {ident.helo}"
        cannot = "swaks cannot send this command sequence; play the scenario's expect case"
        if outcome == "TOO_MANY_RSETS":
            return Build(
                options={"max_rsets": 2},
                case={"script": [helo, "RSET", "RSET", "RSET"]},
                at="rset",
                listed_under="session",
                swaks_cannot=cannot,
            )
        if outcome == "TOO_MANY_BAD_RCPTS":
            domain = domain_of(ident.rcpt)
            return Build(
                options={"max_bad_rcpts": 2},
                receiver={"local_recipients": [ident.rcpt]},
                case={
                    "script": [
                        helo,
                        f"MAIL FROM:<{ident.mail_from}>",
                        f"RCPT TO:<nobody1@{domain}>",
                        f"RCPT TO:<nobody2@{domain}>",
                        f"RCPT TO:<{ident.rcpt}>",
                    ]
                },
                at="rcpt",
                listed_under="session",
                swaks_cannot=cannot,
            )
        if outcome == "HELO_CHANGED":
            other = "other." + (ident.helo if is_name(ident.helo) else DEFAULT_HELO)
            previous = req.fields.get("previous")
            first, second = (previous, ident.helo) if previous else (ident.helo, other)
            return Build(
                options={"forbid_helo_change": True},
                case={"script": [f"EHLO {first}", f"EHLO {second}"]},
                at="helo",
                listed_under="session",
                bound={"previous": first, "helo": second},
                swaks_cannot=cannot,
            )
        if outcome == "TOO_MANY_ERRORS":
            # Junk commands over the junk limit count as errors, and the command that reaches
            # the hard limit gets the 421 itself (Postfix's smtpd_junk_command_limit).
            return Build(
                options={"junk_command_limit": 0, "hard_error_limit": 1, "soft_error_limit": None},
                case={"script": [helo, "NOOP", "NOOP"]},
                at="noop",
                listed_under="session",
                swaks_cannot=cannot,
            )
        if outcome == "TOO_MANY_UNKNOWN_COMMANDS":
            return Build(
                options={"max_unknown_commands": 1},
                case={"script": [helo, "FOO", "BAR"]},
                at="unknown",
                listed_under="session",
                swaks_cannot=cannot,
            )
        # TOO_MANY_ERRORS_FROM_IP: one session's errors, then the next connection
        return Build(
            options={"max_errors_per_client": 2},
            before=[
                {
                    "name": "two unknown commands count as errors of this address",
                    "client": LOOPBACK_SOURCE,
                    "script": [helo, "FOO", "BAR"],
                    "result": {"refused": {"at": "unknown", "code": 500}},
                }
            ],
            at="connect",
            listed_under="session",
        )

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        if stage is Stage.CONNECT:
            return self._errors_from_client(session, ctx)
        if stage is Stage.HELO:
            return self._helo_change(session, ctx)
        if stage is Stage.RCPT:
            return self._bad_rcpts(session, ctx)
        if stage is Stage.UNKNOWN:
            return self._unknown_commands(session, ctx)
        if stage is Stage.ERROR:
            return self._after_error(session, ctx)
        if stage in _JUNK_STAGES:
            verdict = self._junk(stage, session, ctx)
            if verdict is None and stage is Stage.RSET:
                verdict = self._rsets(session, ctx)
            return verdict
        return None

    def _errors_from_client(self, session: Session, ctx: Context) -> Verdict | None:
        limit = self.options.max_errors_per_client
        if limit is None:
            return None
        address = session.client.address
        window = self.options.error_window
        count = ctx.history.count(ERROR_EVENT, address, since=ctx.clock.monotonic() - window)
        if count < limit:
            return None
        return self.verdict(
            "TOO_MANY_ERRORS_FROM_IP",
            Stage.CONNECT,
            session,
            ctx,
            f"{count} errors from {address} in the last {window:g} seconds, limit {limit}",
            count=count,
            limit=limit,
        )

    def _helo_change(self, session: Session, ctx: Context) -> Verdict | None:
        if not self.options.forbid_helo_change or not session.helo_history:
            return None
        previous = session.helo_history[-1]
        new = session.helo or ""
        if new.lower() == previous.lower():
            return None
        return self.verdict(
            "HELO_CHANGED",
            Stage.HELO,
            session,
            ctx,
            f"HELO/EHLO name changed from {previous!r} to {new!r} during the session",
            previous=previous,
        )

    def _bad_rcpts(self, session: Session, ctx: Context) -> Verdict | None:
        limit = self.options.max_bad_rcpts
        if limit is None:
            return None
        bad = session.counters.bad_rcpts
        if self.options.bad_rcpt_ratio:
            # Exim's default configuration: rcpt_count > 10 and recipients_count <
            # ${eval:rcpt_count/2}, integer division; rcpt_count includes this RCPT and
            # recipients_count does not.
            tried = session.counters.rcpts_tried
            accepted = max(tried - 1 - bad, 0)
            if tried <= limit or accepted >= tried // 2:
                return None
            reason = (
                f"{tried} RCPT commands in this session (more than {limit}) "
                f"and only {accepted} recipients accepted, fewer than half"
            )
        else:
            if bad < limit:
                return None
            reason = f"{bad} recipients already rejected in this session, limit {limit}"
        return self.verdict(
            "TOO_MANY_BAD_RCPTS", Stage.RCPT, session, ctx, reason, count=bad, limit=limit
        )

    def _rsets(self, session: Session, ctx: Context) -> Verdict | None:
        limit = self.options.max_rsets
        count = session.counters.rsets
        if limit is None or count <= limit:
            return None
        return self.verdict(
            "TOO_MANY_RSETS",
            Stage.RSET,
            session,
            ctx,
            f"{count} RSET commands in this session, limit {limit}",
            count=count,
            limit=limit,
        )

    def _junk(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        limit = self.options.junk_command_limit
        if limit is None:
            return None
        junk = session.counters.junk
        # Postfix smtpd.c: `if (state->junk_cmds++ > var_smtpd_junk_cmd_limit)
        # state->error_count++` compares the count before this command; ours includes it.
        if junk - 1 <= limit:
            return None
        session.counters.errors += 1
        self._remember_error(session, ctx)
        return self._hard_limit(
            stage,
            session,
            ctx,
            f"{junk} junk commands (NOOP/VRFY/RSET) in this session, over the junk limit "
            f"of {limit}, so each counts as an error: ",
        )

    def _unknown_commands(self, session: Session, ctx: Context) -> Verdict | None:
        limit = self.options.max_unknown_commands
        count = session.counters.unknown_commands
        if limit is None or count <= limit:
            return None
        return self.verdict(
            "TOO_MANY_UNKNOWN_COMMANDS",
            Stage.UNKNOWN,
            session,
            ctx,
            f"{count} unrecognized commands in this session, limit {limit}",
            count=count,
            limit=limit,
        )

    def _after_error(self, session: Session, ctx: Context) -> Verdict | None:
        self._remember_error(session, ctx)
        verdict = self._hard_limit(Stage.ERROR, session, ctx)
        if verdict is not None:
            return verdict
        limit = self.options.soft_error_limit
        errors = session.counters.errors
        if limit is None or errors < limit:
            return None
        delay = self.options.error_sleep_time
        return self.note(
            TARPIT,
            Stage.ERROR,
            f"{errors} errors in this session, soft limit {limit}: "
            f"every later reply is delayed by {delay:g} seconds",
            delay=delay,
            count=errors,
            limit=limit,
        )

    def _hard_limit(
        self, stage: Stage, session: Session, ctx: Context, cause: str = ""
    ) -> Verdict | None:
        limit = self.options.hard_error_limit
        errors = session.counters.errors
        if limit is None or errors < limit:
            return None
        return self.verdict(
            "TOO_MANY_ERRORS",
            stage,
            session,
            ctx,
            f"{cause}{errors} errors in this session, hard limit {limit}",
            count=errors,
            limit=limit,
        )

    def _remember_error(self, session: Session, ctx: Context) -> None:
        # Only a configured per-client limit needs the history; skip the bookkeeping otherwise.
        if self.options.max_errors_per_client is not None:
            ctx.history.add(ERROR_EVENT, session.client.address, ctx.clock.monotonic())
