"""One packet in detail, for the operator who opens it: scapy's full dissection (layer tree and
hex dump), and a one-line summary like tshark's Info column. Scapy is imported on first use,
never on the capture path.
"""

from __future__ import annotations

from typing import Any

from engine.capture import protocols
from engine.capture.decode import ETH_ARP, ICMP, ICMPV6, TCP, UDP, Packet

TCP_FLAGS = ((0x02, "SYN"), (0x10, "ACK"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"),
             (0x20, "URG"))  # fmt: skip
MAX_FIELD = 200


def dissect(linktype: int, data: bytes) -> dict[str, Any]:
    """The layers scapy finds in ``data`` (name and fields, values as scapy shows them) and a
    hex dump. Scapy resolves no names here: addresses stay numbers."""
    from scapy.config import conf
    from scapy.packet import NoPayload, Raw
    from scapy.utils import hexdump

    _load_dissectors()
    cls = conf.l2types.get(linktype) or Raw
    try:
        packet = cls(data)
    except Exception as exc:  # scapy raises anything on hostile bytes; show them raw instead
        packet = Raw(data)
        note = f"scapy could not dissect this frame: {exc}"
    else:
        note = ""
    layers = []
    layer = packet
    while layer is not None and not isinstance(layer, NoPayload):
        fields = []
        for field in layer.fields_desc:
            try:
                shown = field.i2repr(layer, layer.getfieldval(field.name))
            except Exception:  # a field scapy cannot render: show its raw value
                shown = repr(layer.getfieldval(field.name))
            fields.append([field.name, str(shown)[:MAX_FIELD]])
        layers.append({"name": layer.name, "fields": fields})
        layer = layer.payload
    return {"layers": layers, "hex": hexdump(data, dump=True), "note": note}


_loaded: list[bool] = []
# Scapy's contributed dissectors for IoT protocols, bound to their ports when loaded.
CONTRIB = ("mqtt", "coap", "modbus")


def _load_dissectors() -> None:
    if _loaded:
        return
    import scapy.layers.all  # noqa: F401 - registers the link types and standard layers
    from scapy.main import load_contrib

    for name in CONTRIB:
        load_contrib(name)
    _loaded.append(True)


def summary(packet: Packet) -> str:
    """A one-line description: ports and TCP flags, then what the payload says if known."""
    proto = packet.proto
    if proto == ETH_ARP:
        kind = {1: "who has", 2: "is at"}.get(packet.flags, f"op {packet.flags}")
        return f"ARP {kind} {packet.dst}" if packet.flags == 1 else f"ARP {packet.src} {kind}"
    if proto in (ICMP, ICMPV6):
        return f"{protocols.transport_tag(proto).upper()} type {packet.sport} code {packet.flags}"
    if proto not in (TCP, UDP):
        return f"{protocols.transport_tag(proto).upper()} (IP protocol {proto})"
    parts = [f"{packet.sport} → {packet.dport}"]
    if proto == TCP:
        flags = ",".join(name for bit, name in TCP_FLAGS if packet.flags & bit)
        parts.append(f"[{flags}]")
    parts.append(f"len={len(packet.payload)}")
    if packet.payload:
        tag, found = protocols.inspect(proto, packet.sport, packet.dport, packet.payload)
        said = describe(tag, found)
        if said:
            parts.append(said)
    return " ".join(parts)


def describe(tag: str, found: dict[str, Any]) -> str:
    """What one payload said, in a few words."""
    if not tag:
        return ""
    name = tag.upper()
    first = {k: (v[0] if isinstance(v, list) and v else v) for k, v in found.items()}
    if tag == "mqtt":
        extra = f" client {first['client_id']}" if "client_id" in first else ""
        return f"MQTT {first.get('types', '')}{extra}"
    if tag == "http":
        if "method" in first:
            return f"HTTP {first['method']} {first.get('uri', '')}"
        return f"HTTP {first.get('status', '')}"
    if tag in ("dns", "mdns"):
        verb = "response" if first.get("response") else "query"
        return f"{name} {verb} {first.get('queries', '')}".rstrip()
    if tag == "tls":
        sni = f" SNI {first['sni']}" if "sni" in first else ""
        return f"TLS {first.get('handshake', 'record')}{sni}"
    if tag == "modbus" and "functions" in first:
        code = first["functions"]
        return f"Modbus {protocols.MODBUS_FUNCTIONS.get(code, f'function {code}')}"
    if tag in ("ssdp", "coap", "dhcp", "snmp"):
        key = {"ssdp": "method", "coap": "method", "dhcp": "type", "snmp": "pdus"}[tag]
        return f"{name} {first.get(key, first.get('code', ''))}".rstrip()
    return name
