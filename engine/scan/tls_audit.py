"""A TLS audit of one service, as nmap's ssl-cert and ssl-enum-ciphers and OpenVAS's safe checks
do: the protocol versions and weak ciphers it accepts, and what its certificate says."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import ssl
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from engine.model import Severity
from engine.scan.findings import Finding
from engine.scan.probes import new_unverified_context, unverified_context

VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
OLD_VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1")
# Each handshake is a connection the device has to serve; small devices log or choke on more.
MAX_HANDSHAKES = 20

_TLS_VERSIONS = {
    "SSLv3": (ssl.TLSVersion.SSLv3, ssl.HAS_SSLv3),
    "TLSv1": (ssl.TLSVersion.TLSv1, ssl.HAS_TLSv1),
    "TLSv1.1": (ssl.TLSVersion.TLSv1_1, ssl.HAS_TLSv1_1),
    "TLSv1.2": (ssl.TLSVersion.TLSv1_2, ssl.HAS_TLSv1_2),
    "TLSv1.3": (ssl.TLSVersion.TLSv1_3, ssl.HAS_TLSv1_3),
}
# Level 0 lets OpenSSL offer what it refuses by default (old versions, NULL and anonymous
# ciphers, SHA-1 handshake signatures): an audit has to offer what the device may only speak.
_ANY_CIPHER = "ALL:@SECLEVEL=0"
# What is left out cannot be chosen by a server without a pre-shared key or SRP verifier.
_LOCAL_CIPHERS = "ALL:COMPLEMENTOFALL:!PSK:!SRP:@SECLEVEL=0"
WEAKNESSES = ("no encryption", "no authentication", "export-grade", "RC4", "DES", "3DES",
              "MD5 MAC")  # fmt: skip
# OpenSSL's reasons when the answer to a ClientHello is not a TLS record at all.
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG",
                      "UNKNOWN_PROTOCOL"})  # fmt: skip
_WEAK_HASHES = frozenset({"md5", "sha1"})


@dataclass
class TlsReport:
    """What the audit of one TLS service found."""

    ok: bool = False  # at least one handshake worked
    error: str = ""  # why the handshake with default settings failed ("" when it worked)
    versions: list[str] = field(default_factory=list)  # accepted, oldest first
    untested: list[str] = field(default_factory=list)  # versions the local OpenSSL cannot offer
    cipher: str = ""  # negotiated with default settings
    weak_ciphers: list[str] = field(default_factory=list)
    # Kinds of weak cipher (of WEAKNESSES) that the local OpenSSL cannot offer, so not tested.
    untested_ciphers: list[str] = field(default_factory=list)
    certificate: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "error": self.error,
            "versions": self.versions,
            "untested": self.untested,
            "cipher": self.cipher,
            "weak_ciphers": self.weak_ciphers,
            "untested_ciphers": self.untested_ciphers,
            "certificate": self.certificate,
            "findings": [finding.to_json() for finding in self.findings],
        }


async def audit_tls(address: str, port: int, *, server_name: str = "", timeout: float = 5.0,
                    now: float | None = None) -> TlsReport:  # fmt: skip
    """Audit the TLS service on ``address``:``port`` with at most MAX_HANDSHAKES connections,
    each within ``timeout`` seconds. ``server_name`` is sent as SNI and checked against the
    certificate; ``now`` (epoch seconds) is when validity is judged. A port that does not speak
    TLS gives a report with ``ok`` False and the reason in ``error``."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        # A name would be resolved here, outside the scope the scan was given.
        raise ValueError(f"a TLS audit needs an IP address, not {address!r}") from None
    prober = _Prober(address, port, server_name, timeout)
    report = TlsReport()
    shown: _Handshake | None = None
    try:
        shown = await prober.handshake(unverified_context())
        report.cipher = shown.cipher
    except OSError as exc:
        report.error = _explain(exc, timeout)
        if not _may_speak_older_tls(exc):
            return report
    weak: dict[str, str] = {}
    for version in VERSIONS:
        if shown is not None and shown.version == version:
            report.versions.append(version)
            continue
        context = _pinned_context(_ANY_CIPHER, version, version)
        if context is None:
            report.untested.append(version)
            continue
        try:
            answer = await prober.handshake(context)
        except OSError:
            continue
        report.versions.append(version)
        if shown is None or not shown.der:
            shown = answer
        symmetric = _cipher_info(answer.cipher).get("symmetric") or ""
        if version == "SSLv3" and symmetric.endswith("cbc"):
            weak[answer.cipher] = "CBC with SSLv3 (POODLE)"
    if shown is None:
        return report
    report.ok = True
    legacy = [version for version in report.versions if version != "TLSv1.3"]
    offer, report.untested_ciphers = _weak_offer()
    complete = True
    if legacy:
        accepted, complete = await _accepted_weak(prober, offer, legacy[0], legacy[-1])
        weak |= accepted
    report.weak_ciphers = list(weak)
    if shown.der:
        report.certificate = describe_certificate(shown.der)
    report.findings = _findings(report, weak, server_name, time.time() if now is None else now,
                                port, complete=complete)  # fmt: skip
    return report


