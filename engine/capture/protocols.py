"""Protocol tagging: which IoT protocol a flow carries, by port and by payload, and the few facts
of it an operator needs (MQTT client id and whether credentials travel in clear, HTTP host and
basic auth, TLS version and SNI, DNS names, DHCP host names, Modbus function codes, ...).

Payloads are untrusted: every parser here reads with bounds checks and gives up quietly on
anything it does not understand; the worst a hostile payload can do is leave a flow untagged.
Secrets are never kept: a cleartext password or SNMP community is recorded as present, not as
its value.

One file, though long: each protocol's parser is short and bounded, and the tagging that picks
which to run reads best beside the parsers and the tables they share.
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Any

from engine.capture.decode import ETH_ARP, ICMP, ICMPV6, TCP, UDP

# The tags this module can set, beyond the transport names (tcp, udp, icmp, icmpv6, arp, ip).
TAGS = ("mqtt", "coap", "modbus", "ssdp", "mdns", "dns", "telnet", "http", "tls", "dhcp",
        "snmp", "ssh", "ntp")  # fmt: skip
IGMP = 2
TRANSPORTS = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMPV6: "icmpv6", ETH_ARP: "arp", IGMP: "igmp"}

# Well-known ports: a first guess that the payload may confirm or correct.
TCP_PORTS = {1883: "mqtt", 502: "modbus", 23: "telnet", 2323: "telnet", 80: "http",
             8080: "http", 443: "tls", 8443: "tls", 8883: "tls", 22: "ssh", 53: "dns"}  # fmt: skip
UDP_PORTS = {5683: "coap", 1900: "ssdp", 5353: "mdns", 53: "dns", 67: "dhcp", 68: "dhcp",
             161: "snmp", 162: "snmp", 123: "ntp"}  # fmt: skip

# How many payload-carrying packets of one flow are inspected before the tagger stops looking.
INSPECT_PACKETS = 12
MAX_NAMES = 16
MAX_TEXT = 200

HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ",
                b"CONNECT ", b"SUBSCRIBE ", b"NOTIFY ")  # fmt: skip
TLS_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2",
                0x0304: "TLS 1.3"}  # fmt: skip
MQTT_TYPES = ("", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
              "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP",
              "DISCONNECT", "AUTH")  # fmt: skip
COAP_METHODS = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE", 5: "FETCH", 6: "PATCH", 7: "iPATCH"}
MODBUS_FUNCTIONS = {1: "read coils", 2: "read discrete inputs", 3: "read holding registers",
                    4: "read input registers", 5: "write single coil", 6: "write single register",
                    8: "diagnostics", 15: "write multiple coils", 16: "write multiple registers",
                    22: "mask write register", 23: "read/write multiple registers",
                    43: "device identification"}  # fmt: skip
DNS_TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
             33: "SRV", 41: "OPT", 47: "NSEC", 255: "ANY"}  # fmt: skip
DHCP_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK",
              7: "RELEASE", 8: "INFORM"}  # fmt: skip
SNMP_PDUS = {0xA0: "get", 0xA1: "get-next", 0xA2: "response", 0xA3: "set", 0xA4: "trap",
             0xA5: "get-bulk", 0xA6: "inform", 0xA7: "trap", 0xA8: "report"}  # fmt: skip


class Malformed(Exception):
    """A payload that does not parse as the protocol tried; the tagger then moves on."""


def transport_tag(proto: int) -> str:
    return TRANSPORTS.get(proto, "ip")


def port_tag(proto: int, sport: int, dport: int) -> str:
    """The tag the ports suggest (server port first), or the transport name."""
    table = TCP_PORTS if proto == TCP else UDP_PORTS if proto == UDP else None
    if table is not None:
        tag = table.get(dport) or table.get(sport)
        if tag:
            return tag
    return transport_tag(proto)


def inspect(proto: int, sport: int, dport: int, payload: bytes) -> tuple[str, dict[str, Any]]:
    """The tag one payload shows and what it says, or ("", {}) when it shows nothing known."""
    if not payload:
        return "", {}
    try:
        if proto == TCP:
            return _inspect_tcp(sport, dport, payload)
        if proto == UDP:
            return _inspect_udp(sport, dport, payload)
    except (Malformed, IndexError, struct.error, UnicodeDecodeError, ValueError):
        pass
    return "", {}


def merge(details: dict[str, Any], found: dict[str, Any]) -> None:
    """Fold what one packet showed into a flow's details: lists grow (bounded), others set."""
    for key, value in found.items():
        if isinstance(value, list):
            have = details.setdefault(key, [])
            for item in value:
                if item not in have and len(have) < MAX_NAMES:
                    have.append(item)
        elif key not in details or value:
            details[key] = value


