"""Postfix signing through OpenDKIM, relaying to strictmx: DKIM made and judged by others.

A private OpenDKIM (tests/e2e/opendkim.py, Debian's `opendkim` as a milter) signs for
`dkim.example` with a key made by the test; its public key is published in the receivers'
worlds at `selector._domainkey.dkim.example`. Two private Postfix instances relay to
strictmx: `signing` hands every message to the milter (`smtpd_milters`; swaks injects over
SMTP, so smtpd's milters are the ones that apply, `non_smtpd_milters` is set alike for mail
from `sendmail`), `plain` has no milter. Everything runs once for the module.

Postfix's transport table sends each recipient domain to its own receiver:
- `relay.strictmx.test`: a receiver without authentication policies, so a message is
  stored whatever its signature and can be checked byte for byte: OpenDKIM's signature
  must verify with dkimpy (one signer, an independent verifier), and the same message
  through `plain` carries none.
- `gmail.strictmx.test`: the bundled `gmail` persona, its world holding the key and the
  sender domain (no SPF record: only DKIM can authenticate the mail). Signed mail is
  accepted with `dkim=pass` in Authentication-Results; the unsigned copy is refused with
  Gmail's text, as Postfix's own log records it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dkim
import pytest
import yaml

from strictmx.receiver import scenario as scenarios
from strictmx.receiver.pytest_plugin import StrictmxFactory, StrictmxReceiver
from strictmx.receiver.tls import self_signed_context

from .opendkim import UNAVAILABLE as OPENDKIM_UNAVAILABLE
from .opendkim import OpenDKIM
from .postfix import UNAVAILABLE, Delivery, Postfix

pytestmark = pytest.mark.e2e

# Missing packages are a failure, not a skip: scripts/test installs them (Debian's
# postfix, opendkim and opendkim-tools).
assert UNAVAILABLE is None, f"the Postfix end-to-end tests cannot run: {UNAVAILABLE}"
assert OPENDKIM_UNAVAILABLE is None, f"the OpenDKIM tests cannot run: {OPENDKIM_UNAVAILABLE}"

DOMAIN = "dkim.example"
SELECTOR = "staging2026"
SENDER = f"alice@{DOMAIN}"
RELAY_RCPT = "bob@relay.strictmx.test"
GMAIL_RCPT = "bob@gmail.strictmx.test"
# Postfix binds its outgoing connections here; both worlds make it 203.0.113.10, with a
# forward-confirmed PTR (mail.example.net), which the gmail persona requires.
BIND = "127.0.0.10"
HELO = "mail.example.net"


def relay_scenario(key: OpenDKIM) -> dict[str, Any]:
    """A receiver that judges nothing: it stores what Postfix relays, signature and all."""
    return {
        "name": "opendkim-relay",
        "receiver": {"hostname": "mx.relay.strictmx.test", "banner": "{hostname} ESMTP"},
        "policies": {},
        "world": {
            "dns": {"mode": "hermetic", "records": {key.key_name: {"TXT": key.key_record}}},
            "clients": {BIND: {"address": "203.0.113.10"}},
        },
    }


def gmail_scenario(key: OpenDKIM) -> dict[str, Any]:
    """The bundled gmail persona, its world extended with the signer's domain and key."""
    spec: dict[str, Any] = yaml.safe_load(scenarios.resolve("gmail").read_text())
    spec.pop("expect", None)  # the persona's own cases, not this test's
    records = spec["world"]["dns"].setdefault("records", {})
    # An MX and no SPF record: SPF says `none`, so DKIM alone decides whether the
    # message is authenticated.
    records[DOMAIN] = {"MX": "10 mail.example.net."}
    records[key.key_name] = {"TXT": key.key_record}
    spec["world"]["clients"][BIND] = {"address": "203.0.113.10"}
    return spec


@dataclass
class Staging:
    """Everything the module runs: the signer, two Postfix instances, two receivers."""

    opendkim: OpenDKIM
    signing: Postfix
    plain: Postfix
    relay: StrictmxReceiver
    gmail: StrictmxReceiver


def transport(gmail: StrictmxReceiver) -> str:
    # Bounces to the senders' domains are not strictmx's business (postfix.py's default
    # drops example.net's); gmail's recipients go to the gmail receiver, the rest to the
    # relayhost.
    return (
        "inline:{ {example.net = discard:bounce for a test sender}, "
        f"{{{DOMAIN} = discard:bounce for a test sender}}, "
        f"{{gmail.strictmx.test = smtp:[{gmail.host}]:{gmail.port}}} }}"
    )


