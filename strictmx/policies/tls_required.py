"""tls_required: the client must have used STARTTLS, with a protocol no older than a floor."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field

from strictmx.receiver.outcome import TEXT
from strictmx.receiver.policy import FROM_CATALOGUE, Context, Outcome, Policy, PolicyOptions
from strictmx.receiver.reproduction import Build, Request
from strictmx.receiver.session import Session
from strictmx.receiver.verdict import Action, Stage, Verdict

TlsVersion = Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
_STAGES = {"mail": Stage.MAIL, "rcpt": Stage.RCPT, "data": Stage.DATA}
#: A protocol name as OpenSSL reports it (`SSLSocket.version()`): "TLSv1", "TLSv1.3", "SSLv3".
_PROTOCOL = re.compile(r"(SSL|TLS)v(\d+)(?:\.(\d+))?")


class TlsRequiredOptions(PolicyOptions):
    at: Literal["mail", "rcpt", "data"] | None = Field(
        None,
        description="The stage that refuses when the policy is listed under `session:` "
        "(Postfix: the restriction list holding reject_plaintext_session; Gmail: rcpt); "
        "none: every stage it runs at.",
    )
    min_version: TlsVersion | None = Field(
        "TLSv1.2",
        description="The oldest protocol accepted after STARTTLS (RFC 8996 deprecates TLS "
        "1.0 and 1.1); none: any. The handshake itself is bounded by receiver.tls_min_version.",
    )


def protocol_rank(version: str) -> tuple[int, int, int] | None:
    """`version` ordered for comparison (SSL before TLS); None for a name not recognised."""
    found = _PROTOCOL.fullmatch(version.strip())
    if found is None:
        return None
    family, major, minor = found.groups()
    return (0 if family == "SSL" else 1, int(major), int(minor or 0))


class TlsRequired(Policy[TlsRequiredOptions]):
    """Refuse MAIL, RCPT or DATA from a client that did not use STARTTLS (RFC 3207), or
    whose TLS protocol is older than `min_version`.

    RFC 3207 §4 lets a server require TLS for some or all mail ("530 5.7.0 Must issue a
    STARTTLS command first"); strict receivers use it per recipient domain (Gmail's
    "TLS required for RCPT domain") or per session (Postfix's `reject_plaintext_session`).
    List it under `mail:`, `rcpt:` or `data:`, or under `session:` with `at:` naming the
    stage that refuses.

    - TLS_REQUIRED: the session is in clear text (no STARTTLS).
    - TLS_VERSION_TOO_OLD: STARTTLS negotiated a protocol (session.tls_version, as OpenSSL
      names it: "TLSv1.2") under `min_version`. A name not recognised is not judged. The
      receiver's `tls_min_version` refuses old protocols in the handshake already; this
      outcome is for a receiver that lets the handshake finish and refuses the mail.

    Postmaster: RFC 5321 §4.5.1 wants mail to postmaster accepted. The receiver's
    `always_accepted` recipients (postmaster, abuse by default) are accepted at RCPT
    whatever this policy decides at MAIL or RCPT; at DATA it refuses every transaction, as
    Postfix's `reject_plaintext_session` in smtpd_data_restrictions does.

    Default replies: Postfix's `450 4.7.1 Session encryption is required` (smtpd_check.c,
    plaintext_reject_code 450) for TLS_REQUIRED; for TLS_VERSION_TOO_OLD no receiver's text
    is known, so the project words `450 4.7.1 TLS {tls_version} is not accepted, use
    {min_version} or newer`. Gmail's `421 4.7.0 TLS required for RCPT domain, closing
    connection.` and its 4.7.29 bulk text are catalogue entries a persona overrides with.
    """

    name = "tls_required"
    summary = "Refuse mail sent without STARTTLS, or with a TLS protocol under a floor"
    stages = frozenset({Stage.MAIL, Stage.RCPT, Stage.DATA})
    pure = False  # reads the session's TLS state, which no cache key covers
    Options = TlsRequiredOptions
    outcomes: ClassVar[tuple[Outcome, ...]] = (
        Outcome(
            "TLS_REQUIRED",
            FROM_CATALOGUE,
            "The client sent mail in clear text; this receiver requires STARTTLS.",
            action=Action.DEFER,
        ),
        Outcome(
            "TLS_VERSION_TOO_OLD",
            FROM_CATALOGUE,
            "The client used STARTTLS with a protocol older than the receiver accepts.",
            action=Action.DEFER,
            fields={"tls_version": TEXT, "min_version": TEXT},
        ),
    )

    @classmethod
    def reproduce(cls, req: Request) -> Build:
        """A session without STARTTLS (swaks and smtplib do not start TLS unless told), or
        one whose client offers TLS 1.2 at most to a policy wanting 1.3: the newest pair a
        current TLS library still negotiates, whatever old protocol the bounce names."""
        if req.entry.outcome == "TLS_REQUIRED":
            return Build(notes=["the client must not use STARTTLS (swaks without --tls)"])
        return Build(
            options={"min_version": "TLSv1.3"},
            case={"starttls": "TLSv1.2"},
            notes=["the case starts TLS offering TLS 1.2 at most; the policy wants 1.3"],
            swaks_cannot="the client must offer TLS 1.2 at most: play it with `strictmx run "
            "scenario.yaml`, whose case starts TLS so (or serve with --tls self-signed and "
            "use a client capped at TLS 1.2)",
        )

    async def check(self, stage: Stage, session: Session, ctx: Context) -> Verdict | None:
        at = self.options.at
        if at is not None and _STAGES[at] is not stage:
            return None
        if not session.tls:
            return self.verdict(
                "TLS_REQUIRED",
                stage,
                session,
                ctx,
                f"{session.client.address} sent {stage.value.upper()} without STARTTLS",
            )
        floor = self.options.min_version
        version = session.tls_version
        if floor is None or version is None:
            return None
        rank = protocol_rank(version)
        if rank is None or rank >= (protocol_rank(floor) or rank):
            return None
        return self.verdict(
            "TLS_VERSION_TOO_OLD",
            stage,
            session,
            ctx,
            f"{session.client.address} negotiated {version} at STARTTLS; {floor} or newer "
            "is required",
            tls_version=version,
            min_version=floor,
        )