def _inspect_tcp(sport: int, dport: int, payload: bytes) -> tuple[str, dict[str, Any]]:
    first = payload[0]
    if first == 0x16 and len(payload) >= 6 and payload[1] == 3:
        return "tls", tls_handshake(payload)
    if payload.startswith(HTTP_METHODS) or payload.startswith(b"HTTP/1."):
        return "http", http_message(payload)
    if payload.startswith(b"SSH-"):
        return "ssh", {"banner": _text(payload.split(b"\r\n", 1)[0].split(b"\n", 1)[0])}
    if 502 in (sport, dport):
        return "modbus", modbus_pdu(payload)
    if 1883 in (sport, dport) or (first >> 4 == 1 and b"MQ" in payload[2:12]):
        return "mqtt", mqtt_packet(payload)
    negotiates = first == 0xFF and len(payload) > 1 and payload[1] >= 0xFB  # IAC WILL..DONT
    if negotiates or 23 in (sport, dport) or 2323 in (sport, dport):
        return "telnet", telnet_data(payload)
    if 53 in (sport, dport):
        return "dns", dns_message(payload[2:], mdns=False)
    return "", {}


def _inspect_udp(sport: int, dport: int, payload: bytes) -> tuple[str, dict[str, Any]]:
    ports = (sport, dport)
    if 5353 in ports:
        return "mdns", dns_message(payload, mdns=True)
    if 53 in ports:
        return "dns", dns_message(payload, mdns=False)
    if 1900 in ports:
        return "ssdp", ssdp_message(payload)
    if 67 in ports or 68 in ports:
        return "dhcp", dhcp_message(payload)
    if 5683 in ports:
        return "coap", coap_message(payload)
    if 161 in ports or 162 in ports:
        return "snmp", snmp_message(payload)
    if 123 in ports and len(payload) >= 48:
        return "ntp", {"mode": payload[0] & 0x07}
    return "", {}


# -- parsers ------------------------------------------------------------------------------------


def _text(raw: bytes) -> str:
    """Untrusted bytes as bounded text (decoding errors replaced; escaping is the UI's job)."""
    return raw[:MAX_TEXT].decode("utf-8", "replace")


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    """An MQTT variable-length integer at ``offset``: (value, offset after it)."""
    value = shift = 0
    for _ in range(4):
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
    raise Malformed("mqtt length longer than 4 bytes")


