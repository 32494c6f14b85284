"""Toasts and the terminal bell for alerts the engine flags ``notify``.

The engine decides what deserves a notification (new, open, at least ``[alerts]
notify_severity``); silenced alerts never notify. The first alert is announced at once; during
a storm the rest are gathered and announced every few seconds, as one toast with counts by
severity and one bell, so toasts do not pile up over the table.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from textual.app import App
from textual.worker import Worker, WorkerState

from console import severity
from console.throttle import Throttle
from console.untrusted import clean

INTERVAL = 3.0


def show_worker_failure(app: App[Any], event: Worker.StateChanged) -> None:
    """Every background job runs as an app worker: a failed one is shown, never silent."""
    if event.state is WorkerState.ERROR:
        app.notify(
            f"{event.worker.name} failed: {event.worker.error}",
            severity="error",
            markup=False,
            timeout=10,
        )


class AlertNotifier:
    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self._waiting: list[dict[str, Any]] = []
        self._throttle = Throttle(app, INTERVAL, self._announce)

    def offer(self, alerts: list[dict[str, Any]]) -> None:
        """Alerts from an event; the ones to announce are queued."""
        self._waiting += [a for a in alerts if a.get("notify") and a.get("state") != "silenced"]
        if self._waiting:
            self._throttle.request()

    def _announce(self) -> None:
        alerts, self._waiting = self._waiting, []
        if not alerts:
            return
        worst = max(alerts, key=lambda a: severity.RANK.get(a.get("severity", ""), 0))
        level = severity.toast_level(worst.get("severity", ""))
        if len(alerts) == 1:
            alert = alerts[0]
            title = f"{severity.LABEL.get(alert.get('severity', ''), '')} alert #{alert['id']}"
            src, dst = clean(alert.get("src")) or "-", clean(alert.get("dst")) or "-"
            message = f"{clean(alert.get('title'), limit=120)}\n{src} → {dst}"
        else:
            counts = Counter(a.get("severity", "") for a in alerts)
            title = f"{len(alerts)} new alerts"
            message = (
                ", ".join(
                    f"{counts[s]} {severity.LABEL[s]}" for s in severity.SEVERITIES if counts[s]
                )
                + f"\nworst: {clean(worst.get('title'), limit=100)}"
            )
        self.app.notify(message, title=title, severity=level, markup=False)
        self.app.bell()
