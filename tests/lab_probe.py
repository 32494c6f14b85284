"""Clients the lab tests run inside a namespace (`ip netns exec NS python lab_probe.py ...`);
each prints one JSON object describing what the service answered."""

from __future__ import annotations

import argparse
import base64
import json
import socket
import urllib.error
import urllib.request

from engine.lab.scenarios import telnet_read


def telnet(args: argparse.Namespace) -> dict:
    def read(sock: socket.socket, wait: float) -> str:
        return telnet_read(sock, wait).decode(errors="replace")

    with socket.create_connection((args.address, args.port), timeout=5) as sock:
        banner = read(sock, 1.0)
        sock.sendall(args.user.encode() + b"\r\n")
        prompt = read(sock, 1.0)
        sock.sendall(args.password.encode() + b"\r\n")
        after_login = read(sock, args.wait)
        sock.sendall(args.command.encode() + b"\r\n")
        output = read(sock, 1.0)
    return {"banner": banner, "prompt": prompt, "after_login": after_login, "output": output}


def http(args: argparse.Namespace) -> dict:
    headers = {}
    if args.user:
        token = base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(f"http://{args.address}:{args.port}/", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return {"status": response.status, "body": response.read().decode(errors="replace")}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "realm": exc.headers.get("WWW-Authenticate", "")}


def mqtt(args: argparse.Namespace) -> dict:
    """An MQTT 3.1.1 CONNECT without credentials; the broker's CONNACK return code."""
    client_id = b"iotsec-probe"
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c"  # protocol level 4, clean session, keepalive 60
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable + payload
    with socket.create_connection((args.address, args.port), timeout=5) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        reply = sock.recv(4)
    return {"packet_type": reply[0] >> 4, "return_code": reply[3]}


def tls(args: argparse.Namespace) -> dict:
    """A TLS handshake that accepts anything, and what the certificate says."""
    import ssl

    from cryptography import x509

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((args.address, args.port), timeout=5)
    with context.wrap_socket(raw) as sock:
        der = sock.getpeercert(binary_form=True)
        version = sock.version()
    cert = x509.load_der_x509_certificate(der)
    return {
        "version": version,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.timestamp(),
        "key_bits": cert.public_key().key_size,
    }


def banner(args: argparse.Namespace) -> dict:
    with socket.create_connection((args.address, args.port), timeout=5) as sock:
        first_line = sock.recv(256).split(b"\r\n", 1)[0]
    return {"banner": first_line.decode(errors="replace")}


def coap(args: argparse.Namespace) -> dict:
    """GET /.well-known/core with aiocoap, as a discovery tool would."""
    import asyncio

    import aiocoap

    async def get() -> dict:
        context = await aiocoap.Context.create_client_context()
        try:
            request = aiocoap.Message(
                code=aiocoap.GET, uri=f"coap://{args.address}/.well-known/core"
            )
            response = await asyncio.wait_for(context.request(request).response, 10)
            return {"code": str(response.code), "payload": response.payload.decode()}
        finally:
            await context.shutdown()

    return asyncio.run(get())


def snmp(args: argparse.Namespace) -> dict:
    """sysDescr.0 with community `public`, through net-snmp's snmpget (numeric, no lookups)."""
    import subprocess

    done = subprocess.run(
        ["snmpget", "-v2c", "-c", args.community, "-On", "-Oqv", "-t", "3", "-r", "1",
         args.address, "1.3.6.1.2.1.1.1.0"],
        capture_output=True, text=True, env={"MIBS": ""},
    )  # fmt: skip
    return {"returncode": done.returncode, "sysdescr": done.stdout.strip().strip('"')}


def modbus(args: argparse.Namespace) -> dict:
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient(args.address, port=args.port, timeout=3)
    assert client.connect(), "no Modbus connection"
    reply = client.read_holding_registers(0, count=8)
    client.close()
    return {"registers": list(reply.registers)}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="kind", required=True)
    t = sub.add_parser("telnet")
    t.add_argument("address")
    t.add_argument("--port", type=int, default=23)
    t.add_argument("--user", default="root")
    t.add_argument("--password", default="")
    t.add_argument("--command", default="id")
    t.add_argument("--wait", type=float, default=1.5, help="seconds to wait after the password")
    h = sub.add_parser("http")
    h.add_argument("address")
    h.add_argument("--port", type=int, default=80)
    h.add_argument("--user", default="")
    h.add_argument("--password", default="")
    for kind, port in (("mqtt", 1883), ("tls", 443), ("banner", 22), ("modbus", 502)):
        p = sub.add_parser(kind)
        p.add_argument("address")
        p.add_argument("--port", type=int, default=port)
    c = sub.add_parser("coap")
    c.add_argument("address")
    s = sub.add_parser("snmp")
    s.add_argument("address")
    s.add_argument("--community", default="public")
    args = parser.parse_args()
    clients = {"telnet": telnet, "http": http, "mqtt": mqtt, "tls": tls, "banner": banner,
               "coap": coap, "snmp": snmp, "modbus": modbus}  # fmt: skip
    print(json.dumps(clients[args.kind](args)))


if __name__ == "__main__":
    main()
