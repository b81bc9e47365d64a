"""The engine's self-signed certificate: made once with a private key only its owner reads, then reused."""

import hashlib
import ssl
import stat

from bridge.tls import certificate_fingerprint, server_context
from engine.tls_cert import ensure_certificate


def test_certificate_is_made_once_and_reused(tmp_path):
    cert, key = ensure_certificate(tmp_path / "tls")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    fingerprint = certificate_fingerprint(str(cert))
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert fingerprint == hashlib.sha256(der).hexdigest()
    assert ensure_certificate(tmp_path / "tls") == (cert, key)
    assert certificate_fingerprint(str(cert)) == fingerprint  # clients keep their pin across restarts
    assert isinstance(server_context(str(cert), str(key)), ssl.SSLContext)
    assert [p.name for p in (tmp_path / "tls").iterdir() if p.name.endswith(".tmp")] == []


def test_a_broken_or_mismatched_pair_is_made_anew(tmp_path):
    cert, key = ensure_certificate(tmp_path / "a")
    other_cert, _ = ensure_certificate(tmp_path / "b")
    cert.write_bytes(other_cert.read_bytes())  # a certificate that is not this key's
    again, _ = ensure_certificate(tmp_path / "a")
    assert certificate_fingerprint(str(again)) != certificate_fingerprint(str(other_cert))
    server_context(str(again), str(key))
    key.write_text("not a key")
    again, key = ensure_certificate(tmp_path / "a")
    server_context(str(again), str(key))
