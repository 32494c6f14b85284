"""One packet decoded in full: its layers as a tree of fields and a hex dump, as the engine's
scapy dissection gives them (``traffic.packet``). Opened from the Traffic pane's packet list.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static, Tree

from console.engine_access import engine
from console.untrusted import clean
from engine.control.protocol import ControlError

FIELD_LIMIT = 300


def packet_heading(packet: dict[str, Any]) -> str:
    ts = float(packet.get("ts") or 0)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1e6):06d}"
    return (
        f"Packet #{packet.get('id')}  {when}  {packet.get('length')} bytes"
        f"  on {clean(packet.get('iface'), limit=40) or '-'}"
    )


def hex_text(dump: Any) -> str:
    """The engine's hex dump, each line stripped of control characters."""
    return "\n".join(clean(line) for line in str(dump or "").splitlines())


class PacketDetailScreen(Screen[None]):
    DEFAULT_CSS = """
    PacketDetailScreen #title {
        text-style: bold;
        padding: 0 1;
        background: $panel;
    }
    PacketDetailScreen #layers {
        height: 3fr;
        min-height: 5;
        padding: 0 1;
    }
    PacketDetailScreen #hex-box {
        height: 2fr;
        border-top: solid $primary;
        border-title-align: left;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Back", id="packet.close", tooltip="Back to the traffic"),
        Binding(
            "x",
            "toggle_hex",
            "Hex",
            id="packet.hex",
            tooltip="Show or hide the hex dump (more room for the layers)",
        ),
    ]

    def __init__(self, packet_id: int) -> None:
        super().__init__()
        self.packet_id = packet_id

    def compose(self) -> ComposeResult:
        yield Static(f"Packet #{self.packet_id}", id="title", markup=False)
        tree: Tree[None] = Tree(Text(f"Packet #{self.packet_id}"), id="layers")
        tree.show_root = False
        yield tree
        box = VerticalScroll(id="hex-box")
        box.border_title = "Hex"
        with box:
            yield Static("loading…", id="hex", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(Tree).focus()
        self.app.run_worker(
            self._load(), name=f"Decoding packet {self.packet_id}", exit_on_error=False
        )

    async def _load(self) -> None:
        try:
            packet = await engine(self).link.request("traffic.packet", {"id": self.packet_id})
        except ControlError as exc:
            if exc.code == "not_found":
                message = (
                    f"Packet #{self.packet_id} has left the engine's ring buffer of recent"
                    " packets; it can no longer be decoded."
                )
            else:
                message = f"Packet #{self.packet_id} could not be decoded: {exc}"
            self.query_one("#title", Static).update(Content.styled(message, "bold red"))
            self.query_one("#hex", Static).update("")
            return
        self.query_one("#title", Static).update(Content(packet_heading(packet)))
        self._show_layers(packet.get("layers") or [])
        self.query_one("#hex", Static).update(Content(hex_text(packet.get("hex"))))

    def _show_layers(self, layers: list[dict[str, Any]]) -> None:
        tree: Tree[None] = self.query_one(Tree)
        tree.clear()
        for layer in layers:
            node = tree.root.add(Text(clean(layer.get("name"), limit=80), "bold"), expand=True)
            for field in layer.get("fields") or []:
                name, value = [*field, "", ""][:2]
                label = Text(f"{clean(name, limit=60)}: ", "bold")
                label.append(clean(value, limit=FIELD_LIMIT), "")
                node.add_leaf(label)
        tree.root.expand()
        tree.move_cursor(tree.root.children[0] if tree.root.children else None)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_toggle_hex(self) -> None:
        box = self.query_one("#hex-box")
        box.display = not box.display
