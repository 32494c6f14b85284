"""The TLS audit against real TLS servers on 127.0.0.1, with certificates made here: an old
device (expired self-signed RSA-1024 signed with SHA-1, TLS 1.0, NULL and anonymous ciphers), a
camera with an EC certificate from a test CA, one whose certificate starts tomorrow, and ports
that do not speak TLS at all."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from engine.scan.tls_audit import MAX_HANDSHAKES, TlsReport, audit_tls
from tests.conftest import unavailable

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
# What the old device accepts: two weak ciphers (NULL with an MD5 MAC, anonymous ECDH) and one
# that is merely old.
OLD_CIPHERS = "NULL-MD5:AECDH-AES128-SHA:AES128-SHA:@SECLEVEL=0"

NO_TLS1 = ("the local OpenSSL cannot complete a TLS 1.0 handshake (built without it or forbidden "
           "by its configuration), so no TLS 1.0 device can be imitated")  # fmt: skip

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def certificate(subject: str, key: Key, *, issuer: tuple[str, Key] | None = None,
                days: tuple[int, int] = (-1, 365),
                sans: tuple[x509.GeneralName, ...] = ()) -> x509.Certificate:  # fmt: skip
    """A certificate for ``subject``, self-signed unless ``issuer`` (name, key) is given, valid
    from ``days[0]`` to ``days[1]`` days from now."""
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + days[0] * DAY)
        .not_valid_after(NOW + days[1] * DAY)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def signed_with_sha1(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> x509.Certificate:
    """``cert`` signed again with SHA-1, which cryptography no longer signs certificates with:
    its algorithm (sha256WithRSAEncryption) swapped for sha1WithRSAEncryption, whose OID has the
    same length, and the signature made again over the changed to-be-signed part."""
    sha256_rsa = bytes.fromhex("06092a864886f70d01010b")
    sha1_rsa = bytes.fromhex("06092a864886f70d010105")
    tbs = cert.tbs_certificate_bytes.replace(sha256_rsa, sha1_rsa)
    der = cert.public_bytes(serialization.Encoding.DER).replace(sha256_rsa, sha1_rsa)
    assert der.endswith(cert.signature)
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    return x509.load_der_x509_certificate(der[: -len(signature)] + signature)


def server_context(directory: Path, cert: x509.Certificate, key: Key, *, ciphers: str = "",
                   oldest: ssl.TLSVersion | None = None) -> ssl.SSLContext:  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if ciphers:  # before the certificate: at the default level OpenSSL refuses an RSA-1024 key
        context.set_ciphers(ciphers)
    if oldest is not None:
        # Where the local OpenSSL cannot go that low, test_old_protocols_are_found says so.
        with warnings.catch_warnings(), contextlib.suppress(ValueError):
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = oldest
    pem = directory / "server.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
        + cert.public_bytes(serialization.Encoding.PEM)
    )  # fmt: skip
    context.load_cert_chain(pem)
    return context


@dataclass
class Server:
    port: int
    connections: list[socket.socket] = field(default_factory=list)  # each accepted, in order


@contextlib.contextmanager
def serve(handle: Callable[[socket.socket], None]) -> Iterator[Server]:
    """A TCP server on 127.0.0.1 that runs ``handle`` on each connection, one at a time, as the
    audit connects."""
    listener = socket.create_server(("127.0.0.1", 0))
    server = Server(listener.getsockname()[1])

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # shut down
                return
            server.connections.append(connection)
            with connection, contextlib.suppress(OSError):
                connection.settimeout(3)
                handle(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        # Shut down, not only closed, to wake the thread: from accept(), and from a recv() on a
        # connection whose client side asyncio closes only once this test lets the loop run.
        for sock in [listener, *server.connections[-1:]]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


@contextlib.contextmanager
def serve_tls(context: ssl.SSLContext) -> Iterator[Server]:
    def handshake(connection: socket.socket) -> None:
        with context.wrap_socket(connection, server_side=True):
            pass

    with serve(handshake) as server:
        yield server


def tls1_works(server_side: ssl.SSLContext) -> bool:
    """Whether the local OpenSSL completes a TLS 1.0 handshake with ``server_side``, tried in
    memory."""
    if not ssl.HAS_TLSv1:
        return False
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        client.set_ciphers("ALL:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.minimum_version = client.maximum_version = ssl.TLSVersion.TLSv1
        ours = client.wrap_bio(to_client, to_server)
        theirs = server_side.wrap_bio(to_server, to_client, server_side=True)
        for _ in range(4):  # a TLS 1.0 handshake takes two round trips
            for side in (ours, theirs):
                with contextlib.suppress(ssl.SSLWantReadError):
                    side.do_handshake()
    except (ValueError, ssl.SSLError):
        return False
    return ours.version() == "TLSv1"


@dataclass
class Device:
    server: Server
    cert: x509.Certificate
    context: ssl.SSLContext


@pytest.fixture(scope="module")
def ca_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def old_device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Device]:
    """Expired self-signed RSA-1024 certificate signed with SHA-1; TLS 1.0 and up (where the
    local OpenSSL can), NULL and anonymous ciphers."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cert = signed_with_sha1(certificate("old.device", key, days=(-400, -35)), key)
    context = server_context(tmp_path_factory.mktemp("old"), cert, key, ciphers=OLD_CIPHERS,
                             oldest=ssl.TLSVersion.TLSv1)  # fmt: skip
    with serve_tls(context) as server:
        yield Device(server, cert, context)


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory,
           ca_key: ec.EllipticCurvePrivateKey) -> Iterator[Device]:  # fmt: skip
    """An EC P-256 certificate for cam.test, *.cam.test and 127.0.0.1 from a test CA; the
    server's settings are Python's defaults."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans = (x509.DNSName("cam.test"), x509.DNSName("*.cam.test"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")))  # fmt: skip
    cert = certificate("cam.test", key, issuer=("Test CA", ca_key), sans=sans)
    context = server_context(tmp_path_factory.mktemp("cam"), cert, key)
    with serve_tls(context) as server:
        yield Device(server, cert, context)


def kinds(report: TlsReport) -> set[str]:
    return {finding.kind for finding in report.findings}


async def test_old_device_certificate_and_findings(old_device: Device) -> None:
    port, cert = old_device.server.port, old_device.cert
    report = await audit_tls("127.0.0.1", port, timeout=2.0)

    assert report.ok and report.error == ""
    assert report.cipher.startswith("TLS_")  # TLS 1.3 with the default settings
    info = report.certificate
    assert info["cn"] == "old.device" and info["subject"] == info["issuer"] == "CN=old.device"
    assert info["sans"] == []
    assert info["key_type"] == "RSA" and info["key_bits"] == 1024
    assert info["signature_hash"] == "sha1"
    assert info["self_signed"] is True
    assert info["serial"] == format(cert.serial_number, "x")
    assert info["not_after"] == cert.not_valid_after_utc.isoformat()
    assert info["not_after_epoch"] == int(cert.not_valid_after_utc.timestamp())
    assert info["not_before_epoch"] == int(cert.not_valid_before_utc.timestamp())
    assert info["sha256"] == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    assert sorted(report.weak_ciphers) == ["AECDH-AES128-SHA", "NULL-MD5"]  # not AES128-SHA
    assert {"TLSv1.2", "TLSv1.3"} <= set(report.versions)

    found = {finding.kind: finding for finding in report.findings}
    assert {"tls-expired", "tls-self-signed", "tls-weak-key", "tls-weak-signature",
            "tls-weak-cipher"} <= found.keys()  # fmt: skip
    assert not {"tls-not-yet-valid", "tls-hostname-mismatch"} & found.keys()
    assert found["tls-expired"].severity.label == "high"
    assert info["not_after"] in found["tls-expired"].evidence
    assert found["tls-self-signed"].severity.label == "medium"
    assert found["tls-weak-key"].evidence == "RSA key of 1024 bits"
    assert found["tls-weak-signature"].evidence == "signed with sha1"
    weak = found["tls-weak-cipher"]
    assert weak.severity.label == "high"
    assert "NULL-MD5 (no encryption, MD5 MAC)" in weak.evidence
    assert "AECDH-AES128-SHA (no authentication)" in weak.evidence
    assert all(finding.port == port and finding.proto == "tcp" for finding in report.findings)
    assert all(finding.title and finding.fix for finding in report.findings)
    assert [f["kind"] for f in report.to_json()["findings"]] == [f.kind for f in report.findings]


async def test_old_protocols_are_found(old_device: Device) -> None:
    if not tls1_works(old_device.context):
        unavailable(NO_TLS1)
    report = await audit_tls("127.0.0.1", old_device.server.port, timeout=2.0)

    assert "TLSv1" in report.versions and "TLSv1" not in report.untested
    old = [version for version in report.versions if version in ("SSLv3", "TLSv1", "TLSv1.1")]
    (finding,) = [finding for finding in report.findings if finding.kind == "tls-old-protocol"]
    assert finding.severity.label == "medium"
    assert finding.evidence == "accepted: " + ", ".join(old)


async def test_a_device_that_speaks_only_tls_1_0_is_still_audited(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cert = certificate("tls10.device", key)
    context = server_context(tmp_path, cert, key, ciphers="AES128-SHA:@SECLEVEL=0",
                             oldest=ssl.TLSVersion.TLSv1)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.maximum_version = ssl.TLSVersion.TLSv1
    if not tls1_works(context):
        unavailable(NO_TLS1)
    with serve_tls(context) as server:
        report = await audit_tls("127.0.0.1", server.port, timeout=2.0)

    # Default settings refuse TLS 1.0, so the certificate comes from the TLS 1.0 handshake.
    assert report.ok and report.cipher == ""
    assert report.error.startswith("TLS handshake failed")
    assert report.versions == ["TLSv1"]
    assert report.certificate["cn"] == "tls10.device"
    assert "tls-old-protocol" in kinds(report)


async def test_audit_stays_within_its_handshake_budget(old_device: Device) -> None:
    before = len(old_device.server.connections)
    await audit_tls("127.0.0.1", old_device.server.port, timeout=2.0)

    assert len(old_device.server.connections) - before <= MAX_HANDSHAKES


async def test_camera_with_a_good_certificate_has_no_findings(camera: Device) -> None:
    report = await audit_tls("127.0.0.1", camera.server.port, server_name="cam.test")

    assert report.ok and report.findings == []
    info = report.certificate
    assert info["cn"] == "cam.test" and info["issuer"] == "CN=Test CA"
    assert info["sans"] == ["DNS:cam.test", "DNS:*.cam.test", "IP:127.0.0.1"]
    assert info["key_type"] == "EC" and info["key_bits"] == 256
    assert info["signature_hash"] == "sha256"
    assert info["self_signed"] is False
    assert {"TLSv1.2", "TLSv1.3"} <= set(report.versions)
    assert not {"SSLv3", "TLSv1", "TLSv1.1"} & set(report.versions)
    assert report.weak_ciphers == []


@pytest.mark.parametrize(
    ("server_name", "matches"),
    [("cam.test", True), ("lens.cam.test", True), ("CAM.Test.", True), ("127.0.0.1", True),
     ("other.test", False), ("a.lens.cam.test", False), ("127.0.0.2", False)],
)  # fmt: skip
async def test_hostname_is_checked_against_cn_and_sans(camera: Device, server_name: str,
                                                       matches: bool) -> None:  # fmt: skip
    report = await audit_tls("127.0.0.1", camera.server.port, server_name=server_name)

    assert kinds(report) == (set() if matches else {"tls-hostname-mismatch"})
    if not matches:
        (finding,) = report.findings
        assert finding.severity.label == "medium"
        assert finding.evidence == (f"asked for {server_name}; certificate has CN=cam.test, "
                                    "SANs DNS:cam.test, DNS:*.cam.test, IP:127.0.0.1")  # fmt: skip


async def test_validity_is_judged_at_the_given_time(camera: Device) -> None:
    after = camera.cert.not_valid_after_utc.timestamp() + 60
    report = await audit_tls("127.0.0.1", camera.server.port, now=after)

    assert kinds(report) == {"tls-expired"}
    assert camera.cert.not_valid_after_utc.isoformat() in report.findings[0].evidence


async def test_certificate_not_valid_yet(tmp_path: Path,
                                         ca_key: ec.EllipticCurvePrivateKey) -> None:  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate("early.test", key, issuer=("Test CA", ca_key), days=(1, 365))
    with serve_tls(server_context(tmp_path, cert, key)) as server:
        report = await audit_tls("127.0.0.1", server.port)

    assert kinds(report) == {"tls-not-yet-valid"}
    (finding,) = report.findings
    assert finding.severity.label == "medium"
    assert cert.not_valid_before_utc.isoformat() in finding.evidence


async def test_a_port_that_is_not_tls_is_reported_not_raised() -> None:
    def ssh(connection: socket.socket) -> None:
        connection.sendall(b"SSH-2.0-dropbear_2019.78\r\n")
        connection.recv(1024)

    with serve(ssh) as server:
        report = await audit_tls("127.0.0.1", server.port, timeout=2.0)

    assert not report.ok
    assert report.error.startswith("not TLS")
    assert report.certificate == {} and report.findings == [] and report.versions == []
    assert len(server.connections) == 1  # one ClientHello to a service that is not TLS, no more


async def test_a_closed_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    report = await audit_tls("127.0.0.1", port, timeout=2.0)

    assert not report.ok and report.error == "connection refused"


async def test_a_silent_port_times_out_without_blocking_the_loop() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    def silent(connection: socket.socket) -> None:
        while connection.recv(4096):  # reads the ClientHello, never answers
            pass

    with serve(silent) as server:
        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        report = await audit_tls("127.0.0.1", server.port, timeout=0.3)
        elapsed = time.monotonic() - started
        ticker.cancel()

    assert not report.ok and report.error == "no TLS handshake within 0.3 s"
    assert 0.25 < elapsed < 1.5
    assert ticks >= 10


async def test_names_are_refused_rather_than_resolved() -> None:
    with pytest.raises(ValueError, match="IP address"):
        await audit_tls("cam.test", 443)
