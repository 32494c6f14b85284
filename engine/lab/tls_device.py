"""The lab's TLS device: an HTTPS admin page with a self-signed certificate that has expired,
as a device whose vendor never renewed it. ``python -m engine.lab.tls_device DIR`` serves it.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ssl
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

COMMON_NAME = "ipcam.local"


def make_expired_certificate(directory: Path) -> tuple[Path, Path]:
    """A 1024-bit RSA key and a self-signed certificate that expired a year ago."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "IPCam Vendor")])  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=3 * 365))
        .not_valid_after(now - dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(COMMON_NAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls-cert.pem", directory / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><title>Device admin</title><body>Firmware 1.0.3</body></html>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(directory: Path, port: int = 443) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Old device firmware: anything the local OpenSSL still agrees to.
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("ALL:@SECLEVEL=0")
    context.load_cert_chain(directory / "tls-cert.pem", directory / "tls-key.pem")
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), _Page)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