@pytest.fixture(scope="module")
def staging() -> Iterator[Staging]:
    receivers = StrictmxFactory("default")
    started: list[Postfix] = []
    signer = OpenDKIM(DOMAIN, SELECTOR)
    try:
        signer.start()
        relay = receivers(relay_scenario(signer))
        # Gmail offers STARTTLS and its rules of today judge mail sent without it; Postfix
        # takes it when offered, as a staging MTA should (opportunistic, RFC 3207).
        gmail = receivers(
            gmail_scenario(signer), tls_context=self_signed_context("mx.google.strictmx.test")
        )
        common = {
            "transport_maps": transport(gmail),
            "smtp_tls_security_level": "may",
            "smtp_tls_loglevel": "1",
        }
        milter = {
            "smtpd_milters": signer.milter,
            "non_smtpd_milters": signer.milter,
            # A milter that cannot be reached must hold mail back, never let it out unsigned.
            "milter_default_action": "tempfail",
        }
        for settings in ({**common, **milter}, common):
            instance = Postfix(relay.address, helo_name=HELO, bind_address=BIND, settings=settings)
            started.append(instance)
            instance.start()
        yield Staging(signer, started[0], started[1], relay, gmail)
    finally:
        for instance in started:
            instance.stop()
        receivers.stop()
        signer.stop()


# -- reading what was relayed ----------------------------------------------------------


def sent(pf: Postfix, rx: StrictmxReceiver, queue_id: str, recipient: str) -> bytes:
    """Postfix relayed the message and strictmx stored it; the stored message."""
    seen = pf.outcome(queue_id, recipient)
    assert seen.status == "sent", pf.excerpt(queue_id)
    session = rx.last(rcpt=recipient)
    assert session["outcome"] == "accepted", session
    raw = rx.message(session["id"], 1)
    assert raw is not None, session
    # The same message on both sides: the Message-ID Postfix's cleanup logged for it
    # (personas word their 250 differently, so the reply cannot tell).
    assert fields(raw, "Message-ID") == [message_id(pf, queue_id)], pf.excerpt(queue_id)
    return raw


def message_id(pf: Postfix, queue_id: str) -> str:
    for line in pf.log_lines():
        found = re.search(rf" {queue_id}: message-id=(<[^>]*>)", line)
        if found:
            return found[1]
    raise AssertionError(f"no message-id logged for {queue_id}\n{pf.excerpt(queue_id)}")


def relay_message(pf: Postfix, recipient: str, subject: str) -> str:
    """The test's message (the same text every time, bar its Subject) into `pf`."""
    return pf.submit(
        SENDER,
        [recipient],
        headers=[f"Subject: {subject}", f"From: Alice <{SENDER}>"],
        body="A message signed by OpenDKIM on its way through Postfix.",
    )


def fields(raw: bytes, name: str) -> list[str]:
    """Every `name:` field of the header, unfolded, values only."""
    header = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", errors="replace")
    unfolded = re.sub(r"\r\n[ \t]+", " ", header)
    prefix = f"{name.lower()}:"
    return [
        line.split(":", 1)[1].strip()
        for line in unfolded.split("\r\n")
        if line.lower().startswith(prefix)
    ]


def tags(signature: str) -> dict[str, str]:
    """A DKIM-Signature's tag=value list (RFC 6376 §3.2), whitespace removed."""
    pairs = (part.split("=", 1) for part in signature.split(";") if "=" in part)
    return {name.strip(): re.sub(r"\s+", "", value) for name, value in pairs}


def published(key: OpenDKIM) -> Callable[..., bytes | None]:
    """dkimpy's DNS: the records the receivers' worlds publish, and nothing else."""
    records = {f"{key.key_name}.".encode(): key.key_record.encode()}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


# -- OpenDKIM signs, dkimpy verifies -------------------------------------------------------


def test_opendkim_signs_what_postfix_relays(staging: Staging) -> None:
    queue_id = relay_message(staging.signing, RELAY_RCPT, "signed")
    raw = sent(staging.signing, staging.relay, queue_id, RELAY_RCPT)
    (signature,) = fields(raw, "DKIM-Signature")
    signed = tags(signature)
    assert (signed["v"], signed["a"]) == ("1", "rsa-sha256"), signature
    assert (signed["d"], signed["s"]) == (DOMAIN, SELECTOR), signature
    assert "from" in signed["h"].lower().split(":"), signature
    assert dkim.verify(raw, dnsfunc=published(staging.opendkim)), signature


