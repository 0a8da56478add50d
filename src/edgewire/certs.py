"""Self-signed development certificates (``edgewire cert``).

A client trusts such a certificate by passing it as ``cafile``; verification stays on.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

__all__ = ["generate_self_signed", "write_self_signed"]


def generate_self_signed(
    hosts: list[str] | None = None, *, days: int = 30, now: datetime.datetime | None = None,
    key_type: str = "ec", serial: int | None = None,
) -> tuple[bytes, bytes]:
    """A (certificate PEM, private key PEM) pair valid for ``hosts`` (names or IPs).

    ``key_type`` is "ec" (P-256, the default) or "ed25519". Ed25519 signatures always have
    the same length, and so, with a fixed ``serial``, do the certificate and the TLS
    handshake: the simulator relies on that for runs that repeat packet for packet.
    """
    hosts = hosts or ["localhost", "127.0.0.1", "::1"]
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if key_type == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"key_type must be 'ec' or 'ed25519', got {key_type!r}")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256() if key_type == "ec" else None)
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def write_self_signed(
    directory: str | Path, hosts: list[str] | None = None, *, days: int = 30
) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` into ``directory``; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = generate_self_signed(hosts, days=days)
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert_pem)
    key_path.touch(mode=0o600)
    key_path.write_bytes(key_pem)
    return cert_path, key_path
