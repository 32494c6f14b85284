"""One alert in full: its fields, its evidence as pretty JSON and its history of who did what.

Opened from the alerts table with Enter. Ack, resolve, silence and banning the source work here
too, and so does showing a rule alert's flow in the Traffic pane: the screen closes with the
action's name and the alerts pane carries it out on this alert.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from console import severity
from console.engine_access import engine
from console.panes.alert_rows import STATE_LABEL, alert_flow, alert_sides
from console.untrusted import clean

# The engine command behind each action this screen hands back to the alerts pane.
ACTION_COMMANDS = {
    "ack": "alerts.ack",
    "resolve": "alerts.resolve",
    "silence": "alerts.silence",
    "ban": "bans.ban",
}


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def evidence_text(evidence: Any) -> str:
    """Evidence as indented JSON, each line stripped of control characters."""
    pretty = json.dumps(evidence, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return "\n".join(clean(line) for line in pretty.splitlines())


def fields_content(alert: dict[str, Any]) -> Content:
    sev = str(alert.get("severity", ""))
    rows: list[tuple[str, Content]] = [
        (
            "severity",
            Content.styled(f"{severity.LABEL.get(sev, sev)} ({sev})", severity.STYLE.get(sev, "")),
        ),
        ("state", Content(STATE_LABEL.get(str(alert.get("state")), clean(alert.get("state"))))),
        ("count", Content(str(alert.get("count")))),
        ("first seen", Content(when(alert.get("first_seen")))),
        ("last seen", Content(when(alert.get("last_seen")))),
    ]
    rows.append(("source", Content(clean(alert.get("source")) or "-")))
    if alert.get("source") == "rules":
        rows.append(("sid", Content.styled(clean(alert.get("rule")) or "-", "bold")))
    else:
        rows.append(("rule", Content(clean(alert.get("rule")) or "-")))
    attacker, target = alert_sides(alert)
    rows.append(("attacker", Content(attacker or "-")))
    rows.append(("target", Content(target or "-")))
    for key in ("src", "dst", "device"):
        rows.append((key, Content(clean(alert.get(key)) or "-")))
    if alert.get("ack_by"):
        acked = f"{clean(alert['ack_by'])} at {when(alert.get('ack_at'))}"
        rows.append(("acked by", Content(acked)))
        rows.append(("ack note", Content(clean(alert.get("ack_note")) or "-")))
    if alert.get("silence_id"):
        rows.append(("silence", Content(f"#{alert['silence_id']}")))
    return Content("\n").join(
        Content.assemble((f"{key:<11}", "bold"), value) for key, value in rows
    )


def history_content(history: list[dict[str, Any]]) -> Content:
    if not history:
        return Content("no actions yet")
    return Content("\n").join(
        Content(
            f"{when(h.get('ts'))}  {clean(h.get('operator'))}  {clean(h.get('action'))}"
            + (f"  {clean(h.get('note'))}" if h.get("note") else "")
        )
        for h in history
    )


class AlertDetailScreen(Screen[str | None]):
    DEFAULT_CSS = """
    AlertDetailScreen #title {
        text-style: bold;
        padding: 0 1;
        background: $panel;
    }
    AlertDetailScreen VerticalScroll {
        padding: 0 1;
    }
    AlertDetailScreen .section {
        text-style: bold underline;
        margin-top: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="detail.close"),
        Binding("a", "act('ack')", "Ack", id="detail.ack"),
        Binding("r", "act('resolve')", "Resolve", id="detail.resolve"),
        Binding("s", "act('silence')", "Silence", id="detail.silence"),
        Binding(
            "f",
            "act('flow')",
            "Flow",
            id="detail.flow",
            tooltip="Show the flow this rule alert was raised on in the Traffic pane",
        ),
        Binding(
            "b",
            "act('ban')",
            "Ban",
            id="detail.ban",
            tooltip="Ban this alert's source address in the firewall (asks for how long)",
        ),
    ]

    def __init__(self, alert_id: int) -> None:
        super().__init__()
        self.alert_id = alert_id
        self.alert: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static(f"Alert #{self.alert_id}", id="title", markup=False)
        with VerticalScroll():
            yield Static("loading…", id="fields", markup=False)
            yield Static("Evidence", classes="section", markup=False)
            yield Static("", id="evidence", markup=False)
            yield Static("History", classes="section", markup=False)
            yield Static("", id="history", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.app.run_worker(
            self._load(), name=f"Loading alert {self.alert_id}", exit_on_error=False
        )

    async def _load(self) -> None:
        alert = await engine(self).link.request("alerts.get", {"id": self.alert_id})
        title = clean(alert.get("title"), limit=200)
        self.query_one("#title", Static).update(Content(f"Alert #{self.alert_id}: {title}"))
        self.query_one("#fields", Static).update(fields_content(alert))
        self.query_one("#evidence", Static).update(Content(evidence_text(alert.get("evidence"))))
        self.query_one("#history", Static).update(history_content(alert.get("history") or []))
        self.alert = alert
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "act" and parameters[0] == "flow":
            return True if self.alert is not None and alert_flow(self.alert) else None
        if action == "act" and parameters[0] == "ban" and not alert_sides(self.alert or {})[0]:
            return None
        if action == "act":
            return True if engine(self).may(ACTION_COMMANDS[str(parameters[0])]) else None
        return True

    def action_close(self) -> None:
        self.dismiss(None)

    def action_act(self, action: str) -> None:
        self.dismiss(action)
