"""TLS on the bridge: pinned or CA-checked certificates, clear errors on a TLS mismatch, full duplex."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bridge import BridgeClient, BridgeError, BridgeServer
from bridge.tls import TLSConfig, certificate_fingerprint, normalize_fingerprint, server_context

pytestmark = pytest.mark.timeout(20)


def make_certificate(folder: Path, name: str) -> tuple[str, str]:
    """A self-signed P-256 certificate for 127.0.0.1, made the way the engine makes its own."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, tuple[str, str]]:
    folder = tmp_path_factory.mktemp("certs")
    return {name: make_certificate(folder, name) for name in ("engine", "stranger")}


@pytest.fixture
def tls_server(handler, certs, token, engine_info):
    server = BridgeServer(handler, token=token, engine_info=engine_info, tls=server_context(*certs["engine"]))
    server.start()
    yield server
    handler.release.set()
    server.stop()


@pytest.fixture
def tls_connect(tls_server, certs, token):
    clients: list[BridgeClient] = []

    def make(tls: TLSConfig | None = None, secret: str = token) -> BridgeClient:
        pinned = TLSConfig(fingerprint=certificate_fingerprint(certs["engine"][0]))
        clients.append(BridgeClient("127.0.0.1", tls_server.port, secret, timeout=3.0,
                                    tls=pinned if tls is None else tls))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def assert_serves(client: BridgeClient) -> None:
    client.connect()
    assert client.call("echo", {"still": "serving"}) == {"still": "serving"}


def test_pinned_fingerprint_connects_and_calls(tls_connect, engine_info):
    client = tls_connect()
    assert client.connect() == engine_info
    blob = bytes(range(256)) * 20_000  # 5 MB: many TLS records each way
    assert client.call("echo", {"blob": blob}) == {"blob": blob}


def test_fingerprint_may_be_written_with_colons_and_capitals(tls_connect, certs):
    digits = certificate_fingerprint(certs["engine"][0]).upper()
    spelled = ":".join(digits[i:i + 2] for i in range(0, 64, 2))
    assert_serves(tls_connect(TLSConfig(fingerprint=spelled)))


def test_reading_and_writing_at_once_keeps_the_stream_whole(tls_server, tls_connect):
    # The reader thread decrypts events while callers encrypt requests: records must stay in order.
    client = tls_connect()
    client.connect()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for n in range(50):
            tls_server.broadcast({"event": "tick", "n": n, "pad": b"x" * 50_000})
        results = list(pool.map(lambda n: client.call("echo", {"n": n, "pad": b"y" * 50_000}), range(64)))
    assert [r["n"] for r in results] == list(range(64))
    events = [client.inbox.get(timeout=5.0).payload["n"] for _ in range(50)]
    assert events == list(range(50))


def test_wrong_token_over_tls_is_still_unauthorized(tls_connect):
    with pytest.raises(BridgeError) as caught:
        tls_connect(secret="guess").connect()
    assert caught.value.code == "unauthorized"


def test_wrong_fingerprint_is_refused_and_the_server_serves_on(tls_connect, certs):
    stranger = certificate_fingerprint(certs["stranger"][0])
    with pytest.raises(BridgeError) as caught:
        tls_connect(TLSConfig(fingerprint=stranger)).connect()
    assert caught.value.code == "untrusted_engine" and stranger in caught.value.message
    assert_serves(tls_connect())


def test_ca_file_verifies_the_engine(tls_connect, certs):
    assert_serves(tls_connect(TLSConfig(cafile=certs["engine"][0])))
    with pytest.raises(BridgeError) as caught:
        tls_connect(TLSConfig(cafile=certs["stranger"][0])).connect()
    assert caught.value.code == "untrusted_engine"


@pytest.mark.parametrize("config", [TLSConfig(), TLSConfig(fingerprint="abc")], ids=["nothing", "short"])
def test_tls_without_a_usable_pin_or_ca_is_refused_before_connecting(tls_connect, config):
    with pytest.raises(BridgeError) as caught:
        tls_connect(config).connect()
    assert caught.value.code == "tls"


def test_plain_client_gets_a_clear_error_and_the_server_serves_on(tls_server, token, tls_connect):
    plain = BridgeClient("127.0.0.1", tls_server.port, token, timeout=3.0)
    with pytest.raises(BridgeError) as caught:
        plain.connect()
    assert caught.value.code == "tls_required" and "TLS" in caught.value.message
    assert_serves(tls_connect())


def test_tls_client_against_a_plain_server_gets_a_clear_error(server, connect, certs, token):
    pinned = TLSConfig(fingerprint=certificate_fingerprint(certs["engine"][0]))
    with pytest.raises(BridgeError) as caught:
        BridgeClient("127.0.0.1", server.port, token, timeout=3.0, tls=pinned).connect()
    assert caught.value.code == "tls" and "TLS" in caught.value.message
    assert connect().call("echo", {"plain": True}) == {"plain": True}


def test_a_stalled_tls_handshake_is_held_to_the_handshake_deadline(tls_server):
    tls_server.handshake_timeout = 0.5
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=3.0) as sock:
        sock.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        started = time.monotonic()
        assert sock.recv(100) == b""
        assert time.monotonic() - started < 2.0


def test_stop_is_prompt_with_tls_sessions(tls_server, tls_connect):
    client = tls_connect()
    client.connect()
    client.start()
    started = time.monotonic()
    tls_server.stop()
    assert time.monotonic() - started < 2.0
    assert client.inbox.get(timeout=3.0).kind == "closed"


def test_fingerprints_are_the_sha256_of_the_der_certificate(certs):
    import hashlib
    import ssl

    cert = certs["engine"][0]
    der = ssl.PEM_cert_to_DER_cert(Path(cert).read_text())
    assert certificate_fingerprint(cert) == hashlib.sha256(der).hexdigest()
    assert normalize_fingerprint(" AB:" + "cd" * 30 + "EF ") == "ab" + "cd" * 30 + "ef"


def test_a_bad_certificate_file_is_a_tls_error(tmp_path):
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(BridgeError) as caught:
        server_context(str(tmp_path / "bad.pem"), str(tmp_path / "bad.pem"))
    assert caught.value.code == "tls"
