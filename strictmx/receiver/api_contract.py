"""The HTTP API's contract: where it lives, the bounds it keeps, and the models of what it
sends and takes (strictmx/receiver/api.py serves them; strictmx/receiver/api_openapi.py
generates the OpenAPI schemas from them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import scenario as scenarios
from .scenario import ReceiverSettings

PREFIX: Final = "/api/v1"
#: Scenario YAML bodies can carry whole DNS zones; anything larger is a mistake.
MAX_BODY: Final = scenarios.MAX_SCENARIO_BYTES
#: Connections open at once; CI jobs use a handful, and each one is a file descriptor the
#: SMTP side also needs.
MAX_CONNECTIONS: Final = 32
#: Seconds a request body may take to arrive in full (4 MiB over any link that CI uses
#: takes well under a second).
BODY_DEADLINE: Final = 10.0
#: Bytes of request bodies held at once by all requests together.
MAX_BUFFERED: Final = 4 * MAX_BODY
#: Seconds an idle connection, or one that has not sent a whole request, stays open.
KEEPALIVE: Final = 15.0
#: Connections over MAX_CONNECTIONS that are answered 503 at once; beyond, they are reset.
BUSY_CAP: Final = 4 * MAX_CONNECTIONS
#: Seconds such an answered connection waits for the client to close.
BUSY_LINGER: Final = 1.0
YAML_TYPES: Final = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
)

# -- models: what the API sends and takes (the OpenAPI schemas come from these) ---------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Model):
    """One problem: a scenario's file, line and key path, or a request field (`path`)."""

    file: str | None = None
    line: int | None = None
    path: str = ""
    message: str


class Error(_Model):
    error: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ClientInfo(_Model):
    peer: str = Field(description="The socket's address as the receiver saw it.")
    port: int = Field(description="The socket's source port.")
    address: str = Field(
        description="The address policies judged: the scenario's simulated address for the "
        "peer, or an XCLIENT/PROXY override."
    )
    name: str | None = Field(
        description="The client's host name given by the scenario's client map or XCLIENT "
        "NAME; null when none was given (PTR lookups made by policies are in verdict details)."
    )


class Envelope(_Model):
    mail_from: str | None = Field(description="The last MAIL FROM address ('' is <>).")
    rcpts: list[str] = Field(description="Every RCPT TO tried, accepted or not.")


class VerdictInfo(_Model):
    policy: str
    outcome: str = Field(description="The policy's outcome id, e.g. HELO_NOT_FQDN.")
    action: str = Field(description="dunno, permit, reject, defer or disconnect.")
    stage: str = Field(description="The stage the verdict was decided at.")
    replied_at: str | None = Field(
        description="The stage whose reply carried it (later with delay_reject); null if never "
        "sent."
    )
    code: int | None
    status: str | None = Field(description="The enhanced status code (x.y.z), if any.")
    text: str | None
    reason: str
    rfc_compliant: bool = Field(description="Whether RFC 5321 allows this refusal.")
    warned: bool = Field(description="Recorded only (warn_only): nothing was refused.")
    delay: float
    when: datetime
    details: dict[str, Any]


Outcome = Literal["accepted", "rejected", "deferred", "aborted", "idle"]


class SessionInfo(_Model):
    id: str
    scenario: str
    started: datetime
    ended: datetime | None
    outcome: Outcome | None = Field(description="null while the session is open.")
    client: ClientInfo
    helo: str | None
    tls: bool
    auth_user: str | None = Field(
        None,
        description="The user the client logged in as with SMTP AUTH (the scenario's "
        "receiver.auth); null: no AUTH succeeded. Passwords are never kept.",
    )
    envelope: Envelope
    verdicts: list[VerdictInfo]


class SessionPage(_Model):
    sessions: list[SessionInfo]
    limit: int
    offset: int


class TranscriptLine(_Model):
    when: datetime
    direction: Literal["in", "out", "note"]
    line: str


class MessageInfo(_Model):
    n: int
    when: datetime
    mail_from: str
    rcpts: list[str]
    size: int = Field(description="Octets received.")
    truncated: bool = Field(
        description="The message was larger than the receiver stores (its "
        "max_stored_message_bytes, 10 MiB by default): only that many octets were kept. The "
        "scenario's SIZE limit (receiver.max_message_size) decides what is accepted."
    )
    href: str = Field(description="Where the raw message is (message/rfc822).")


class SessionDetail(SessionInfo):
    transcript: list[TranscriptLine]
    messages: list[MessageInfo]


class ScenarioInfo(_Model):
    name: str
    description: str
    source: str
    receiver: ReceiverSettings
    dns_mode: str
    chains: dict[str, list[str]] = Field(description="Stage -> the policies run, in order.")


class ScenarioByName(_Model):
    name: str = Field(description="A bundled scenario (see `strictmx scenarios`).")


class Health(_Model):
    status: Literal["ready", "degraded"]
    reasons: list[str]


class SessionQuery(_Model):
    """The filters and paging of `GET /sessions`."""

    client: str | None = Field(
        None, description="Simulated address, socket address or client name (exact)."
    )
    helo: str | None = Field(None, description="Part of the HELO/EHLO name.")
    sender: str | None = Field(None, description="Part of a MAIL FROM address.")
    rcpt: str | None = Field(None, description="Part of a RCPT TO address.")
    outcome: Outcome | None = Field(None, description="How the session ended.")
    policy: str | None = Field(None, description="A policy that gave any verdict.")
    since: datetime | None = Field(
        None, description="Sessions started at or after this ISO 8601 time (UTC if no zone)."
    )
    limit: int = Field(50, ge=1, le=1000, description="At most this many sessions.")
    offset: int = Field(0, ge=0, description="Skip this many (newest first).")

    @field_validator("since")
    @classmethod
    def _utc_if_naive(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