def _mqtt_string(data: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("!H", data, offset)
    end = offset + 2 + length
    if end > len(data):
        raise Malformed("mqtt string past the end")
    return data[offset + 2 : end], end


def mqtt_packet(payload: bytes) -> dict[str, Any]:
    """MQTT control packet type; for CONNECT the client id, user name and password presence."""
    kind = payload[0] >> 4
    if kind == 0:
        raise Malformed("mqtt packet type 0")
    _, offset = _varint(payload, 1)  # the remaining length: the payload bounds reads anyway
    found: dict[str, Any] = {"types": [MQTT_TYPES[kind]]}
    if kind != 1:
        if kind == 3:
            topic, _ = _mqtt_string(payload, offset)
            found["topics"] = [_text(topic)]
        return found
    name, offset = _mqtt_string(payload, offset)
    if name not in (b"MQTT", b"MQIsdp"):
        raise Malformed("not an MQTT CONNECT")
    level, flags = payload[offset], payload[offset + 1]
    offset += 4  # level, flags, keep-alive
    if level == 5:
        properties, offset = _varint(payload, offset)
        offset += properties
    client_id, offset = _mqtt_string(payload, offset)
    if flags & 0x04:  # a will message: (v5 properties), topic, payload
        if level == 5:
            properties, offset = _varint(payload, offset)
            offset += properties
        _, offset = _mqtt_string(payload, offset)
        _, offset = _mqtt_string(payload, offset)
    found.update(
        {
            "version": {3: "3.1", 4: "3.1.1", 5: "5.0"}.get(level, str(level)),
            "client_id": _text(client_id),
            "password": bool(flags & 0x40),
        }
    )
    if flags & 0x80:
        username, offset = _mqtt_string(payload, offset)
        found["username"] = _text(username)
    return found


def http_message(payload: bytes) -> dict[str, Any]:
    """Request line and the headers that identify the client; basic auth as present + user."""
    head = payload.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    first = lines[0].split(b" ", 2)
    found: dict[str, Any] = {}
    if first[0].startswith(b"HTTP/"):
        found["status"] = _text(first[1]) if len(first) > 1 else ""
    else:
        found["method"] = _text(first[0])
        found["uri"] = _text(first[1]) if len(first) > 1 else ""
    for line in lines[1:40]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"host":
            found["host"] = _text(value)
        elif name == b"user-agent":
            found["user_agent"] = _text(value)
        elif name == b"server":
            found["server"] = _text(value)
        elif name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            found["auth"] = _text(scheme)
            if scheme.lower() == b"basic":
                found["basic_auth"] = True
                try:
                    user = base64.b64decode(credentials.strip(), validate=True).split(b":", 1)[0]
                except (binascii.Error, ValueError):
                    user = b""
                if user:
                    found["username"] = _text(user)
    return found


def tls_handshake(payload: bytes) -> dict[str, Any]:
    """TLS record carrying a ClientHello (offered versions, SNI) or ServerHello (chosen version)."""
    (record_version,) = struct.unpack_from("!H", payload, 1)
    found: dict[str, Any] = {}
    if record_version not in TLS_VERSIONS:
        raise Malformed("not a tls record")
    if len(payload) < 10 or payload[5] not in (1, 2):
        return found
    hello = payload[5]
    (version,) = struct.unpack_from("!H", payload, 9)
    offset = 9 + 2 + 32
    session = payload[offset]
    offset += 1 + session
    if hello == 1:
        (ciphers,) = struct.unpack_from("!H", payload, offset)
        offset += 2 + ciphers
        offset += 1 + payload[offset]  # compression methods
    else:
        offset += 3  # chosen cipher, compression
    versions: list[int] = []
    if offset + 2 <= len(payload):
        (total,) = struct.unpack_from("!H", payload, offset)
        offset += 2
        end = min(offset + total, len(payload))
        while offset + 4 <= end:
            kind, length = struct.unpack_from("!HH", payload, offset)
            body = payload[offset + 4 : offset + 4 + length]
            offset += 4 + length
            if kind == 0 and hello == 1 and len(body) >= 5:
                (name_length,) = struct.unpack_from("!H", body, 3)
                found["sni"] = _text(body[5 : 5 + name_length])
            elif kind == 43:
                raw = body[1:] if hello == 1 else body
                versions = [v for (v,) in struct.iter_unpack("!H", raw[: len(raw) // 2 * 2])]
    known = [v for v in versions if v in TLS_VERSIONS] or [version]
    key = "version" if hello == 2 else "client_version"
    found[key] = TLS_VERSIONS.get(max(known), f"0x{max(known):04x}")
    found["handshake"] = ["client_hello" if hello == 1 else "server_hello"]
    return found


def modbus_pdu(payload: bytes) -> dict[str, Any]:
    """Modbus/TCP: the unit and function code of the first PDU (0x80 set = an exception)."""
    if len(payload) < 8:
        raise Malformed("short modbus frame")
    _, protocol, length, unit, function = struct.unpack_from("!HHHBB", payload)
    if protocol != 0 or length < 2:
        raise Malformed("not modbus/tcp")
    found: dict[str, Any] = {"unit": unit, "functions": [function & 0x7F]}
    if function & 0x80:
        found["exceptions"] = [function & 0x7F]
    return found


def telnet_data(payload: bytes) -> dict[str, Any]:
    """Telnet: option negotiation seen, and a login prompt (a clue that a shell is offered)."""
    found: dict[str, Any] = {}
    if payload[0] == 0xFF:
        found["negotiation"] = True
    lowered = payload.lower()
    if b"login:" in lowered or b"username:" in lowered:
        found["login_prompt"] = True
    if b"password:" in lowered:
        found["password_prompt"] = True
    return found


def _dns_name(data: bytes, offset: int) -> tuple[str, int]:
    """A (possibly compressed) DNS name at ``offset``: (name, offset after it in place)."""
    labels: list[str] = []
    end = -1
    for _ in range(128):  # compression loops end here
        length = data[offset]
        if length == 0:
            offset += 1
            break
        if length & 0xC0 == 0xC0:
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        if length & 0xC0:
            raise Malformed("bad dns label")
        label = data[offset + 1 : offset + 1 + length]
        if len(label) < length:
            raise Malformed("dns label past the end")
        labels.append(label.decode("ascii", "replace"))
        offset += 1 + length
    else:
        raise Malformed("dns name loops")
    return ".".join(labels)[:MAX_TEXT], end if end >= 0 else offset


def dns_message(payload: bytes, *, mdns: bool) -> dict[str, Any]:
    """Query names and types; for mDNS answers also the announced host and service names."""
    if len(payload) < 12:
        raise Malformed("short dns header")
    flags, questions, answers, authority, additional = struct.unpack_from("!HHHHH", payload, 2)
    if questions > 64 or answers > 256:
        raise Malformed("implausible dns counts")
    found: dict[str, Any] = {}
    offset = 12
    queries: list[str] = []
    for _ in range(questions):
        name, offset = _dns_name(payload, offset)
        (qtype,) = struct.unpack_from("!H", payload, offset)
        offset += 4
        queries.append(f"{DNS_TYPES.get(qtype, qtype)} {name}")
    if queries:
        found["queries"] = queries
    if flags & 0x8000:
        found["response"] = True
        hosts: list[str] = []
        services: list[str] = []
        for _ in range(min(answers + authority + additional, 64)):
            name, offset = _dns_name(payload, offset)
            rtype, _, _, length = struct.unpack_from("!HHIH", payload, offset)
            offset += 10
            if rtype in (1, 28) and name not in hosts:
                hosts.append(name)
            elif rtype == 12 and mdns and name.startswith("_"):  # a service type's instances
                target, _ = _dns_name(payload, offset)
                if target not in services:
                    services.append(target)
            offset += length
        if hosts:
            found["hosts" if mdns else "answers"] = hosts[:MAX_NAMES]
        if services:
            found["services"] = services[:MAX_NAMES]
    return found


def dns_query_name(payload: bytes) -> bytes | None:
    """The first question's name of a DNS message, as Suricata's dns.query buffer holds it
    (dotted, without the trailing dot), or None when there is none or it does not parse."""
    try:
        if len(payload) < 12 or not struct.unpack_from("!H", payload, 4)[0]:
            return None
        name, _ = _dns_name(payload, 12)
    except (Malformed, IndexError, struct.error):
        return None
    return name.encode("ascii", "replace")


def ssdp_message(payload: bytes) -> dict[str, Any]:
    """SSDP: NOTIFY / M-SEARCH / response with the headers that identify the device."""
    lines = payload.split(b"\r\n")
    start = lines[0]
    if start.startswith(b"NOTIFY"):
        method = "NOTIFY"
    elif start.startswith(b"M-SEARCH"):
        method = "M-SEARCH"
    elif start.startswith(b"HTTP/1."):
        method = "response"
    else:
        raise Malformed("not ssdp")
    found: dict[str, Any] = {"method": method}
    for line in lines[1:40]:
        name, _, value = line.partition(b":")
        key = name.strip().lower().decode("ascii", "replace")
        if key in ("server", "location", "nt", "nts", "usn", "st", "user-agent"):
            found[key.replace("-", "_")] = _text(value.strip())
    return found


def dhcp_message(payload: bytes) -> dict[str, Any]:
    """DHCP: message type, client MAC, host name and vendor class (options 53, 12, 60)."""
    if len(payload) < 240 or payload[236:240] != b"\x63\x82\x53\x63":
        raise Malformed("not dhcp")
    found: dict[str, Any] = {"client_mac": payload[28:34].hex(":")}
    offered = payload[16:20]
    if offered != b"\0\0\0\0":
        found["your_ip"] = ".".join(str(b) for b in offered)
    offset = 240
    while offset < len(payload):
        code = payload[offset]
        if code == 255:
            break
        if code == 0:
            offset += 1
            continue
        length = payload[offset + 1]
        value = payload[offset + 2 : offset + 2 + length]
        offset += 2 + length
        if code == 53 and value:
            found["type"] = DHCP_TYPES.get(value[0], str(value[0]))
        elif code == 12:
            found["hostname"] = _text(value)
        elif code == 60:
            found["vendor_class"] = _text(value)
        elif code == 50 and length == 4:
            found["requested_ip"] = ".".join(str(b) for b in value)
    return found


def coap_message(payload: bytes) -> dict[str, Any]:
    """CoAP: message code (method or response class) and the Uri-Path."""
    if len(payload) < 4 or payload[0] >> 6 != 1 or payload[0] & 0x0F > 8:
        raise Malformed("not coap")
    code = payload[1]
    found: dict[str, Any] = {}
    if 1 <= code <= 31:
        found["method"] = COAP_METHODS.get(code, f"0.{code:02d}")
    elif code:
        found["code"] = f"{code >> 5}.{code & 0x1F:02d}"
    offset = 4 + (payload[0] & 0x0F)
    number = 0
    path: list[str] = []
    while offset < len(payload) and payload[offset] != 0xFF:
        delta, length = payload[offset] >> 4, payload[offset] & 0x0F
        offset += 1
        delta, offset = _coap_extended(payload, delta, offset)
        length, offset = _coap_extended(payload, length, offset)
        number += delta
        if number == 11:
            path.append(_text(payload[offset : offset + length]))
        offset += length
    if path:
        found["uri"] = "/" + "/".join(path)
    return found


def _coap_extended(payload: bytes, value: int, offset: int) -> tuple[int, int]:
    if value == 13:
        return payload[offset] + 13, offset + 1
    if value == 14:
        return struct.unpack_from("!H", payload, offset)[0] + 269, offset + 2
    if value == 15:
        raise Malformed("coap option nibble 15")
    return value, offset


def _ber(payload: bytes, offset: int) -> tuple[int, int, int]:
    """One BER tag and length: (tag, content offset, content length)."""
    tag, length = payload[offset], payload[offset + 1]
    offset += 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 3:
            raise Malformed("ber length")
        length = int.from_bytes(payload[offset : offset + size], "big")
        offset += size
    return tag, offset, length


def snmp_message(payload: bytes) -> dict[str, Any]:
    """SNMP: version, PDU type, and whether a community string (a cleartext secret) is sent."""
    tag, offset, _ = _ber(payload, 0)
    if tag != 0x30:
        raise Malformed("not snmp")
    tag, offset, length = _ber(payload, offset)
    if tag != 0x02 or length != 1:
        raise Malformed("snmp version")
    version = {0: "1", 1: "2c", 3: "3"}.get(payload[offset], str(payload[offset]))
    offset += length
    found: dict[str, Any] = {"version": version}
    if version in ("1", "2c"):
        tag, offset, length = _ber(payload, offset)
        found["community"] = tag == 0x04 and length > 0
        offset += length
        if offset < len(payload):
            found["pdus"] = [SNMP_PDUS.get(payload[offset], hex(payload[offset]))]
    return found
