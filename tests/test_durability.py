"""kill -9 of the engine in the middle of an alert burst loses nothing it confirmed as written."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading

from tests.conftest import EngineProcess, start_engine

BURST = 10_000


def test_kill_9_mid_burst_keeps_every_confirmed_alert(engine: EngineProcess) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(engine.socket))
    reader = sock.makefile("rb")

    def send_all() -> None:
        try:
            for i in range(BURST):
                src = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
                args = {"title": f"burst {i}", "src": src, "severity": "low"}
                request = {"id": i + 1, "cmd": "alerts.inject", "args": args}
                sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError:
            pass  # the engine died under us, as intended

    sender = threading.Thread(target=send_all)
    sender.start()
    confirmed: dict[int, int] = {}  # request id -> alert id
    killed = False
    for line in reader:
        message = json.loads(line)
        if message.get("ok"):
            confirmed[message["id"]] = message["result"]["id"]
        if len(confirmed) >= BURST // 3 and not killed:
            engine.proc.send_signal(signal.SIGKILL)
            killed = True
    sender.join(timeout=30)
    sock.close()
    assert killed, f"the burst ended ({len(confirmed)} confirmed) before the kill"
    assert engine.proc.wait(timeout=10) == -signal.SIGKILL
    assert BURST // 3 <= len(confirmed) < BURST

    conn = sqlite3.connect(f"file:{engine.db}?mode=ro", uri=True)
    stored = {r[0]: r[1] for r in conn.execute("SELECT id, title FROM alerts")}
    conn.close()
    missing = [a for a in confirmed.values() if a not in stored]
    assert not missing, f"{len(missing)} confirmed alerts lost, e.g. {missing[:5]}"
    for request_id, alert_id in confirmed.items():
        assert stored[alert_id] == f"burst {request_id - 1}"

    # and a restarted engine carries on from there
    again = start_engine(engine.config.parent)
    with again.client() as c:
        assert c.request("alerts.inject", {"title": "after restart"})["id"] > max(stored)
    again.stop()
