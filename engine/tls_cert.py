"""Shared piece: the engine's self-signed TLS certificate for `serve --tls`, made once and reused.

Clients pin its SHA-256 fingerprint, so it must stay the same across restarts: it is made once per
folder (normally `<workspace>/tls/`) and reused while it loads and its key matches it.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
from pathlib import Path

from .files import atomic_write

log = logging.getLogger("swapline.engine")

CERT_NAME = "engine-cert.pem"
KEY_NAME = "engine-key.pem"
VALID_DAYS = 3650  # a pinned certificate is trusted by its fingerprint, not its dates


def ensure_certificate(folder: Path | str) -> tuple[Path, Path]:
    """(certificate, private key) paths in `folder`, made with `cryptography` if missing or broken."""
    folder = Path(folder)
    cert_path, key_path = folder / CERT_NAME, folder / KEY_NAME
    if cert_path.exists() and key_path.exists():
        if _usable(cert_path, key_path):
            return cert_path, key_path
        log.warning("TLS certificate in %s is unreadable or does not match its key; making a new one "
                    "(clients must pin the new fingerprint)", folder)
    folder.mkdir(parents=True, exist_ok=True)
    key_pem, cert_pem = _make_self_signed()
    # The key first: the certificate appearing is what marks a finished pair.
    atomic_write(key_path, key_pem, mode=0o600)
    atomic_write(cert_path, cert_pem, mode=0o644)
    return cert_path, key_path


def _usable(cert_path: Path, key_path: Path) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(*raw) == key.public_key().public_bytes(*raw)


def _make_self_signed() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname() or "localhost"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"swapline engine on {host}"[:64])])
    now = datetime.datetime.now(datetime.timezone.utc)
    # Host names and loopback addresses, so a client may also trust it as its own CA file.
    alt_names = [x509.DNSName(host), x509.DNSName("localhost"),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)
