"""Saving a slice of recent traffic (one flow, or everything one host sent and received) as a
pcap file on the console's side: ask where, then fetch the engine's export chunk by chunk
(``traffic.export``, ``traffic.chunk``) and write it, never over an existing file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Input, Static

from console.screens.prompts import Dialog


class SavePcapScreen(Dialog[str | None]):
    """Ask for the file to write; Enter answers with the path as typed, Esc cancels."""

    def __init__(self, subject: Content, default: str) -> None:
        super().__init__()
        self.subject = subject
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("Save as pcap", classes="heading", markup=False)
            yield Static(self.subject)
            yield Input(self.default, id="path", compact=True)
            yield Static(
                "Recent packets still in the engine's ring buffer are saved; an existing file"
                " is never overwritten.\nEnter to save · Esc to cancel",
                classes="hint",
                markup=False,
            )

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if path := event.value.strip():
            self.dismiss(path)


class NothingToSave(Exception):
    """The engine holds no packets for this slice any more."""


@dataclass(frozen=True)
class Saved:
    path: Path
    packets: int
    size: int
    # "pcap", or "pcapng" when the packets came from links of different types.
    format: str


async def save_pcap(link: Any, args: dict[str, Any], path: str) -> Saved:
    """Export the slice ``args`` (``flow``, ``host``, ...) from the engine into a new file at
    ``path``. A partly written file is removed."""
    export = await link.request("traffic.export", args)
    if not int(export.get("packets") or 0):
        raise NothingToSave("none of these packets are still in the engine's ring buffer")
    target = Path(os.path.expanduser(path)).absolute()
    out: BinaryIO = await asyncio.to_thread(target.open, "xb")
    written = 0
    try:
        for index in range(int(export["chunks"])):
            chunk = await link.request(
                "traffic.chunk", {"export": export["export"], "index": index}
            )
            data = base64.b64decode(chunk["data"])
            await asyncio.to_thread(out.write, data)
            written += len(data)
        await asyncio.to_thread(out.close)
    except BaseException:
        await asyncio.to_thread(out.close)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(target.unlink)
        raise
    return Saved(target, int(export["packets"]), written, str(export.get("format") or "pcap"))
