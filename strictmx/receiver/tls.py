"""TLS for STARTTLS: a configured certificate, or a self-signed one made at start."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class TLSError(Exception):
    pass


#: Protocol floors a scenario may set (receiver.tls_min_version), as OpenSSL names them.
FLOORS: dict[str, ssl.TLSVersion] = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


class Floor:
    """A server context's protocol floor, set per scenario on the one context a receiver
    serves with: the floor the context came with is remembered, so a scenario without a
    floor (or a lower one) after one with TLS 1.3 gets it back."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.original = context.minimum_version

    def apply(self, floor: str | None) -> None:
        wanted = FLOORS[floor] if floor is not None else None
        original = self.original
        # MINIMUM_SUPPORTED is a sentinel (-2), not a version: any floor is above it.
        if wanted is None or (
            original is not ssl.TLSVersion.MINIMUM_SUPPORTED and original >= wanted
        ):
            self.context.minimum_version = original
        else:
            self.context.minimum_version = wanted


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load certificate {cert} / key {key}: {exc}") from None
    return context


def self_signed_context(hostname: str, directory: Path | None = None) -> ssl.SSLContext:
    """A fresh P-256 key and a one-year certificate for `hostname` (and 127.0.0.1, ::1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(hostname),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    if directory is not None:  # the caller wants the files
        return _write_and_load(cert, key, directory)
    # The context holds the key in memory once loaded: the files need not outlive the
    # call, and a private key must not be left behind in the temporary directory.
    with tempfile.TemporaryDirectory(prefix="strictmx-tls-") as folder:
        return _write_and_load(cert, key, Path(folder))


def _write_and_load(
    cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, folder: Path
) -> ssl.SSLContext:
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # Created private: the key is never readable by others, not even for a moment.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    key_path.chmod(0o600)
    return server_context(cert_path, key_path)
