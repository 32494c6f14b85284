"""The Bans view and banning an alert's source, driven through the real console (Pilot) against
a real engine on its default dry-run backend, which records bans without touching the firewall.
The addresses banned are from the documentation ranges, except the two the response policy
proposes for the recorded telnet capture (its device and client, recorded by dry-run only)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import console_for, in_utc, inject, request, shown_ids, table, wait_until
from test_console_roles import viewer_socket  # noqa: F401 (a fixture)
from test_console_rules import box_title, connected, notified, text
from test_console_traffic import TELNET, replay, rows
from textual.widgets import Input, Static
from textual.widgets._footer import FooterKey

from console.app import IotsecApp
from console.panes.traffic_table import TrafficTable
from console.screens.alert_detail import AlertDetailScreen
from console.screens.ban_form import BanScreen
from console.screens.bans import BansScreen
from console.screens.prompts import ConfirmScreen
from engine.control.protocol import ControlError
from tests.conftest import ROOT, EngineProcess, start_engine, wait_for

SIZE = (80, 24)
SHIPPED = ROOT / "rules" / "packet" / "iot.rules"
# What bans.list and a ban made say under the default backend.
DRY_RUN = NOT_APPLIED = "dry-run: bans are recorded, not applied ([respond] backend)"
# On the recorded telnet capture the shipped pack's password-prompt rule fires with the device
# that serves the prompt as its source and its client as the attacker; a rule of the test's own
# names the device the attacker (as a rule on a compromised camera's traffic would).
PASSWORD_PROMPT, DEVICE = 9100002, "192.168.0.1"
FROM_DEVICE, CLIENT = 1000001, "192.168.0.2"


def ban_rows(app: IotsecApp) -> dict[str, list[str]]:
    """The Bans view's rows by address, cell by cell, in screen order."""
    return {r[0]: r for r in rows(app.screen.query_one("#ban-table", TrafficTable))}


def listed(engine: EngineProcess) -> dict[str, Any]:
    return request(engine, "bans.list")


def toast(app: IotsecApp, part: str) -> Any:
    (found,) = [n for n in app._notifications if part in n.message]
    return found


async def cursor_to(pilot: Any, app: IotsecApp, address: str) -> None:
    """Move the Bans view's cursor to the row of ``address``."""
    table = app.screen.query_one("#ban-table", TrafficTable)
    await pilot.press(*["up"] * table.row_count, *["down"] * list(ban_rows(app)).index(address))
    assert table.key_under_cursor() is not None
    assert ban_rows(app)[address] == rows(table)[table.cursor_row]


async def open_bans(pilot: Any, app: IotsecApp, key: str = "B") -> None:
    await connected(pilot, app)
    await pilot.press(key)
    await wait_until(pilot, lambda: isinstance(app.screen, BansScreen), "the Bans view")
    await wait_until(pilot, lambda: app.screen.listing is not None, "the bans")