@dataclass(frozen=True)
class _Handshake:
    version: str
    cipher: str
    der: bytes  # the server's certificate; empty with an anonymous cipher


class _Prober:
    """Handshakes with one service, each on a connection of its own within the timeout."""

    def __init__(self, address: str, port: int, server_name: str, timeout: float) -> None:
        self.address = address
        self.port = port
        self.server_name = server_name
        self.timeout = timeout
        self.left = MAX_HANDSHAKES

    async def handshake(self, context: ssl.SSLContext) -> _Handshake:
        """One handshake; OSError (SSLError, TimeoutError, ConnectionError) when it fails."""
        if self.left <= 0:
            raise ConnectionAbortedError(f"no more than {MAX_HANDSHAKES} handshakes per service")
        self.left -= 1
        async with asyncio.timeout(self.timeout):
            _, writer = await asyncio.open_connection(
                self.address, self.port, ssl=context, server_hostname=self.server_name or None
            )
        try:
            tls: ssl.SSLObject = writer.get_extra_info("ssl_object")
            cipher = tls.cipher()
            return _Handshake(tls.version() or "", cipher[0] if cipher else "",
                              tls.getpeercert(binary_form=True) or b"")  # fmt: skip
        finally:
            # Nothing more is needed from the connection, and a polite close would wait for
            # the device's close_notify, which some never send.
            writer.transport.abort()


def _pinned_context(ciphers: str, lowest: str, highest: str) -> ssl.SSLContext | None:
    """A client context offering ``ciphers`` and only the versions ``lowest``..``highest``, or
    None when the local OpenSSL cannot offer them."""
    low, low_built = _TLS_VERSIONS[lowest]
    high, high_built = _TLS_VERSIONS[highest]
    if not (low_built and high_built):
        return None
    context = new_unverified_context()
    try:
        context.set_ciphers(ciphers)
        # Python's default options forbid SSLv3 whatever the minimum version says.
        context.options &= ~ssl.OP_NO_SSLv3
        with warnings.catch_warnings():
            # The old versions are deprecated for applications; an audit offers them on purpose.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = low
            context.maximum_version = high
    except (ValueError, ssl.SSLError):
        return None
    return context if _can_offer(context) else None


def _can_offer(context: ssl.SSLContext) -> bool:
    """Whether OpenSSL writes a ClientHello with ``context``: without a version or a cipher it
    may use (by build or by its configuration) it fails before sending anything."""
    tls = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        return True
    except ssl.SSLError:
        return False
    return False


def _may_speak_older_tls(exc: OSError) -> bool:
    """Whether a failed default handshake still leaves older settings worth trying: the server
    spoke TLS but refused, or dropped the connection as old stacks do at an unknown ClientHello."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason not in _NOT_TLS
    return isinstance(exc, ConnectionResetError | ConnectionAbortedError)


def _explain(exc: OSError, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no TLS handshake within {timeout:g} s"
    if isinstance(exc, ssl.SSLError):
        if exc.reason in _NOT_TLS:
            return f"not TLS: the answer to a TLS ClientHello is not a TLS record ({exc.reason})"
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "the server closed the connection during the TLS handshake"
    return f"connection failed: {exc.strerror or exc}"


@functools.cache
def _local_ciphers() -> dict[str, dict[str, Any]]:
    """Every TLS 1.2-and-older cipher the local OpenSSL can offer, by OpenSSL name."""
    context = new_unverified_context()
    context.set_ciphers(_LOCAL_CIPHERS)
    return {info["name"]: info for info in context.get_ciphers() if info["protocol"] != "TLSv1.3"}


def _cipher_info(name: str) -> dict[str, Any]:
    return _local_ciphers().get(name, {})


def _weaknesses(info: dict[str, Any]) -> list[str]:
    """What makes a cipher weak, from OpenSSL's description of it (of WEAKNESSES)."""
    symmetric = info.get("symmetric") or ""
    found = []
    if not symmetric:
        found.append("no encryption")
    if info.get("auth") == "auth-null":
        found.append("no authentication")
    if info["name"].startswith("EXP"):
        found.append("export-grade")
    if symmetric.startswith("rc4"):
        found.append("RC4")
    if symmetric == "des-cbc":
        found.append("DES")
    if symmetric.startswith("des-ede3"):
        found.append("3DES")
    if info.get("digest") == "md5":
        found.append("MD5 MAC")
    return found


