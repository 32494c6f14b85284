"""HTTP/1.x requests from the client side of a flow, cut into the buffers rules inspect
(``http.method``, ``http.uri``, ``http.user_agent``, ``http.host``, ``http.header``, ...), as
Suricata names them. A request is parsed once its header is complete; its body is taken up to
Content-Length (or what has arrived).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

MAX_HEADER = 16 * 1024
MAX_REQUESTS = 32  # per flow: past this, a flow's later requests are not parsed
REQUEST_LINE = re.compile(rb"^([A-Z][A-Z-]{1,15}) (\S+)(?: (HTTP/\d\.\d))?$")


@dataclass
class HttpRequest:
    buffers: dict[str, bytes]
    end: int  # where the request (header and body) ends in the stream


@dataclass
class HttpParser:
    """Follows one flow's client stream; :meth:`feed` returns the requests completed so far."""

    offset: int = 0
    done: int = 0
    broken: bool = False
    _pending: HttpRequest | None = field(default=None, repr=False)

    def feed(self, stream: bytes) -> list[HttpRequest]:
        found: list[HttpRequest] = []
        while not self.broken and self.done < MAX_REQUESTS:
            head_end = stream.find(b"\r\n\r\n", self.offset, self.offset + MAX_HEADER)
            if head_end < 0:
                if len(stream) - self.offset > MAX_HEADER:
                    self.broken = True  # not HTTP, or a header we will not hold
                break
            request = parse_request(stream[self.offset : head_end], stream, head_end + 4)
            if request is None:
                self.broken = True
                break
            found.append(request)
            self.offset = request.end
            self.done += 1
        return found


def parse_request(head: bytes, stream: bytes, body_start: int) -> HttpRequest | None:
    """The buffers of one request whose header is ``head`` (without the blank line)."""
    lines = head.split(b"\r\n")
    match = REQUEST_LINE.match(lines[0])
    if match is None:
        return None
    method, raw_uri, protocol = match.group(1), match.group(2), match.group(3) or b""
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers.append((name.strip(), value.strip()))
    by_name = {name.lower(): value for name, value in headers}
    length = by_name.get(b"content-length", b"0")
    size = int(length) if length.isdigit() else 0
    body = stream[body_start : body_start + size]
    host = by_name.get(b"host", b"")
    buffers = {
        "http.method": method,
        "http.uri.raw": raw_uri,
        "http.uri": normalize_uri(raw_uri),
        "http.protocol": protocol,
        "http.request_line": lines[0],
        "http.header": b"".join(
            n + b": " + v + b"\r\n" for n, v in headers if n.lower() != b"cookie"
        ),
        "http.header_names": b"\r\n" + b"".join(n + b"\r\n" for n, _ in headers) + b"\r\n",
        "http.request_body": body,
    }
    for buffer, name in (("http.user_agent", b"user-agent"), ("http.cookie", b"cookie"),
                         ("http.content_type", b"content-type"),
                         ("http.accept_enc", b"accept-encoding")):  # fmt: skip
        if name in by_name:
            buffers[buffer] = by_name[name]
    if host:
        buffers["http.host"] = normalize_host(host)
    return HttpRequest(buffers, body_start + size)


def normalize_host(host: bytes) -> bytes:
    """Suricata's http.host: lower case, without the port (``[v6]:port`` keeps its brackets)."""
    host = host.lower()
    if host.startswith(b"["):
        return host.split(b"]", 1)[0] + b"]"
    return host.rsplit(b":", 1)[0] if host.count(b":") == 1 else host


def normalize_uri(raw: bytes) -> bytes:
    """The URI as Suricata's http.uri shows it: percent-escapes decoded, ``/./`` and ``/../``
    resolved, doubled slashes kept."""
    decoded = unquote_to_bytes(raw)
    path, sep, query = decoded.partition(b"?")
    parts: list[bytes] = []
    for segment in path.split(b"/"):
        if segment == b".":
            continue
        if segment == b"..":
            if len(parts) > 1:
                parts.pop()
            continue
        parts.append(segment)
    return b"/".join(parts) + sep + query
