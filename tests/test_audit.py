"""The audit chain: every state change recorded, and any edit or deletion reported."""

from __future__ import annotations

import json
import os
import pwd
import sqlite3

from engine import audit
from tests.conftest import EngineProcess


def act(engine: EngineProcess) -> None:
    with engine.client() as c:
        alert_id = c.request("alerts.inject", {"title": "telnet root login", "severity": "high"})[
            "id"
        ]
        c.request("alerts.ack", {"id": alert_id, "note": "checking"})
        c.request("alerts.silence", {"rule": "inject", "duration": "2h"})
        c.request("alerts.resolve", {"id": alert_id})


def tamper(engine: EngineProcess, sql: str) -> None:
    conn = sqlite3.connect(engine.db)
    conn.execute(sql)
    conn.commit()
    conn.close()


def verify_cli(engine: EngineProcess):
    result = engine.cli("audit", "verify", "--json", check=False)
    return result.returncode, json.loads(result.stdout)


def test_state_changes_are_recorded_with_operator(engine: EngineProcess) -> None:
    act(engine)
    rows = json.loads(engine.cli("audit", "--json").stdout)
    assert [r["command"] for r in reversed(rows)] == [
        "alerts.inject", "alerts.ack", "alerts.silence", "alerts.resolve",
    ]  # fmt: skip
    assert {(r["operator"], r["uid"]) for r in rows} == {
        (pwd.getpwuid(os.getuid()).pw_name, os.getuid())
    }
    assert json.loads(rows[2]["args"])["note"] == "checking"
    code, report = verify_cli(engine)
    assert code == 0 and report == {"checked": 4, "ok": True, "problems": []}


def test_edited_row_is_reported(engine: EngineProcess) -> None:
    act(engine)
    tamper(engine, "UPDATE audit SET operator = 'mallory' WHERE id = 2")
    code, report = verify_cli(engine)
    assert code == 1
    assert report["problems"] == [
        {"id": 2, "reason": "row edited: its HMAC does not match its contents"}
    ]
    text = engine.cli("audit", "verify", check=False).stdout
    assert "row 2: row edited" in text


def test_deleted_rows_are_reported(engine: EngineProcess) -> None:
    act(engine)
    tamper(engine, "DELETE FROM audit WHERE id = 2")
    _, report = verify_cli(engine)
    reasons = [p["reason"] for p in report["problems"]]
    assert "row 2 deleted" in reasons
    assert any("chain broken" in r for r in reasons)


def test_cut_off_tail_is_reported_offline(engine: EngineProcess) -> None:
    act(engine)
    engine.stop()
    tamper(engine, "DELETE FROM audit WHERE id >= 3")
    code, report = verify_cli(engine)  # no engine: verified from the file and the key
    assert code == 1
    assert report["problems"] == [{"id": 3, "reason": "rows 3-4 deleted from the end"}]


def test_key_file_is_private(engine: EngineProcess) -> None:
    key = audit.key_path(engine.db)
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_bytes()) == 32


def test_cut_off_tail_with_meta_rewritten_is_reported(engine: EngineProcess) -> None:
    act(engine)
    engine.stop()  # the engine saves the chain head outside the database on the way out
    conn = sqlite3.connect(engine.db)
    row3 = conn.execute("SELECT id, hmac FROM audit WHERE id = 3").fetchone()
    conn.execute("DELETE FROM audit WHERE id = 4")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'audit_head'", (f"{row3[0]}:{row3[1]}",))
    conn.commit()
    conn.close()
    code, report = verify_cli(engine)
    assert code == 1
    assert report["problems"] == [{"id": 4, "reason": "row 4 deleted from the end"}]


def test_emptied_audit_table_is_reported(engine: EngineProcess) -> None:
    act(engine)
    engine.stop()
    tamper(engine, "DELETE FROM audit")
    tamper(engine, "DELETE FROM meta WHERE key = 'audit_head'")
    code, report = verify_cli(engine)
    assert code == 1 and report["problems"] == [
        {"id": 1, "reason": "rows 1-4 deleted from the end"}
    ]


def test_a_forged_head_file_is_reported(engine: EngineProcess) -> None:
    act(engine)
    engine.stop()
    head = audit.head_path(engine.db)
    _, mac, seal = head.read_text().strip().split(":")
    head.write_text(f"2:{mac}:{seal}\n")
    _, report = verify_cli(engine)
    assert any("audit head file was altered" in p["reason"] for p in report["problems"])