@functools.cache
def _weak_offer() -> tuple[list[str], list[str]]:
    """The weak ciphers the local OpenSSL can offer, and the kinds of weakness it has none of."""
    offer = [name for name, info in _local_ciphers().items() if _weaknesses(info)]
    seen = {kind for name in offer for kind in _weaknesses(_cipher_info(name))}
    return offer, [kind for kind in WEAKNESSES if kind not in seen]


async def _accepted_weak(prober: _Prober, offer: list[str], lowest: str,
                         highest: str) -> tuple[dict[str, str], bool]:  # fmt: skip
    """The weak ciphers the server accepts, with what makes each weak: offer them all, take out
    the one the server picks, again, until it refuses them or the handshakes run out (then the
    second value, whether the list is complete, is False)."""
    offer = list(offer)
    accepted: dict[str, str] = {}
    while offer and prober.left > 0:
        context = _pinned_context(":".join([*offer, "@SECLEVEL=0"]), lowest, highest)
        if context is None:  # none of them exists in these versions
            return accepted, True
        try:
            answer = await prober.handshake(context)
        except OSError:
            return accepted, True
        # OpenSSL aborts the handshake when a server picks a cipher that was not offered.
        offer.remove(answer.cipher)
        accepted[answer.cipher] = ", ".join(_weaknesses(_cipher_info(answer.cipher)))
    return accepted, not offer


def describe_certificate(der: bytes) -> dict[str, Any]:
    """What a DER certificate says, as ssl-cert shows it; ``{"error": ...}`` when unreadable."""
    try:
        cert = x509.load_der_x509_certificate(der)
        key_type, key_bits = _key(cert)
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        return {
            "subject": cert.subject.rfc4514_string(),
            "cn": _common_name(cert.subject),
            "sans": _alt_names(cert),
            "issuer": cert.issuer.rfc4514_string(),
            "not_before": not_before.isoformat(),
            "not_before_epoch": int(not_before.timestamp()),
            "not_after": not_after.isoformat(),
            "not_after_epoch": int(not_after.timestamp()),
            "serial": format(cert.serial_number, "x"),
            "signature_hash": _signature_hash(cert),
            "key_type": key_type,
            "key_bits": key_bits,
            "self_signed": _self_signed(cert),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        }
    except (ValueError, x509.DuplicateExtension) as exc:
        return {"error": f"unreadable certificate: {exc}"}


