"""OpenSSL's RSA check in dkimpy's place answers exactly as dkimpy's own arithmetic does."""

from __future__ import annotations

import hashlib

import dkim
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

import strictmx.policies.dkim  # noqa: F401  (installs the OpenSSL check, as serving does)
from strictmx.receiver import dkim_rsa


def _key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


KEYS = {bits: _key(bits) for bits in (1024, 2048)}


def _numbers(key: rsa.RSAPrivateKey) -> dict[str, int]:
    public = key.public_key().public_numbers()
    return {"modulus": public.n, "publicExponent": public.e}


def _signed(key: rsa.RSAPrivateKey, name: str, data: bytes) -> bytes:
    algorithm = hashes.SHA256() if name == "sha256" else hashes.SHA1()
    digest = hashlib.new(name, data).digest()
    return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm))


def test_serving_verifies_with_openssl() -> None:
    assert dkim.RSASSA_PKCS1_v1_5_verify is dkim_rsa.verify


@pytest.mark.parametrize("bits", [1024, 2048])
@pytest.mark.parametrize("name", ["sha256", "sha1"])
@pytest.mark.parametrize(
    "spoil",
    [
        "none",  # control: a good signature
        "data",  # the signed data changed by one byte
        "signature",  # one bit of the signature flipped
        "short",  # the signature one octet short
        "other-key",  # signed by another key of the same size
        "other-digest",  # the digest of the other algorithm
    ],
)
def test_both_checks_agree(bits: int, name: str, spoil: str) -> None:
    key = KEYS[bits]
    data = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s1; b="
    signature = _signed(key, name, data)
    checked = data
    if spoil == "data":
        checked = data.replace(b"s1", b"s2")
    elif spoil == "signature":
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    elif spoil == "short":
        signature = signature[1:]
    elif spoil == "other-key":
        signature = _signed(_key(bits), name, data)
    elif spoil == "other-digest":
        signature = _signed(key, "sha1" if name == "sha256" else "sha256", data)
    numbers = _numbers(key)
    ours = dkim_rsa.verify(hashlib.new(name, checked), signature, numbers)
    theirs = dkim_rsa.PURE_PYTHON(hashlib.new(name, checked), signature, numbers)
    assert ours == theirs == (spoil == "none")


def test_an_unusable_key_is_a_failed_check_not_a_crash() -> None:
    # An even modulus is no RSA key: OpenSSL refuses to load it; the check just fails.
    assert not dkim_rsa.verify(
        hashlib.sha256(b"x"), b"\x01" * 128, {"modulus": 2**1024, "publicExponent": 65537}
    )
    assert not dkim_rsa.verify(hashlib.md5(b"x"), b"\x01" * 128, _numbers(KEYS[1024]))
