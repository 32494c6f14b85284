"""The ban dialog: ban the attacker of an alert, for how long and why, and once more,
naming it, when the address is a device of the inventory; and what sending a ban (or
confirming a proposed one) tells the operator: for how long, and whether the firewall enforces
it or the engine only recorded it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from textual import on
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Button, Input, OptionList, Static

from console.engine_access import engine
from console.screens.ban_rows import times
from console.screens.prompts import ConfirmScreen, Dialog
from console.severity import ToastLevel
from console.untrusted import clean
from engine.control.protocol import ControlError
from engine.durations import format_duration
from engine.respond.manager import DEVICE_REFUSAL

# The lengths offered, as ``bans.ban`` takes them: "" is the configured bantime (which the
# engine makes longer for repeat offenders).
LENGTHS = (
    ("", "for the configured bantime (longer for repeat offenders)"),
    ("1h", "for 1 hour"),
    ("24h", "for 24 hours"),
    ("7d", "for 7 days"),
    ("permanent", "permanently (until lifted)"),
)


@dataclass(frozen=True)
class BanRequest:
    """What to ban, for how long and why, as ``bans.ban`` takes it."""

    address: str
    length: str
    reason: str
    local_ok: bool = False  # the operator confirmed banning a device of the inventory

    def args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"address": self.address, "reason": self.reason}
        if self.local_ok:
            args["local_ok"] = True
        if self.length == "permanent":
            args["permanent"] = True
        elif self.length:
            args["for"] = self.length
        return args


def outcome(ban: dict[str, Any]) -> tuple[str, ToastLevel]:
    """What a ban that was made tells the operator, and how loudly: a ban the firewall does not
    enforce is a warning."""
    left = ban.get("left")
    length = "until lifted" if left is None else f"for {format_duration(float(left))}"
    previous = int(ban.get("previous") or 0)
    before = f", banned {times(previous)} before" if previous else ""
    said = f"Banned {clean(ban.get('address'))} {length}{before}"
    if ban.get("enforced"):
        return f"{said} (enforced by {clean(ban.get('backend'))})", "information"
    return f"{said}: recorded, NOT enforced: {clean(ban.get('problem'))}", "warning"


async def send_ban(app: App[Any], cmd: str, args: dict[str, Any],
                   request: BanRequest | None = None) -> None:  # fmt: skip
    """Make a ban (``bans.ban``, or ``bans.confirm`` for a proposed one) and say how it went;
    a refusal (the allow-list, your own SSH client, ...) is shown in the engine's words. When
    ``request`` was refused for being a device of the inventory, the operator is asked again,
    with the device named, and a yes sends it with local_ok."""
    try:
        ban = await engine(app).link.request(cmd, args)
    except ControlError as exc:
        if (request is not None and not request.local_ok and exc.code == "refused"
                and DEVICE_REFUSAL in str(exc)):  # fmt: skip
            _confirm_device(app, request, str(exc))
            return
        app.notify(str(exc), title="Not banned", severity="error", markup=False, timeout=15)
        return
    message, level = outcome(ban)
    app.notify(message, severity=level, markup=False, timeout=10)


def ask_ban(app: App[Any], address: str, whose: str, reason: str) -> None:
    """The ban dialog for ``address``; the ban is sent (and its outcome told) if the operator
    confirms it."""

    def send(request: BanRequest | None) -> None:
        if request is not None:
            _send(app, request)

    screen = BanScreen(address, whose, reason)
    app.push_screen(screen, send)
    if engine(app).may("bans.preview"):

        async def preview() -> None:
            try:
                answer = await engine(app).link.request("bans.preview", {"address": address})
            except ControlError:
                return  # the label stays general; banning says what is wrong with the address
            if screen.is_attached:
                screen.show_bantime(answer)

        app.run_worker(preview(), name=f"Bantime of {clean(address)}",
                           group="ban-preview", exit_on_error=False)  # fmt: skip


def effective_bantime(preview: dict[str, Any]) -> str:
    """The configured bantime for one address as ``bans.preview`` reckons it, and why: the
    bantime multiplied for its earlier bans, or capped at the maxtime."""
    length, base = float(preview["bantime"]), float(preview["base"])
    previous = int(preview.get("previous") or 0)
    said = format_duration(length)
    if not previous:
        return f"{said} (the bantime: never banned before)"
    before = f"banned {times(previous)} before"
    if length == base:
        return f"{said} (the bantime, {before})"
    if length >= float(preview["maxtime"]):
        return f"{said} (the maxtime: bantime {format_duration(base)}, {before})"
    times_base = f"\N{MULTIPLICATION SIGN}{length / base:g}"
    return f"{said} (bantime {format_duration(base)} {times_base}: {before})"


def _send(app: App[Any], request: BanRequest) -> None:
    app.run_worker(send_ban(app, "bans.ban", request.args(), request),
                       name=f"Ban {clean(request.address)}", group="actions",
                       exit_on_error=False)  # fmt: skip


def _confirm_device(app: App[Any], request: BanRequest, refusal: str) -> None:
    """The second, explicit question before banning a device of the inventory."""

    def answered(yes: bool | None) -> None:
        if yes:
            _send(app, replace(request, local_ok=True))

    body = Content.assemble(
        clean(refusal, limit=400),
        "\n\nBan it anyway? A device of your own network cut off may be one that something"
        " depends on.",
    )
    heading = f"Ban {clean(request.address)}, a device of the inventory?"
    app.push_screen(ConfirmScreen(heading, body, confirm="Ban the device"), answered)


class BanScreen(Dialog[BanRequest | None]):
    """Ask for how long to ban ``address`` (``whose`` says what it is: the attacker of an alert,
    a device) and why, starting from ``reason``; dismissed with the request."""

    DEFAULT_CSS = """
    BanScreen OptionList {
        width: 100%;
    }
    BanScreen .label {
        margin-top: 1;
    }
    BanScreen Horizontal {
        margin-top: 1;
    }
    """

    def __init__(self, address: str, whose: str, reason: str) -> None:
        super().__init__()
        self.address = address
        self.whose = whose
        self.reason = reason

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(
                Content.assemble("Ban ", (clean(self.address), "bold"), f", {clean(self.whose)}"),
                classes="heading",
            )
            yield Static("Reason", markup=False)
            yield Input(clean(self.reason, limit=300), id="reason", max_length=500, compact=True)
            yield Static("Ban", classes="label", markup=False)
            yield OptionList(*(label for _, label in LENGTHS), id="length", compact=True)
            yield Static(
                "↑↓ choose · Enter bans · Tab to move · Esc cancels", classes="hint", markup=False
            )
            with Horizontal():
                yield Button("Ban (Enter)", id="ban", variant="error")
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        lengths = self.query_one(OptionList)
        lengths.highlighted = 0
        lengths.focus()

    @on(Input.Submitted)
    @on(OptionList.OptionSelected)
    def _submitted(self, event: Input.Submitted | OptionList.OptionSelected) -> None:
        event.stop()
        self._ban()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ban":
            self._ban()
        else:
            self.dismiss(None)

    def show_bantime(self, preview: dict[str, Any]) -> None:
        """Name how long the configured bantime makes this ban (escalated for a repeat
        offender) in the first choice."""
        self.query_one(OptionList).replace_option_prompt_at_index(
            0, Content(f"for {effective_bantime(preview)}")
        )

    def _ban(self) -> None:
        length = LENGTHS[self.query_one(OptionList).highlighted or 0][0]
        reason = self.query_one("#reason", Input).value.strip()
        self.dismiss(BanRequest(self.address, length, reason))