def _common_name(name: x509.Name) -> str:
    names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _alt_names(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [f"DNS:{name}" for name in sans.get_values_for_type(x509.DNSName)] + [
        f"IP:{ip}" for ip in sans.get_values_for_type(x509.IPAddress)
    ]


def _signature_hash(cert: x509.Certificate) -> str:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return cert.signature_algorithm_oid.dotted_string
    return algorithm.name if algorithm else ""  # Ed25519 and Ed448 hash inside the signature


def _key(cert: x509.Certificate) -> tuple[str, int]:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unknown", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, 0


def _self_signed(cert: x509.Certificate) -> bool:
    """Issuer and subject are the same and the certificate's own key verifies its signature."""
    if cert.issuer != cert.subject:
        return False
    # By hand: cryptography's verify_directly_issued_by refuses the SHA-1 and MD5 signatures
    # that old devices' certificates have.
    data, signature = cert.tbs_certificate_bytes, cert.signature
    try:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            padding = cert.signature_algorithm_parameters
            key.verify(signature, data, padding, cert.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, cert.signature_algorithm_parameters)
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(signature, data, cert.signature_hash_algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def names_match(server_name: str, cn: str, sans: list[str]) -> bool:
    """Whether a certificate with common name ``cn`` and ``sans`` ("DNS:..", "IP:..") is valid
    for ``server_name``: a DNS name may match a leftmost "*" label, an address only an address.
    The CN counts even beside SANs, as many device apps still take it: a mismatch is reported
    only when no client could be satisfied."""
    name = server_name.rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        patterns = [san.removeprefix("DNS:") for san in sans if san.startswith("DNS:")]
        return any(_dns_match(name, pattern) for pattern in [*patterns, cn] if pattern)
    return f"IP:{address}" in sans or cn == str(address)


def _dns_match(name: str, pattern: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern.startswith("*."):
        label, _, parent = name.partition(".")
        return bool(label) and parent == pattern[2:]
    return name == pattern


def _findings(report: TlsReport, weak: dict[str, str], server_name: str, now: float, port: int,
              *, complete: bool) -> list[Finding]:  # fmt: skip
    findings: list[Finding] = []

    def add(kind: str, severity: Severity, title: str, evidence: str, fix: str) -> None:
        findings.append(Finding(kind, severity, title, evidence, fix, port, "tcp"))

    cert = report.certificate
    if "not_after_epoch" in cert:
        checked = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        if now > cert["not_after_epoch"]:
            add("tls-expired", Severity.HIGH, "TLS certificate has expired",
                f"notAfter {cert['not_after']}, checked at {checked} ({cert['subject']})",
                "Install a new certificate and renew it before it expires (automatically, "
                "where the device allows).")  # fmt: skip
        if now < cert["not_before_epoch"]:
            add("tls-not-yet-valid", Severity.MEDIUM, "TLS certificate is not valid yet",
                f"notBefore {cert['not_before']}, checked at {checked} ({cert['subject']})",
                "Set the device's clock (NTP) or reissue the certificate with a start date in "
                "the past.")  # fmt: skip
        if cert["self_signed"]:
            add("tls-self-signed", Severity.MEDIUM, "TLS certificate is self-signed",
                f"issuer = subject = {cert['subject']}, signed by its own key",
                "Install a certificate issued by a CA the clients trust (an internal CA will "
                "do), or pin this certificate in every client.")  # fmt: skip
        if server_name and not names_match(server_name, cert["cn"], cert["sans"]):
            add("tls-hostname-mismatch", Severity.MEDIUM,
                f"TLS certificate is not for {server_name}",
                f"asked for {server_name}; certificate has CN={cert['cn'] or '(none)'}, "
                f"SANs {', '.join(cert['sans']) or '(none)'}",
                "Issue the certificate for the name clients connect to, in its "
                "subjectAltName.")  # fmt: skip
        if _weak_key(cert["key_type"], cert["key_bits"]):
            add("tls-weak-key", Severity.HIGH, "TLS certificate key is too weak",
                f"{cert['key_type']} key of {cert['key_bits']} bits",
                "Reissue the certificate with an RSA key of 2048 bits or more, or an EC key on "
                "P-256 or stronger.")  # fmt: skip
        if cert["signature_hash"] in _WEAK_HASHES:
            add("tls-weak-signature", Severity.HIGH, "TLS certificate has a weak signature",
                f"signed with {cert['signature_hash']}",
                "Reissue the certificate signed with SHA-256 or stronger.")  # fmt: skip
    old = [version for version in report.versions if version in OLD_VERSIONS]
    if old:
        add("tls-old-protocol", Severity.MEDIUM, "Old SSL/TLS protocol versions accepted",
            f"accepted: {', '.join(old)}",
            "Disable SSLv3, TLS 1.0 and TLS 1.1; allow only TLS 1.2 and 1.3.")  # fmt: skip
    if weak:
        more = "" if complete else f" (and maybe more: stopped at {MAX_HANDSHAKES} handshakes)"
        add("tls-weak-cipher", Severity.HIGH, "Weak TLS ciphers accepted",
            "accepted: " + ", ".join(f"{name} ({why})" for name, why in weak.items()) + more,
            "Disable NULL, anonymous, export, RC4, DES/3DES and MD5 cipher suites and CBC "
            "ones with SSLv3; prefer AES-GCM and ChaCha20-Poly1305.")  # fmt: skip
    return findings


def _weak_key(key_type: str, bits: int) -> bool:
    return (
        (key_type == "RSA" and bits < 2048)
        or (key_type == "EC" and bits < 256)
        or (key_type == "DSA")
    )
