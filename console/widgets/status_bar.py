"""The one-line status bar at the top: is the engine there (and is it ours), is capture running,
how many alerts are open by severity, active bans, and how many events were dropped.

On a narrow terminal the counts that are zero go first, so what needs attention stays on the
line.
"""

from __future__ import annotations

from typing import Any

from textual.content import Content
from textual.widget import Widget

from console import severity
from console.engine_link import LinkState
from console.untrusted import clean

SEPARATOR = Content.styled(" │ ", "dim")


def _connection(link: LinkState) -> Content:
    private = f"private engine pid {link.private_pid}" if link.private_pid else link.label
    if link.phase == "connected":
        return Content.assemble(("●", "green"), f" {private}")
    if link.phase == "connecting":
        return Content(f"◌ connecting to {private}…")
    if link.phase == "starting":
        return Content("◌ starting private engine…")
    if link.phase == "disconnected":
        return Content.styled(f"✕ no {private}, retrying", "bold red")
    if link.phase == "refused":
        return Content.styled(f"✕ refused: {clean(link.message, limit=200)}", "bold red")
    return Content.styled(f"✕ {clean(link.message, limit=200)}", "bold red")


def _open_alerts(open_counts: dict[str, int]) -> Content:
    parts: list[Content | str] = ["open:"]
    for name in severity.SEVERITIES:
        if open_counts.get(name):
            parts += [
                " ",
                Content.styled(severity.LABEL[name], severity.STYLE[name]),
                f" {open_counts[name]}",
            ]
    if len(parts) == 1:
        parts.append(" 0")
    return Content.assemble(*parts)


class StatusBar(Widget):
    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.link = LinkState("connecting")
        self.status: dict[str, Any] | None = None
        self.missed = 0

    def show_link(self, link: LinkState) -> None:
        self.link = link
        self.refresh()

    def show_status(self, status: dict[str, Any], missed: int) -> None:
        self.status, self.missed = status, missed
        self.refresh()

    def render(self) -> Content:
        items = self._items()
        width = self.content_region.width
        line = SEPARATOR.join(content for content, _ in items)
        # Drop what is quiet (zero counts) before cutting what is not.
        while line.cell_length > width and any(quiet for _, quiet in items):
            index = max(i for i, (_, quiet) in enumerate(items) if quiet)
            del items[index]
            line = SEPARATOR.join(content for content, _ in items)
        return line.truncate(width, ellipsis=True)

    def _items(self) -> list[tuple[Content, bool]]:
        items = [(_connection(self.link), False)]
        if self.link.phase == "connected" and self.link.role == "viewer":
            items.append((Content.styled("read-only (viewer)", "bold"), False))
        status = self.status
        if self.link.phase != "connected" or status is None:
            return items
        capture = clean(status.get("parts", {}).get("capture", "unknown"))
        items.append((Content(f"capture: {capture}"), False))
        open_counts = status.get("alerts", {}).get("open", {})
        items.append((_open_alerts(open_counts), not any(open_counts.values())))
        ban_status = status.get("bans", {})
        bans = int(ban_status.get("active", 0))
        proposed = int(ban_status.get("proposed", 0))
        text = f"bans {bans}" + (f" +{proposed} proposed" if proposed else "")
        if ban_status.get("enforced", True) or not (bans or proposed):
            items.append((Content.styled(text, "bold" if proposed else ""), not (bans or proposed)))
        else:
            # Recorded but not in the firewall: the on-call engineer must not think it holds.
            backend = clean(ban_status.get("backend", ""), limit=20)
            items.append((Content.styled(f"{text} NOT enforced ({backend})", "bold yellow"), False))
        # The engine's count covers every subscriber; ``missed`` is what this console lost and
        # is shown apart because it means the table may lack alerts until the next resync.
        dropped = sum(int(v) for v in status.get("dropped", {}).values())
        text = f"dropped {dropped}" + (f", missed {self.missed} here" if self.missed else "")
        quiet = not (dropped or self.missed)
        items.append((Content.styled(text, "" if quiet else "bold red"), quiet))
        return items
