"""Keys and signed messages for the dkim and arc tests: real keys, real signatures.

Keys are made once per test run (RSA generation takes a while) and published in a test
world's DNS as `v=DKIM1; k=...; p=...` records.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from functools import cache
from typing import Any

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from strictmx.receiver.dkim_signing import SigningKey, ed25519_key, rsa_key, rsa_signing_key
from strictmx.receiver.policy import ClientHistory, Context
from strictmx.receiver.world import World, WorldConfig

HOST = "mx.strictmx.test"
#: The scenario's clock in these tests; signatures are dated just before it.
NOW = datetime.fromisoformat("2026-11-27T10:00:00+00:00")
SIGNED_AT = int(NOW.timestamp()) - 60

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: Quarterly report\r\n"
    b"Date: Fri, 27 Nov 2026 09:59:00 +0000\r\n"
    b"Message-ID: <20261127095900.1@example.com>\r\n"
    b"List-Unsubscribe: <https://example.com/u/1>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"the figures are attached.\r\n"
)


def short_rsa_key(bits: int) -> SigningKey:
    """An RSA key under 1024 bits, for RFC 8301's refusal: made by openssl, since the
    cryptography package refuses to make one."""
    pem = subprocess.run(
        ["openssl", "genrsa", str(bits)], capture_output=True, check=True, timeout=30
    ).stdout
    private = serialization.load_pem_private_key(pem, None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return rsa_signing_key(private)


@cache
def keys() -> dict[str, SigningKey]:
    return {
        "rsa2048": rsa_key(2048),
        "rsa1024": rsa_key(1024),
        "rsa768": short_rsa_key(768),
        "rsa512": short_rsa_key(512),
        "ed25519": ed25519_key(),
        "other": rsa_key(2048),
    }


def published(**extra: Any) -> dict[str, Any]:
    """The world's records: each key at `<name>._domainkey.example.com`, and the faults."""
    records: dict[str, Any] = {
        f"{name}._domainkey.example.com": {"TXT": key.record} for name, key in keys().items()
    }
    records["revoked._domainkey.example.com"] = {"TXT": "v=DKIM1; k=rsa; p="}
    records["garbled._domainkey.example.com"] = {"TXT": "v=DKIM1; k=rsa; p=notbase64!!"}
    records["wrongtype._domainkey.example.com"] = {"TXT": keys()["ed25519"].record}
    records["sha1only._domainkey.example.com"] = {
        "TXT": keys()["rsa2048"].record.replace("k=rsa;", "k=rsa; h=sha1;")
    }
    records.update(extra)
    return records


def make_ctx(now: datetime = NOW, **extra: Any) -> Context:
    config = {
        "dns": {
            "records": published(**extra),
            "servfail": ["broken._domainkey.example.com"],
            "timeout": ["slow._domainkey.example.com"],
        },
        "clock": {"fixed": now.isoformat()},
    }
    world = World.from_config(WorldConfig.model_validate(config))
    return Context(world=world, hostname=HOST, history=ClientHistory()).for_session()


def seal(message: bytes, domain: str, results: str, selector: str = "rsa2048") -> bytes:
    """`message` as the intermediary at `domain` forwards it: its Authentication-Results,
    then its ARC set (dkimpy's arc_sign, RSA) on top."""
    with_results = f"Authentication-Results: {domain}; {results}\r\n".encode() + message
    arc_set = dkim.arc_sign(
        with_results, selector.encode(), domain.encode(), keys()["rsa2048"].private, domain.encode()
    )
    assert arc_set, "dkimpy made no ARC set"
    return b"".join(reversed(arc_set)) + with_results
