"""The engine's capture service through the control API, fed by replaying the real captures:
the flows and talkers the Traffic pane lists, recent packets, one packet in detail, pcap export,
and the errors an operator can cause."""

from __future__ import annotations

import base64
import sqlite3
import subprocess
from pathlib import Path

import pytest

from engine.capture.analyze import analyze
from engine.config import CaptureConfig
from engine.control.protocol import ControlError
from tests.conftest import EngineProcess, require_tool
from tests.test_capture_decode import pcap


def replay(engine: EngineProcess, *names: str) -> dict:
    with engine.client() as client:
        for name in names:
            status = client.request("capture.replay", {"path": str(pcap(name))})
    return status


def test_replayed_flows_sorted_filtered_and_as_talkers(engine: EngineProcess) -> None:
    names = ["sv_modbus.pcap", "zeek_mqtt.pcap", "sv_mqtt311_pub_userpass.pcap"]
    status = replay(engine, *names)
    assert status["packets"] == 99 + 19 + 12
    assert status["protocols"] == {"modbus": 99, "mqtt": 31}
    # The same files through `analyze` with the engine's default idle timeout.
    offline = analyze([pcap(n) for n in names], idle_timeout=CaptureConfig().idle_timeout)
    with engine.client() as client:
        flows = client.request("traffic.flows", {"sort": "packets", "limit": 3})
        assert flows["total"] == offline["flows"] and len(flows["rows"]) == 3
        counts = [row["packets"] for row in flows["rows"]]
        assert counts == sorted(counts, reverse=True)
        mqtt = client.request("traffic.flows", {"filter": "mqtt and host ::1"})["rows"]
        assert [(r["app"], r["details"]["username"], r["details"]["password"]) for r in mqtt] == [
            ("mqtt", "user", True)
        ]
        talkers = client.request("traffic.flows", {"mode": "talkers", "sort": "bytes"})["rows"]
        assert talkers[0]["host"] == "10.0.0.57" and talkers[0]["apps"] == ["modbus"]
        with pytest.raises(ControlError, match="unknown word 'mqt'") as bad:
            client.request("traffic.flows", {"filter": "mqt"})
        assert bad.value.code == "bad_filter"


def test_recent_packets_detail_and_export(engine: EngineProcess, tmp_path: Path) -> None:
    replay(engine, "sv_mqtt311_pub_userpass.pcap", "zeek_http_basic_auth.pcap")
    with engine.client() as client:
        (flow,) = client.request("traffic.flows", {"filter": "http"})["rows"]
        packets = client.request("traffic.packets", {"flow": flow["key"]})
        assert len(packets) == 12 and {p["app"] for p in packets} == {"http"}
        (get,) = [p for p in packets if "HTTP GET" in p["info"]]
        detail = client.request("traffic.packet", {"id": get["id"]})
        names = [layer["name"] for layer in detail["layers"]]
        assert names == ["IP", "TCP", "Raw"]  # a raw-IP capture; HTTP on 8000 stays Raw to scapy
        assert "Authorization: Basic" in dict(detail["layers"][2]["fields"])["load"]
        assert detail["hex"].startswith("0000  45 00")
        by_filter = client.request("traffic.packets", {"filter": "port 1883", "limit": 5})
        assert len(by_filter) == 5 and all(1883 in (p["sport"], p["dport"]) for p in by_filter)
        export = client.request("traffic.export", {"flow": flow["key"]})
        assert export["packets"] == 12 and export["format"] == "pcap"
        data = b"".join(
            base64.b64decode(client.request("traffic.chunk", {"export": export["export"],
                                                              "index": i})["data"])
            for i in range(export["chunks"])
        )  # fmt: skip
        host = client.request("traffic.export", {"host": "::1"})
        assert host["packets"] == 12
        with pytest.raises(ControlError) as gone:
            client.request("traffic.packet", {"id": 10_000})
        assert gone.value.code == "not_found"
    out = tmp_path / "slice.pcap"
    out.write_bytes(data)
    tshark = require_tool("tshark")
    listed = subprocess.run([tshark, "-n", "-r", str(out), "-Y", "http.authorization"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert len(listed.splitlines()) == 1


def test_ended_flows_are_stored_once(engine: EngineProcess) -> None:
    replay(engine, "sv_modbus.pcap")
    with engine.client() as client:
        client.request("capture.stop")  # ends the open flows
    engine.stop()
    with sqlite3.connect(engine.db) as db:
        rows = db.execute("SELECT app, count(*), sum(packets) FROM flows GROUP BY app").fetchall()
    offline = analyze([pcap("sv_modbus.pcap")], idle_timeout=CaptureConfig().idle_timeout)
    assert rows == [("modbus", offline["flows"], 99)]


def test_operator_mistakes_are_named(engine: EngineProcess) -> None:
    with engine.client() as client:
        for args, code, words in [
            ({"interfaces": ["nope0"]}, "bad_request", "no network interface named 'nope0'"),
            ({"interfaces": []}, "bad_request", "list of interface names"),
            ({"interfaces": ["lo"], "bpf": "port bogus"}, "bad_filter", "does not compile"),
        ]:
            with pytest.raises(ControlError, match=words) as refused:
                client.request("capture.start", args)
            assert refused.value.code == code
        with pytest.raises(ControlError, match="must be absolute"):
            client.request("capture.replay", {"path": "relative.pcap"})
        with pytest.raises(ControlError, match="cannot open"):
            client.request("capture.replay", {"path": "/nonexistent.pcap"})
        assert client.request("capture.status")["state"] == "stopped"
