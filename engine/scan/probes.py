"""What answers on an open TCP port: a banner read, then the protocol's own question (an SSH
key exchange offer, an HTTP GET, an MQTT CONNECT without credentials, an RTSP DESCRIBE, a
Modbus device identification — read-only), and the findings that follow from the answer.
Nothing here logs in, writes, or sends anything that could change a device's state."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import ssl
import struct
from collections.abc import Awaitable, Callable

from engine.model import Severity
from engine.scan.findings import Finding, Service

BANNER_WAIT = 1.5
READ_LIMIT = 65536
TLS_PORTS = frozenset({443, 1443, 4443, 5001, 8443, 8883, 55443})
MQTT_PORTS = frozenset({1883, 8883})
RTSP_PORTS = frozenset({554, 8554})
MODBUS_PORTS = frozenset({502})

IAC = 0xFF
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.I | re.S)
_PASSWORD_FIELD = re.compile(rb"<input[^>]+type\s*=\s*[\"']?password", re.I)
_REALM = re.compile(r'realm="?([^",]*)', re.I)
_SSH_WEAK = {
    "kex": ("diffie-hellman-group1-sha1", "diffie-hellman-group-exchange-sha1",
            "diffie-hellman-group14-sha1"),
    "hostkey": ("ssh-dss",),
    "cipher": ("3des-cbc", "arcfour", "arcfour128", "arcfour256", "blowfish-cbc", "cast128-cbc",
               "des-cbc"),
    "mac": ("hmac-md5", "hmac-md5-96", "hmac-sha1-96", "umac-32@openssh.com"),
}  # fmt: skip


async def identify(address: str, port: int, timeout: float = 3.0) -> tuple[Service, list[Finding]]:
    """Find out what answers on ``port``; a port that says nothing keeps an empty service."""
    service = Service(port)
    findings: list[Finding] = []
    try:
        tls = port in TLS_PORTS
        reader, writer = await _open(address, port, timeout, tls)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        service.details["error"] = f"connect: {exc}"
        return service, findings
    try:
        banner = b"" if tls else await _read(reader, BANNER_WAIT, first_only=True)
        probe = _choose(port, banner)
        await probe(reader, writer, service, findings, banner, address, timeout)
        if tls and not service.service.endswith("s") and service.service:
            service.details["tls"] = True
    except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        service.details.setdefault("error", f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    for finding in _old_version(service):
        findings.append(finding)
    return service, findings


Probe = Callable[
    [asyncio.StreamReader, asyncio.StreamWriter, Service, list[Finding], bytes, str, float],
    Awaitable[None],
]


def _choose(port: int, banner: bytes) -> Probe:
    if banner.startswith(b"SSH-"):
        return _ssh
    if banner[:1] == bytes([IAC]) or b"login:" in banner.lower():
        return _telnet
    if re.match(rb"220[ -]", banner):
        return _ftp
    if banner:
        return _unknown
    if port in MQTT_PORTS:
        return _mqtt
    if port in RTSP_PORTS:
        return _rtsp
    if port in MODBUS_PORTS:
        return _modbus
    return _http


async def _open(address: str, port: int, timeout: float,
                tls: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:  # fmt: skip
    context = unverified_context() if tls else None
    return await asyncio.wait_for(
        asyncio.open_connection(address, port, ssl=context, limit=READ_LIMIT), timeout
    )


def new_unverified_context() -> ssl.SSLContext:
    """A new TLS client context that takes any certificate, for a caller to adjust: the TLS
    audit reads the certificate it is shown, valid or not, and judges it afterwards; a probe
    only wants the service behind it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@functools.cache
def unverified_context() -> ssl.SSLContext:
    """One :func:`new_unverified_context` shared by every connection that leaves it as it is:
    building a context per connect is work on the event loop (ssl.create_default_context
    loads the CA store, some 20 ms), and nothing here needs one of its own."""
    return new_unverified_context()


async def _read(
    reader: asyncio.StreamReader,
    wait: float,
    *,
    first_only: bool = False,
    until: bytes = b"",
    enough: Callable[[bytes], bool] | None = None,
) -> bytes:
    """What arrives within ``wait`` seconds, or less: the first chunk only, up to ``until``,
    or until ``enough`` says the answer is whole."""
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while len(data) < READ_LIMIT:
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            chunk = await asyncio.wait_for(reader.read(4096), left)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
        if first_only or (until and until in data) or (enough is not None and enough(data)):
            break
    return data


def _sized(header: int, length: Callable[[bytes], int]) -> Callable[[bytes], bool]:
    """An ``enough`` for answers whose first ``header`` bytes give their length."""
    return lambda data: len(data) >= header and len(data) >= length(data)


