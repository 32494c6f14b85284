"""What the Serial pane writes beside the terminal view: the status line (what does not fit is
left out, the least useful first), the findings column and the hint shown without a session.
Text from the device or the engine is escaped here."""

from __future__ import annotations

from typing import Any

from textual.content import Content

from console import severity
from console.panes.traffic_rows import human
from console.serial.stream import Session
from console.untrusted import clean


def status_pieces(
    session: Session, note: str, *, mode: str, wrap: bool, stamps: str, prefix_name: str
) -> list[tuple[int, Content]]:
    """The status line's pieces in the order shown, each with its rank: when the line is too
    wide, the highest ranks are left out first. ``mode``, ``wrap`` and ``stamps`` are the
    view's."""
    info = session.info
    state = info["state"]
    style = {"connected": "green", "reconnecting": "bold red"}.get(state, "yellow")
    pieces = []
    if note:
        pieces.append((0, Content.styled(note, "bold")))
    name = Content.styled(clean(info["name"], limit=24), "bold")
    pieces.append((0, Content.assemble(name, " ", Content.styled(state, style))))
    if state != "connected" and info.get("reason"):
        pieces.append((1, Content.styled(clean(info["reason"], limit=80), "red")))
    pieces.append((2, Content(info["describe"])))
    pieces.append((3, Content(f"RX {human(session.buffer.end)}B TX {human(info['tx'])}B")))
    lines = [
        Content.styled(line.upper(), "bold" if value else "dim strike")
        for line, value in info["lines"].items()
        if value is not None
    ]
    if lines:
        pieces.append((6, Content(" ").join(lines)))
    settings = info["settings"]
    flags = [f"{settings['map_out']}/{settings['map_in']}"]
    if settings.get("echo"):
        flags.append("echo")
    if mode == "hex":
        flags.append("hex")
    elif not wrap:
        flags.append("cut")
    if stamps != "off":
        flags.append(f"ts:{stamps}")
    pieces.append((5, Content(" ".join(flags))))
    pieces.append((4, Content.styled(f"{prefix_name} ? commands", "dim")))
    return pieces


def fit_status(pieces: list[tuple[int, Content]], width: int) -> Content:
    """The pieces joined, leaving out the highest ranks until they fit in ``width``; a piece
    still too long for what is left (a long reason) is cut at a word, with an ellipsis."""
    kept = list(pieces)

    def length() -> int:
        return sum(p.cell_length for _, p in kept) + 2 * (len(kept) - 1)

    while length() > width and (worst := max(rank for rank, _ in kept)) > 0:
        at = max(n for n, (rank, _) in enumerate(kept) if rank == worst)
        if worst == 1 and len(kept) > 1:
            piece = kept[at][1]
            room = width - (length() - piece.cell_length)
            if room >= 12:
                kept[at] = (0, _shorten(piece, room))
                continue
        del kept[at]
    return Content("  ").join(p for _, p in kept)


def _shorten(piece: Content, room: int) -> Content:
    """``piece`` cut to ``room`` cells at the last space that fits, with an ellipsis."""
    text = piece.plain
    cut = text.rfind(" ", 0, room)
    return piece[: cut if cut > 0 else room - 1] + "…"


def findings_content(report: dict[str, Any]) -> Content:
    """The findings column: what the boot log told of the device, then its findings, worst
    first."""
    findings = sorted(
        report.get("findings", []), key=lambda f: -severity.RANK.get(f["severity"], 0)
    )
    parts: list[Content | str] = [Content.styled("Boot log\n", "bold")]
    for label, value in _facts(report):
        parts.append(
            Content.assemble(Content.styled(f"{label} ", "dim"), clean(value, limit=60), "\n")
        )
    if findings:
        parts.append(Content.styled("\nFindings\n", "bold"))
    for f in findings:
        parts.append(
            Content.assemble(
                Content.styled(severity.LABEL[f["severity"]], severity.STYLE[f["severity"]]),
                " ",
                clean(f["title"], limit=120),
                "\n",
            )
        )
    if not findings and not _facts(report):
        parts.append(Content.styled("Nothing yet: findings appear as the device boots.", "dim"))
    return Content.assemble(*parts)


def hint_content(ports: list[dict[str, Any]], prefix_name: str, problem: str) -> Content:
    """What to do without a session: how to open a port, the ports found, and the engine's
    ``problem`` with the last attempt."""
    # Our own lines are joined with real newlines; only the port names and the engine's
    # problem came from elsewhere, so only they are escaped.
    found = ", ".join(clean(p["by_id"] or p["device"]) for p in ports) or "none listed"
    lines = [
        f"No serial session. {prefix_name} o opens a port by path or URL"
        " (ptys are not listed: type their path).",
        f"Ports found: {found}",
    ]
    if problem:
        lines.insert(0, clean(problem, limit=300))
    return Content("\n".join(lines))


def login_result(result: dict[str, Any]) -> str:
    """What ``serial.login`` found, in a sentence."""
    if result.get("works"):
        works = result["works"]
        return f"Default login works: {works['user']} / {works['password'] or '(empty)'}"
    return f"No default login worked: {result.get('reason', '')} ({result.get('tried', 0)} tried)"


def _facts(report: dict[str, Any]) -> list[tuple[str, str]]:
    facts = []
    loader = report.get("bootloader") or {}
    if loader.get("name"):
        facts.append(("Loader", f"{loader['name']} {loader.get('version') or ''}".strip()))
    if (kernel := report.get("kernel") or {}).get("version"):
        facts.append(("Linux", kernel["version"]))
    if (busybox := report.get("busybox") or {}).get("version"):
        facts.append(("BusyBox", busybox["version"]))
    if report.get("mtd"):
        facts.append(("MTD", ", ".join(p["name"] for p in report["mtd"])))
    if (identity := report.get("identity") or {}).get("mac"):
        facts.append(("MAC", identity["mac"]))
    return facts