async def test_bans_view_opens_from_the_palette_and_the_alerts_pane(engine):
    made = request(engine, "bans.ban", {"address": "203.0.113.7", "for": "1h", "reason": "scan"})
    request(engine, "bans.ban", {"address": "198.51.100.0/24", "permanent": True})
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("ctrl+p", *"firewall blocks")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, BansScreen), "the Bans view")
        await wait_until(pilot, lambda: len(ban_rows(app)) == 2, "both bans")
        by = made["created_by"]
        # Soonest to end first; time left counted from the ban's end.
        assert list(ban_rows(app).values()) == [
            ["203.0.113.7", "59m", "0", "operator", by, "scan"],
            ["198.51.100.0/24", "permanent", "0", "operator", by, "banned by an operator"],
        ]
        assert text(app, "#title") == "Bans │ backend dry-run, NOT enforced"
        assert text(app, "#enforcement") == f"✕ {DRY_RUN}"
        assert box_title(app, "#bans-box") == "Bans 2 active"
        assert text(app, "#detail").startswith(f"ban #{made['id']} by {by} 20")
        assert text(app, "#detail").endswith("· dropped 0 packets, 0B\nreason scan")

        await pilot.press("slash", *"198.51", "enter")
        assert list(ban_rows(app)) == ["198.51.100.0/24"]
        assert box_title(app, "#bans-box") == "Bans 2 active │ 1 shown, filter: 198.51"
        await pilot.press("escape")
        assert len(ban_rows(app)) == 2
        await pilot.press("escape")
        assert not isinstance(app.screen, BansScreen)

        await pilot.press("3")
        assert app.query_one("#panes").active == "alerts"
        assert app.screen.focused is table(app)
        await open_bans(pilot, app)
        assert app.screen.focused is app.screen.query_one("#ban-table")
        await pilot.press("question_mark")
        assert app.screen.pane == "Bans"
        assert dict(app.screen.keys)["u"] == "Lift the ban under the cursor (asks first)"
        await pilot.press("escape", "1")
        assert not isinstance(app.screen, BansScreen), "a pane's key goes back to the panes"
        assert app.query_one("#panes").active == "traffic"


async def test_b_bans_an_alerts_attacker_and_u_lifts_it(engine):
    alert_id = inject(engine, title="telnet brute force", src="203.0.113.7")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("b")
        assert isinstance(app.screen, BanScreen)
        heading = str(app.screen.query_one(".heading", Static).render())
        assert heading == f"Ban 203.0.113.7, the attacker of alert #{alert_id}"
        reason = app.screen.query_one("#reason", Input).value
        assert reason == f"alert #{alert_id}: telnet brute force"
        await pilot.press("escape")
        assert app.screen is app.screen_stack[0]
        await pilot.pause(0.2)
        assert listed(engine)["bans"] == [], "Esc bans nothing"

        # The arrow keys choose the length (1 hour is the second), Enter bans.
        await pilot.press("b", "down", "enter")
        await wait_until(pilot, lambda: listed(engine)["bans"], "the ban")
        (ban,) = listed(engine)["bans"]
        assert (ban["address"], ban["reason"], ban["source"]) == (
            "203.0.113.7",
            reason,
            "operator",
        )
        assert 3590 < ban["left"] <= 3600
        await wait_until(pilot, lambda: notified(app, "Banned 203.0.113.7"), "the news")
        news = toast(app, "Banned 203.0.113.7")
        assert news.message == f"Banned 203.0.113.7 for 1h: recorded, NOT enforced: {NOT_APPLIED}"
        assert news.severity == "warning"

        await open_bans(pilot, app)
        assert ban_rows(app)["203.0.113.7"] == [
            "203.0.113.7",
            "59m",
            "0",
            "operator",
            ban["created_by"],
            reason,
        ]
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.heading == "Lift the ban of 203.0.113.7?"
        await pilot.press("y")
        await wait_until(pilot, lambda: listed(engine)["bans"] == [], "the ban to be lifted")
        await wait_until(pilot, lambda: ban_rows(app) == {}, "the row to go")
        assert notified(app, "Ban of 203.0.113.7 lifted")
        assert text(app, "#detail").startswith("No bans.")


async def test_the_alert_detail_bans_its_attacker_for_good(engine):
    alert_id = inject(engine, title="mqtt anonymous login", src="2001:db8::7")
    no_src = inject(engine, title="boot log: root shell")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [no_src, alert_id], "the alerts")
        assert app.screen.active_bindings["b"].enabled is False, "no attacker, nothing to ban"
        await pilot.press("down")
        assert app.screen.active_bindings["b"].enabled is True
        await pilot.press("enter")
        assert isinstance(app.screen, AlertDetailScreen)
        await wait_until(pilot, lambda: app.screen.alert is not None, "the alert's details")
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BanScreen), "the ban dialog")
        # The last length is permanent.
        await pilot.press("end", "enter")
        await wait_until(pilot, lambda: listed(engine)["bans"], "the ban")
        (ban,) = listed(engine)["bans"]
        assert (ban["address"], ban["expires"]) == ("2001:db8::7", None)
        await wait_until(pilot, lambda: notified(app, "Banned 2001:db8::7"), "the news")
        assert toast(app, "Banned").message.startswith("Banned 2001:db8::7 until lifted: recorded")