def _text(data: bytes, limit: int = 300) -> str:
    return data.decode("utf-8", "replace").strip()[:limit]


# -- what the probes and the credential checks both send -------------------------------------

_TELNET_OPTION = re.compile(rb"\xff([\xfb-\xfe])(.)", re.S)
_TELNET_COMMAND = re.compile(rb"\xff[\xfb-\xfe].|\xff.", re.S)
# WILL or WONT is answered DONT; DO or DONT is answered WONT.
_REFUSAL = {0xFB: 0xFE, 0xFC: 0xFE, 0xFD: 0xFC, 0xFE: 0xFC}


def telnet_options(data: bytes) -> tuple[bytes, bytes]:
    """(``data`` without its Telnet commands, the refusal of every option it asks for): a
    server whose options are all refused goes on to its login prompt."""
    refusals = b"".join(bytes([IAC, _REFUSAL[verb[0]], option[0]])
                        for verb, option in _TELNET_OPTION.findall(data))  # fmt: skip
    return _TELNET_COMMAND.sub(b"", data), refusals


def url_host(address: str) -> str:
    """``address`` as the host of a URL or a Host header: an IPv6 one in brackets."""
    return f"[{address}]" if ":" in address else address


def http_get(address: str, *headers: str, path: str = "/") -> bytes:
    """``GET path`` to ``address``, with ``headers`` added."""
    lines = [f"Host: {url_host(address)}", *headers, "User-Agent: iotsec-scan", "Accept: */*",
             "Connection: close"]  # fmt: skip
    request = f"GET {path} HTTP/1.0\r\n" + "".join(f"{line}\r\n" for line in lines) + "\r\n"
    return request.encode()


def mqtt_connect(user: str | None = None, password: str = "") -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, keep-alive 10 s), with credentials if ``user``."""
    flags = 0x02 | (0xC0 if user is not None else 0)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x0a" + _mqtt_string("iotsec-scan")
    if user is not None:
        body += _mqtt_string(user) + _mqtt_string(password)
    return bytes([0x10, len(body)]) + body


def _mqtt_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


# -- protocols ---------------------------------------------------------------------------------


async def _ssh(reader, writer, service, findings, banner, address, timeout) -> None:
    ident = _text(banner.split(b"\n", 1)[0])
    service.service, service.banner = "ssh", ident
    software = ident.split("-", 2)[2] if ident.count("-") >= 2 else ""
    product, _, version = software.partition("_")
    service.product, service.version = product, version.split(" ")[0]
    writer.write(b"SSH-2.0-iotsec_scan\r\n")
    await writer.drain()
    rest = banner.split(b"\n", 1)[1] if b"\n" in banner else b""
    whole = _sized(4, lambda d: 4 + struct.unpack(">I", d[:4])[0])
    packet = rest if whole(rest) else rest + await _read(reader, timeout, enough=lambda d:
                                                         whole(rest + d))  # fmt: skip
    algorithms = _kexinit(packet)
    if not algorithms:
        return
    service.details["algorithms"] = algorithms
    weak = [f"{kind}: {name}" for kind, names in _SSH_WEAK.items()
            for name in algorithms.get(kind, []) if name in names]  # fmt: skip
    if weak:
        findings.append(Finding(
            "ssh-weak-algorithms", Severity.MEDIUM,
            "SSH server offers weak algorithms",
            "; ".join(weak),
            "Remove SHA-1 key exchange, DSA host keys, CBC/RC4/3DES ciphers and MD5/96-bit MACs "
            "from the server's configuration, or update its firmware.",
            service.port,
        ))  # fmt: skip


def _kexinit(data: bytes) -> dict[str, list[str]]:
    """The algorithm lists of the server's SSH_MSG_KEXINIT (binary packet, RFC 4253 §7.1)."""
    if len(data) < 6:
        return {}
    length, padding = struct.unpack(">IB", data[:5])
    payload = data[5 : 4 + length - padding + 1]
    if not payload or payload[0] != 20 or len(payload) < 17:
        return {}
    names = ("kex", "hostkey", "cipher", "cipher_s2c", "mac", "mac_s2c", "compression",
             "compression_s2c")  # fmt: skip
    out: dict[str, list[str]] = {}
    at = 17
    for name in names:
        if at + 4 > len(payload):
            break
        (size,) = struct.unpack(">I", payload[at : at + 4])
        out[name] = [n for n in payload[at + 4 : at + 4 + size].decode("ascii", "replace")
                     .split(",") if n]  # fmt: skip
        at += 4 + size
    return {k: v for k, v in out.items() if not k.endswith("_s2c")}


