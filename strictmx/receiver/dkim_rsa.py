"""The RSA step of DKIM and ARC verification done by OpenSSL (through `cryptography`).

dkimpy canonicalises and hashes; for the RSASSA-PKCS1-v1_5 check itself it has pure-Python
arithmetic that converts the modulus to bytes on every call, which costs more than the
rest of a message's verification together (about 0.5 ms of the 0.6 ms an RSA-2048
signature takes). `install()` gives dkimpy `cryptography`'s verification of the same
scheme (RFC 8017 §8.2.2) in its place: the same digest, the same signature, the same key
numbers, the same answer (tests/unit/test_dkim_rsa.py holds the two to agreement on good
and bad signatures), in OpenSSL.

dkimpy looks the function up in its own namespace at each verification, so the module
attribute is what is replaced; signing is untouched.
"""

from __future__ import annotations

from typing import Any

import dkim  # untyped: see the mypy override in pyproject
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

#: The digests dkimpy hashes with (rsa-sha256; rsa-sha1 only when a policy lets it be
#: verified at all), by hashlib's name.
_DIGESTS: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}
_KEYS_MAX = 1000
_keys: dict[tuple[int, int], rsa.RSAPublicKey] = {}


def verify(digest: Any, signature: bytes, public_key: dict[str, int]) -> bool:
    """dkimpy's `RSASSA_PKCS1_v1_5_verify(hash, signature, public_key)`, by OpenSSL.

    `digest` is the hashlib object of the signed data, `public_key` dkimpy's parsed key
    (`modulus`, `publicExponent`)."""
    algorithm = _DIGESTS.get(digest.name)
    if algorithm is None:
        return False
    numbers = (public_key["publicExponent"], public_key["modulus"])
    key = _keys.get(numbers)
    if key is None:
        try:
            key = rsa.RSAPublicNumbers(*numbers).public_key()
        except ValueError:
            return False  # not a usable RSA key (even modulus, tiny exponent, ...)
        if len(_keys) >= _KEYS_MAX:
            _keys.clear()
        _keys[numbers] = key
    try:
        key.verify(signature, digest.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))
    except InvalidSignature:
        return False
    return True


#: dkimpy's own function, kept for the agreement test.
PURE_PYTHON = dkim.RSASSA_PKCS1_v1_5_verify


def install() -> None:
    """Let dkimpy verify RSA signatures with `verify` (idempotent)."""
    dkim.RSASSA_PKCS1_v1_5_verify = verify