async def test_b_on_a_servers_answer_bans_the_client_after_asking_again_for_a_device(engine):
    # The shipped pack's prompts are served by the device: their source is the device, their
    # attacker the client. Both ends are in the inventory after the replay.
    replay(engine, TELNET)
    wait_for(lambda: {d["ip"] for d in request(engine, "devices.list")} >= {CLIENT, DEVICE},
             "the inventory")  # fmt: skip
    prompts = {a["id"]: a for a in request(engine, "alerts.list")}
    assert {(a["src"], a["attacker"]) for a in prompts.values()} == {(DEVICE, CLIENT)}
    app = console_for(engine.config)
    app.notifier.offer = lambda alerts: None
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: sorted(shown_ids(app)) == sorted(prompts), "the alerts")
        alert_id = shown_ids(app)[0]
        await pilot.press("b")
        assert isinstance(app.screen, BanScreen)
        heading = str(app.screen.query_one(".heading", Static).render())
        assert heading == f"Ban {CLIENT}, the attacker of alert #{alert_id}"
        await pilot.press("enter")
        # The engine refuses a device of the inventory; the console asks again, naming it.
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the second ask")
        assert app.screen.heading == f"Ban {CLIENT}, a device of the inventory?"
        body = text(app, "#body")
        assert f"{CLIENT} is device {CLIENT}" in body and "00:a0:cc:3b:bf:fa" in body
        assert listed(engine)["bans"] == []
        await pilot.press("n")
        await pilot.pause(0.3)
        assert listed(engine)["bans"] == [], "no: nothing banned"
        await pilot.press("b", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the second ask")
        await pilot.press("y")
        await wait_until(pilot, lambda: listed(engine)["bans"], "the ban")
        (ban,) = listed(engine)["bans"]
        assert ban["address"] == CLIENT and ban["reason"].startswith(f"alert #{alert_id}: ")
        await wait_until(pilot, lambda: notified(app, f"Banned {CLIENT}"), "the news")


async def test_a_refused_ban_shows_the_engines_reason(engine):
    alert_id = inject(engine, title="loopback scan", src="127.0.0.1")
    with pytest.raises(ControlError) as refusal:
        request(engine, "bans.ban", {"address": "127.0.0.1"})
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("b", "enter")
        await wait_until(pilot, lambda: notified(app, str(refusal.value)), "the refusal")
        news = toast(app, str(refusal.value))
        assert (news.title, news.severity) == ("Not banned", "error")
        assert "refused" in news.message and "127.0.0.1" in news.message
    assert listed(engine)["bans"] == []


async def test_a_viewer_sees_ban_and_unban_greyed_out(viewer_socket):  # noqa: F811
    engine, listen = viewer_socket
    alert_id = inject(engine, title="telnet brute force", src="203.0.113.7")
    request(engine, "bans.ban", {"address": "198.51.100.0/24", "for": "1h"})
    app = console_for(engine.config, socket=listen)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        assert app.link.state.role == "viewer"
        assert app.screen.active_bindings["b"].enabled is False
        await pilot.pause(0.1)
        footer = {k.action: k for k in app.query(FooterKey)}
        assert footer["ban"].has_class("-disabled")
        await pilot.press("b")
        assert app.screen is app.screen_stack[0], "no dialog opened"

        await open_bans(pilot, app)
        await wait_until(pilot, lambda: "198.51.100.0/24" in ban_rows(app), "the ban")
        assert app.screen.active_bindings["u"].enabled is False
        await pilot.pause(0.1)
        footer = {k.action: k for k in app.screen.query(FooterKey)}
        assert footer["unban"].has_class("-disabled")
        await pilot.press("u")
        assert isinstance(app.screen, BansScreen), "no question asked"
        names = [name for name, _, _ in app.palette_commands()]
        assert not any("Lift the ban" in n or "Ban the source" in n for n in names)
    assert [b["address"] for b in listed(engine)["bans"]] == ["198.51.100.0/24"]


@pytest.fixture
def policy_engine(tmp_path) -> Iterator[EngineProcess]:
    """An engine whose policy proposes to ban both ends of the recorded telnet capture: its
    client (the attacker of the shipped password-prompt rule) and the device (the attacker of a
    rule of the test's own). The replay puts both in the inventory: ban_devices lets the
    policy propose them."""
    device_rules = tmp_path / "device.rules"
    device_rules.write_text(
        f'alert tcp any 23 -> any any (msg:"TEST a device answering telnet"; flow:from_server;'
        f" target:dest_ip; classtype:policy-violation; sid:{FROM_DEVICE};)\n"
    )
    policy = (
        f'[detect]\nrule_files = ["{SHIPPED}", "{device_rules}"]\n'
        "[respond]\nban_devices = true\n"
        f"[[respond.policy]]\nsids = [{PASSWORD_PROMPT}, {FROM_DEVICE}]\nconfirm = true\n"
        'bantime = "2h"\n'
    )
    with in_utc():
        engine = start_engine(tmp_path / "engine", policy)
    try:
        yield engine
    finally:
        engine.stop()


def proposals(engine: EngineProcess, count: int = 2) -> list[dict[str, Any]]:
    """The policy's proposals once there are ``count`` (it decides after the alert is
    recorded)."""
    deadline = time.monotonic() + 10
    while len(proposed := listed(engine).get("proposed", [])) < count:
        assert time.monotonic() < deadline, f"the policy proposed {len(proposed)} bans"
        time.sleep(0.05)
    return proposed


async def test_proposed_bans_are_listed_first_and_y_makes_one_n_rejects_one(policy_engine):
    engine = policy_engine
    request(engine, "bans.ban", {"address": "203.0.113.7", "for": "1h"})
    replay(engine, TELNET)
    # The policy decides on both alerts at once: either proposal may be made first.
    device, client = sorted(proposals(engine), key=lambda p: p["address"])
    assert (device["address"], client["address"]) == (DEVICE, CLIENT)
    app = console_for(engine.config)
    app.notifier.offer = lambda alerts: None  # the replay's alert toasts are not under test
    async with app.run_test(size=SIZE) as pilot:
        await open_bans(pilot, app)
        await wait_until(pilot, lambda: len(ban_rows(app)) == 3, "the ban and the proposals")
        addresses = list(ban_rows(app))
        assert set(addresses[:2]) == {DEVICE, CLIENT} and addresses[2] == "203.0.113.7"
        await cursor_to(pilot, app, DEVICE)
        assert ban_rows(app)[DEVICE] == [
            DEVICE,
            "PROPOSED",
            "-",
            f"rule:{FROM_DEVICE}",
            "policy",
            device["reason"],
        ]
        assert box_title(app, "#bans-box") == "Bans 1 active │ 2 proposed: y bans, n rejects"
        detail = text(app, "#detail")
        assert detail.startswith(f"proposed #{device['id']} by policy 20")
        reason = f"\nreason {device['reason']}"
        assert detail.endswith(f"for alert #{device['alert']}: ban for 2h{reason}")
        assert app.screen.active_bindings["y"].enabled is True
        await cursor_to(pilot, app, "203.0.113.7")
        assert app.screen.active_bindings["y"].enabled is False, "not on a proposed ban"
        assert app.screen.active_bindings["u"].enabled is True

        await cursor_to(pilot, app, DEVICE)
        await pilot.press("y")
        await wait_until(pilot, lambda: len(listed(engine)["proposed"]) == 1, "the confirmation")
        made = next(b for b in listed(engine)["bans"] if b["address"] == DEVICE)
        assert 7190 < made["left"] <= 7200
        await wait_until(pilot, lambda: ban_rows(app)[DEVICE][1] == "1h59m", "the ban's row")
        assert notified(app, f"Banned {DEVICE} for 2h: recorded, NOT enforced: {NOT_APPLIED}")
        assert list(ban_rows(app)) == [CLIENT, "203.0.113.7", DEVICE], "proposals first"

        await cursor_to(pilot, app, CLIENT)
        await pilot.press("n")
        await wait_until(pilot, lambda: listed(engine)["proposed"] == [], "the rejection")
        await wait_until(pilot, lambda: CLIENT not in ban_rows(app), "the row to go")
        assert notified(app, f"Proposed ban of {CLIENT} rejected: nothing was banned")
        assert sorted(b["address"] for b in listed(engine)["bans"]) == [DEVICE, "203.0.113.7"]
        assert "2 active" in box_title(app, "#bans-box")
        assert "proposed" not in box_title(app, "#bans-box")
        assert app.screen.check_action("confirm", ()) is False, "nothing left to confirm"


def test_bans_at_80x24(policy_engine, snap_compare):
    engine = policy_engine
    request(engine, "bans.ban", {"address": "203.0.113.7", "for": "2h", "reason": "telnet brute"})
    request(engine, "bans.ban", {"address": "198.51.100.0/24", "permanent": True})
    request(engine, "bans.ban", {"address": "2001:db8::7", "for": "1h", "reason": "mqtt anon"})
    replay(engine, TELNET)
    proposals(engine)
    app = console_for(engine.config)
    app.notifier.offer = lambda alerts: None

    async def run_before(pilot) -> None:
        await open_bans(pilot, app)
        await wait_until(pilot, lambda: len(ban_rows(app)) == 5, "the bans and the proposals")
        screen = app.screen
        assert isinstance(screen, BansScreen)
        screen.on_unmount()  # no more polls: what is drawn stays as it is
        # Bans made at a fixed time by a fixed operator, seen 61 s later.
        made = 1713669000.0
        listing = dict(screen.listing or {})
        listing["bans"] = [
            {
                **b,
                "created": made,
                "created_by": "alice",
                "expires": None if b["expires"] is None else made + b["expires"] - b["created"],
            }
            for b in listing["bans"]
        ]
        # Either proposal may have been made first: show them in a fixed order.
        listing["proposed"] = [
            {**p, "id": 4 + i, "created": made}
            for i, p in enumerate(sorted(listing["proposed"], key=lambda p: p["address"]))
        ]
        screen.clock = lambda: made + 61
        screen.show(listing)
        await pilot.pause(0.1)

    with in_utc():
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_the_ban_dialog_names_the_escalated_bantime_of_a_repeat_offender(engine):
    request(engine, "bans.ban", {"address": "203.0.113.9", "for": "1h", "reason": "earlier"})
    request(engine, "bans.unban", {"address": "203.0.113.9"})
    repeat = inject(engine, title="telnet brute force", src="203.0.113.9")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [repeat], "the alert")
        await pilot.press("b")
        assert isinstance(app.screen, BanScreen)
        lengths = app.screen.query_one("#length")
        await wait_until(
            pilot, lambda: "bantime 1h" in str(lengths.get_option_at_index(0).prompt), "the bantime"
        )
        # [respond] bantime 1h, increment on, factor 2: one earlier ban makes it 2 hours.
        assert str(lengths.get_option_at_index(0).prompt) == (
            "for 2h (bantime 1h \N{MULTIPLICATION SIGN}2: banned once before)"
        )
        await pilot.press("enter")
        await wait_until(pilot, lambda: listed(engine)["bans"], "the ban")
    (ban,) = listed(engine)["bans"]
    assert 7190 < ban["left"] <= 7200, "the length the dialog named"
    preview = request(engine, "bans.preview", {"address": "198.51.100.1"})
    assert (preview["bantime"], preview["previous"]) == (3600, 0), "a first offender: the bantime"