async def _telnet(reader, writer, service, findings, banner, address, timeout) -> None:
    _, refusals = telnet_options(banner)
    if refusals:
        writer.write(refusals)
        await writer.drain()
    text = _text(telnet_options(banner + await _read(reader, BANNER_WAIT, until=b":"))[0])
    service.service, service.banner = "telnet", text
    findings.append(Finding(
        "telnet-cleartext", Severity.HIGH,
        "Telnet remote login in cleartext",
        f"port {service.port} answers with a Telnet login: {text[-120:]!r}",
        "Disable Telnet on the device (or firewall it) and use SSH; Telnet with default "
        "passwords is how Mirai and its kin take devices over.",
        service.port,
    ))  # fmt: skip


async def _ftp(reader, writer, service, findings, banner, address, timeout) -> None:
    text = _text(banner.split(b"\n", 1)[0])
    service.service, service.banner = "ftp", text
    software = re.search(r"\(([\w.-]+) ([\d.]+[\w.-]*)\)|(\w*FTPd?)[ /v]*([\d.]+)", text, re.I)
    if software:
        service.product = software.group(1) or software.group(3) or ""
        service.version = software.group(2) or software.group(4) or ""
    findings.append(Finding(
        "ftp-cleartext", Severity.MEDIUM,
        "FTP service: logins and files in cleartext",
        f"port {service.port}: {text}",
        "Disable FTP, or use SFTP/FTPS; anyone on the path reads the password.",
        service.port,
    ))  # fmt: skip


async def _unknown(reader, writer, service, findings, banner, address, timeout) -> None:
    service.banner = _text(banner)


async def _http(reader, writer, service, findings, banner, address, timeout) -> None:
    writer.write(http_get(address))
    await writer.drain()
    data = await _read(reader, timeout)
    if data.startswith(b"RTSP/"):
        service.service = "rtsp"
        service.banner = _text(data.split(b"\r\n", 1)[0])
        return
    if not data.startswith(b"HTTP/"):
        service.banner = _text(data)
        return
    tls = writer.get_extra_info("ssl_object") is not None
    service.service = "https" if tls else "http"
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    service.banner = status
    server = headers.get("server", "")
    product, _, version = server.partition("/")
    service.product, service.version = product.strip(), version.split(" ")[0]
    service.details.update(status=status, server=server)
    title = _TITLE.search(body)
    if title:
        service.details["title"] = _text(title.group(1), 120)
    authenticate = headers.get("www-authenticate", "")
    if authenticate:
        realm = _REALM.search(authenticate)
        service.details["auth"] = authenticate.split(" ", 1)[0]
        service.details["realm"] = realm.group(1) if realm else ""
    if tls:
        return
    if status.split(" ")[1:2] == ["401"] and authenticate.lower().startswith("basic"):
        findings.append(Finding(
            "http-basic-cleartext", Severity.MEDIUM,
            "Web login with HTTP basic authentication in cleartext",
            f"{status}; WWW-Authenticate: {authenticate}" + (f"; Server: {server}" if server
                                                            else ""),
            "Serve the admin interface over HTTPS only (basic auth sends the password with "
            "every request, base64-encoded, not encrypted), and change its default password.",
            service.port,
        ))  # fmt: skip
    elif _PASSWORD_FIELD.search(body):
        findings.append(Finding(
            "http-login-cleartext", Severity.MEDIUM,
            "Login form served over plain HTTP",
            f"{status}; a password field on / " + (f"({service.details.get('title')})"
                                                   if title else ""),
            "Serve the login page over HTTPS only and redirect HTTP to it.",
            service.port,
        ))  # fmt: skip


async def _mqtt(reader, writer, service, findings, banner, address, timeout) -> None:
    writer.write(mqtt_connect())
    await writer.drain()
    data = await _read(reader, timeout, enough=lambda d: len(d) >= 4)
    if len(data) < 4 or data[0] != 0x20:
        service.banner = _text(data)
        return
    code = data[3]
    tls = writer.get_extra_info("ssl_object") is not None
    service.service = "mqtts" if tls else "mqtt"
    service.details["connack"] = code
    service.banner = f"CONNACK return code {code}"
    if code == 0:
        writer.write(b"\xe0\x00")  # DISCONNECT
        await writer.drain()
        findings.append(Finding(
            "mqtt-anonymous", Severity.HIGH,
            "MQTT broker accepts anonymous clients",
            f"CONNECT without user name or password answered with CONNACK 0 (accepted) on "
            f"port {service.port}{' over TLS' if tls else ''}",
            "Set allow_anonymous false (Mosquitto) and require passwords or client "
            "certificates; anyone can read and publish every topic now.",
            service.port,
        ))  # fmt: skip