def test_a_byte_changed_after_signing_does_not_verify(staging: Staging) -> None:
    # The verifier's control: the same signature over one changed body byte fails, so the
    # pass above is dkimpy's judgement, not an accident of the set-up.
    queue_id = relay_message(staging.signing, RELAY_RCPT, "tampered")
    raw = sent(staging.signing, staging.relay, queue_id, RELAY_RCPT)
    assert dkim.verify(raw, dnsfunc=published(staging.opendkim))
    tampered = raw.replace(b"signed by OpenDKIM", b"signed by OpenDKIm", 1)
    assert tampered != raw
    assert not dkim.verify(tampered, dnsfunc=published(staging.opendkim))


def test_without_the_milter_the_same_message_has_no_signature(staging: Staging) -> None:
    queue_id = relay_message(staging.plain, RELAY_RCPT, "unsigned")
    raw = sent(staging.plain, staging.relay, queue_id, RELAY_RCPT)
    assert fields(raw, "DKIM-Signature") == []
    assert fields(raw, "Subject") == ["unsigned"]
    assert not dkim.verify(raw, dnsfunc=published(staging.opendkim))


# -- strictmx serving gmail ----------------------------------------------------------------


def test_gmail_accepts_the_signed_copy_and_refuses_the_unsigned_one(staging: Staging) -> None:
    assert_gmail_outcome(staging)


# Gmail's reply to mail that neither SPF nor DKIM authenticates (receivers.md §7.2, [SIS-G]):
# 5.7.26, at end of DATA, ending in Gmail's session tag and "- gsmtp".
GMAIL_UNAUTHENTICATED = re.compile(
    r"^host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.7\.26 This email has been blocked "
    r"because the sender is unauthenticated\. Gmail requires all senders to authenticate "
    r"with either SPF or DKIM\. Authentication results: DKIM = did not pass "
    rf"SPF \[{re.escape(DOMAIN)}\] with ip: \[203\.0\.113\.10\] = did not pass\. "
    r"[0-9a-f]{12} - gsmtp \(in reply to end of DATA command\)$"
)


def assert_gmail_outcome(staging: Staging) -> tuple[Delivery, Delivery]:
    """Signed through OpenDKIM, accepted by the gmail persona; unsigned, refused.

    The signed message is accepted and strictmx's Authentication-Results says `dkim=pass`
    for `dkim.example`; the same message unsigned is refused with Gmail's 5.7.26 text,
    as Postfix's own log records it. Returns Postfix's two `status=` lines (the log lines
    the closing note quotes).
    """
    signed_id = relay_message(staging.signing, GMAIL_RCPT, "to gmail")
    raw = sent(staging.signing, staging.gmail, signed_id, GMAIL_RCPT)
    results = fields(raw, "Authentication-Results")
    assert len(results) == 1, results
    assert re.search(rf"\bdkim=pass\b[^;]*\bheader\.d={re.escape(DOMAIN)}\b", results[0]), results
    accepted = staging.gmail.last(rcpt=GMAIL_RCPT)
    assert accepted["outcome"] == "accepted", accepted
    assert accepted["tls"], "Postfix took STARTTLS"
    signed = staging.signing.outcome(signed_id, GMAIL_RCPT)

    plain_id = relay_message(staging.plain, GMAIL_RCPT, "to gmail")
    refused = staging.plain.outcome(plain_id, GMAIL_RCPT)
    assert refused.status == "bounced", staging.plain.excerpt(plain_id)
    assert refused.dsn == "5.7.26", staging.plain.excerpt(plain_id)
    assert GMAIL_UNAUTHENTICATED.match(refused.detail), staging.plain.excerpt(plain_id)
    session = staging.gmail.last(rcpt=GMAIL_RCPT)
    assert session["outcome"] != "accepted", session
    # Gmail's rule for all mail (bulk_sender), not a DKIM refusal: DKIM failing alone is
    # no refusal (RFC 6376 §6.3), being authenticated by neither SPF nor DKIM is.
    # (dmarc notes the domain's missing record without refusing: a note, not an objection.)
    decided = [(v["policy"], v["outcome"]) for v in session["verdicts"] if v["action"] != "dunno"]
    assert decided == [("bulk_sender", "SENDER_UNAUTHENTICATED")], session["verdicts"]
    return signed, refused
