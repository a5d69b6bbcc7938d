"""DKIM keys and signatures made on purpose: for tests, and for `strictmx reproduce`, whose
scenarios need a message signed so that the check fires.

Signing is dkimpy's canonicalisation and cryptography, with the tags dkimpy's own `sign`
does not write (x=, a chosen t=, l=), and any header set (From left out, to test that
refusal), so every kind of signature can be made.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import dkim  # untyped: see the mypy override in pyproject
import nacl.encoding
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import parse_pem_private_key

KeyType = Literal["rsa", "ed25519"]


@dataclass(frozen=True)
class SigningKey:
    """A private key as dkimpy signs with it, and its public key record."""

    type: KeyType
    #: PEM (RSA) or base64 seed (Ed25519), as dkimpy's signing takes it.
    private: bytes
    #: The TXT record to publish: `v=DKIM1; k=...; p=...`.
    record: str
    bits: int


def rsa_key(bits: int = 2048) -> SigningKey:
    """A new RSA key (cryptography makes none under 1024 bits: see `rsa_signing_key`)."""
    return rsa_signing_key(rsa.generate_private_key(public_exponent=65537, key_size=bits))


def rsa_signing_key(private: rsa.RSAPrivateKey) -> SigningKey:
    """`private` as dkimpy signs with it, and its record."""
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
    return SigningKey("rsa", pem, record, private.key_size)


def ed25519_key(seed: bytes | None = None) -> SigningKey:
    """A new Ed25519 key (RFC 8463); the same `seed` (32 bytes) gives the same key."""
    signing = nacl.signing.SigningKey(seed) if seed else nacl.signing.SigningKey.generate()
    private = signing.encode(encoder=nacl.encoding.Base64Encoder)
    public = signing.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode()
    return SigningKey("ed25519", private, f"v=DKIM1; k=ed25519; p={public}", 256)


DEFAULT_SIGNED = ("from", "to", "subject", "date", "message-id")


def sign(
    message: bytes,
    selector: str,
    domain: str,
    key: SigningKey,
    *,
    algorithm: str | None = None,
    headers: Sequence[str] = DEFAULT_SIGNED,
    canonicalize: str = "relaxed/relaxed",
    length: bool = False,
    timestamp: int | None = None,
    expires: int | None = None,
) -> bytes:
    """The `DKIM-Signature: ...` field (with its CRLF) for `message`, by dkimpy.

    `algorithm` defaults to the key's (rsa-sha256, ed25519-sha256); rsa-sha1 signs with
    SHA-1 for testing its refusal. Unlike dkimpy's `sign`, any header set may be signed
    (From left out, to test that refusal) and t= and x= are the caller's."""
    alg = (algorithm or ("ed25519-sha256" if key.type == "ed25519" else "rsa-sha256")).encode()
    signer = dkim.DKIM(message, signature_algorithm=alg, linesep=b"\r\n")
    if key.type == "rsa":
        private: object = parse_pem_private_key(key.private)
    else:
        private = nacl.signing.SigningKey(key.private, encoder=nacl.encoding.Base64Encoder)
    policy = CanonicalizationPolicy.from_c_value(canonicalize.encode())
    body = policy.canonicalize_body(signer.body)
    signer.hasher = dkim.HASH_ALGORITHMS[alg]
    body_hash = base64.b64encode(signer.hasher(body).digest())
    include = [h.lower().encode() for h in headers]
    tags: list[tuple[bytes, bytes]] = [
        (b"v", b"1"),
        (b"a", alg),
        (b"c", policy.to_c_value()),
        (b"d", domain.encode()),
        (b"s", selector.encode()),
    ]
    if length:
        tags.append((b"l", str(len(body)).encode()))
    if timestamp is not None:
        tags.append((b"t", str(timestamp).encode()))
    if expires is not None:
        tags.append((b"x", str(expires).encode()))
    # " : " as dkimpy's own signer writes it: the field is folded at its spaces, and a
    # fold inside a header name would change the name.
    tags += [(b"h", b" : ".join(include)), (b"bh", body_hash), (b"b", b"0" * 60)]
    value = signer.gen_header(tags, include, policy, b"DKIM-Signature", private)
    return b"DKIM-Signature: " + bytes(value)


def body_hash(body: bytes, canonicalize: str = "relaxed/relaxed") -> str:
    """bh= of `body` (CRLF lines) under sha256 and `canonicalize`'s body half."""
    policy = CanonicalizationPolicy.from_c_value(canonicalize.encode())
    return base64.b64encode(hashlib.sha256(policy.canonicalize_body(body)).digest()).decode()
