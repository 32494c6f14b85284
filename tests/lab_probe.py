"""Clients the lab tests run inside a namespace (`ip netns exec NS python lab_probe.py ...`);
each prints one JSON object describing what the service answered."""

from __future__ import annotations

import argparse
import base64
import json
import socket
import urllib.error
import urllib.request

IAC, DONT, DO, WONT, WILL = 255, 254, 253, 252, 251


def telnet_read(sock: socket.socket, wait: float) -> str:
    """Read what arrives within ``wait`` seconds, refusing every telnet option offered."""
    sock.settimeout(wait)
    text = bytearray()
    try:
        while data := sock.recv(4096):
            i = 0
            while i < len(data):
                if data[i] == IAC and i + 2 < len(data) and data[i + 1] in (DO, DONT, WILL, WONT):
                    answer = WONT if data[i + 1] in (DO, DONT) else DONT
                    sock.sendall(bytes([IAC, answer, data[i + 2]]))
                    i += 3
                    continue
                text.append(data[i])
                i += 1
    except TimeoutError:
        pass
    return text.decode(errors="replace")


def telnet(args: argparse.Namespace) -> dict:
    with socket.create_connection((args.address, args.port), timeout=5) as sock:
        banner = telnet_read(sock, 1.0)
        sock.sendall(args.user.encode() + b"\r\n")
        prompt = telnet_read(sock, 1.0)
        sock.sendall(args.password.encode() + b"\r\n")
        after_login = telnet_read(sock, args.wait)
        sock.sendall(args.command.encode() + b"\r\n")
        output = telnet_read(sock, 1.0)
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
    args = parser.parse_args()
    print(json.dumps({"telnet": telnet, "http": http}[args.kind](args)))


if __name__ == "__main__":
    main()