async def _rtsp(reader, writer, service, findings, banner, address, timeout) -> None:
    url = f"rtsp://{url_host(address)}:{service.port}/"
    writer.write(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n"
                 "User-Agent: iotsec-scan\r\n\r\n".encode())  # fmt: skip
    await writer.drain()
    data = await _read(reader, timeout, until=b"\r\n\r\n")
    if not data.startswith(b"RTSP/"):
        service.banner = _text(data)
        return
    status = _text(data.split(b"\r\n", 1)[0])
    service.service, service.banner = "rtsp", status
    server = re.search(rb"\r\nServer:\s*([^\r\n]*)", data, re.I)
    if server:
        service.product = _text(server.group(1), 100)
    if status.split(" ")[1:2] == ["200"]:
        findings.append(Finding(
            "rtsp-no-auth", Severity.HIGH,
            "Camera stream readable without a password (RTSP)",
            f"DESCRIBE {url} answered {status}",
            "Require authentication for RTSP in the camera's settings (or firewall port "
            f"{service.port}); anyone on the network can watch the stream.",
            service.port,
        ))  # fmt: skip


async def _modbus(reader, writer, service, findings, banner, address, timeout) -> None:
    # Read Device Identification (function 43, MEI 14), basic objects: read-only.
    request = struct.pack(">HHHB", 1, 0, 5, 1) + bytes([0x2B, 0x0E, 0x01, 0x00])
    writer.write(request)
    await writer.drain()
    data = await _read(
        reader, timeout, enough=_sized(6, lambda d: 6 + struct.unpack(">H", d[4:6])[0])
    )
    if len(data) < 9 or data[2:4] != b"\x00\x00":
        service.banner = _text(data)
        return
    service.service = "modbus"
    function = data[7]
    objects: dict[str, str] = {}
    if function == 0x2B and len(data) >= 15:
        count, at = data[13], 14
        names = {0: "vendor", 1: "product_code", 2: "revision"}
        for _ in range(count):
            if at + 2 > len(data):
                break
            object_id, size = data[at], data[at + 1]
            objects[names.get(object_id, f"object_{object_id}")] = _text(
                data[at + 2 : at + 2 + size], 100
            )
            at += 2 + size
    service.details["device_id"] = objects
    service.product = objects.get("vendor", "")
    service.version = objects.get("revision", "")
    if objects:
        answer = ", ".join(f"{k} {v}" for k, v in objects.items())
    elif function & 0x80:
        answer = f"exception {data[8]:#x} to device identification"
    else:
        answer = "device identification with no objects"
    service.banner = answer
    findings.append(Finding(
        "modbus-reachable", Severity.HIGH,
        "Modbus/TCP reachable: no authentication, anyone here can read and write",
        f"port {service.port} answered a read-only device identification request: {answer}",
        "Put the controller on its own network and allow Modbus only from the HMI/SCADA hosts "
        "($MODBUS_CLIENTS); Modbus has no passwords.",
        service.port,
    ))  # fmt: skip


# -- versions ----------------------------------------------------------------------------------

# (product as it names itself, the first version that is not old) — each is older than two
# years of its project's security releases; a banner can lie or be patched, so these findings
# are low confidence.
CURRENT = {
    "openssh": (8, 8),
    "dropbear": (2022, 82),
    "lighttpd": (1, 4, 64),
    "nginx": (1, 20),
    "apache": (2, 4, 52),
    "vsftpd": (3, 0, 3),
    "proftpd": (1, 3, 7),
    "mosquitto": (2, 0),
}
UNMAINTAINED = ("boa", "goahead-webs", "mini_httpd", "thttpd", "micro_httpd")


def _old_version(service: Service) -> list[Finding]:
    product = service.product.lower()
    if not product:
        return []
    if any(product.startswith(name) for name in UNMAINTAINED):
        return [_old(service, "is no longer maintained")]
    current = next((v for name, v in CURRENT.items() if product.startswith(name)), None)
    numbers = tuple(int(n) for n in re.findall(r"\d+", service.version)[:3])
    if current is None or not numbers or numbers >= current:
        return []
    wanted = ".".join(map(str, current))
    return [_old(service, f"is older than {wanted}")]


def _old(service: Service, why: str) -> Finding:
    shown = f"{service.product} {service.version}".strip()
    return Finding(
        "old-software", Severity.LOW,
        f"Old software: {shown} {why}",
        f"port {service.port} names itself {shown!r}: {service.banner[:120]}",
        "Update the device's firmware; check the vendor's advisories for this version.",
        service.port, confidence="low",
    )  # fmt: skip
