"""The Traffic pane, driven through the real console (Pilot) against a real engine: traffic
comes from the recorded captures in tests/data replayed through the engine's live pipeline
(``capture.replay``), or live from a veth pair between namespaces the test makes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import console_for, in_utc, request, wait_until
from test_console_roles import viewer_socket  # noqa: F401 (a fixture)
from textual.content import Content
from textual.widgets import Input, Sparkline, Static, Tree
from textual.widgets._footer import FooterKey

from console.app import IotsecApp
from console.panes.capture_summary import CaptureSummary
from console.panes.traffic import TrafficPane
from console.panes.traffic_table import FlowTable, PacketTable, TrafficTable
from console.screens.capture_form import CaptureScreen
from console.screens.packet_detail import PacketDetailScreen
from console.screens.save_pcap import SavePcapScreen
from console.untrusted import clean
from console.widgets.status_bar import StatusBar
from engine.capture.filter import FilterError, parse_filter
from engine.capture.pcapfile import read_frames
from tests.conftest import EngineProcess, require_root, require_tool, start_engine
from tests.test_capture_decode import pcap
from tests.test_capture_live import DATAGRAMS, FRAME, RECEIVER, SENDER, Pair, pair  # noqa: F401

SIZE = (80, 24)
MQTT = "sv_mqtt311_pub_userpass.pcap"
TELNET = "sv_telnet_ppa.pcap"
HTTP = "zeek_http_basic_auth.pcap"


def replay(engine: EngineProcess, *names: str) -> None:
    """Feed recorded captures through the engine's pipeline, as if they arrived live."""
    for name in names:
        request(engine, "capture.replay", {"path": str(pcap(name))})


def pane(app: IotsecApp) -> TrafficPane:
    return app.query_one(TrafficPane)


def rows(table: TrafficTable) -> list[list[str]]:
    """What the table shows, row by row in screen order, cell by cell."""
    return [[c.plain.strip() for c in table.get_row(key)] for key in table.shown_keys]


def flow_rows(app: IotsecApp) -> list[list[str]]:
    return rows(app.query_one(FlowTable))


def labels(table: TrafficTable) -> list[str]:
    return [str(column.label).strip() for column in table.ordered_columns]


def title(app: IotsecApp) -> str:
    return Content.from_markup(pane(app).border_title or "").plain


def summary(app: IotsecApp) -> str:
    return str(app.query_one(CaptureSummary).query_one("#capture-state", Static).render())


async def open_traffic(pilot: Any, app: IotsecApp, count: int) -> None:
    """Connect, show the Traffic pane and wait for ``count`` rows."""
    await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
    await pilot.press("1")
    await wait_until(pilot, lambda: len(flow_rows(app)) == count, f"{count} rows")


# -- what the pane shows ----------------------------------------------------------------------


async def test_replayed_flows_show_tags_credentials_and_capture_state(engine):
    replay(engine, MQTT, TELNET, HTTP)
    app = console_for(engine.config)
    async with app.run_test(size=(140, 30)) as pilot:
        await open_traffic(pilot, app, 3)
        assert app.query_one(FlowTable).has_focus
        shown = flow_rows(app)
        assert [r[0] for r in shown] == ["telnet", "http", "mqtt"], "biggest first"
        telnet, http, mqtt = shown
        assert telnet[1:5] == ["192.168.0.2:1550", "192.168.0.1:23", "92", "7.7k"]
        assert mqtt[1:5] == ["[::1]:38458", "[::1]:1883", "12", "1.1k"]
        assert mqtt[7].startswith("username=user password client_id=myvoiceismypassport")
        assert http[7].startswith("host=172.24.133.205:8000 username=test basic_auth")
        assert labels(app.query_one(FlowTable))[:6] == [
            "APP",
            "SRC",
            "DST",
            "PKTS",
            "BYTES▼",
            "B/s",
        ]
        assert title(app).startswith("Traffic flows 3 │ by bytes")
        assert summary(app).startswith("■ stopped")
        assert "│ 116 pkts" in summary(app)
        counts = str(app.query_one("#flow-counts", Static).render())
        assert counts == "flows: 3 active 0 ended"
        assert str(app.query_one("#drops", Static).render()) == "drops: kernel 0 queue 0"


async def test_sort_cycles_and_talkers_toggle(engine):
    replay(engine, MQTT, TELNET, HTTP)
    app = console_for(engine.config)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_traffic(pilot, app, 3)
        for sort in ("packets", "rate", "last"):
            await pilot.press("o")

            # Asked afresh each time: rates move at every one-second tick of the engine.
            def in_engine_order(sort: str = sort) -> bool:
                expected = request(engine, "traffic.flows", {"sort": sort})["rows"]
                ports = [str(r["dport"]) for r in expected]
                return [r[2].rsplit(":", 1)[1] for r in flow_rows(app)] == ports

            await wait_until(pilot, in_engine_order, f"rows in the engine's order by {sort}")
        assert "by last seen" in title(app)
        assert labels(app.query_one(FlowTable))[6] == "LAST▼"
        await pilot.press("o")
        assert "by bytes" in title(app)

        await pilot.press("t")
        await wait_until(pilot, lambda: len(flow_rows(app)) == 4, "four talkers")
        assert labels(app.query_one(FlowTable))[:4] == ["HOST", "FLOWS", "PKTS", "BYTES▼"]
        hosts = [r["host"] for r in request(engine, "traffic.flows", {"mode": "talkers"})["rows"]]
        assert [r[0] for r in flow_rows(app)] == hosts
        last = flow_rows(app)[-1]
        # (not the B/s column: the rate depends on where the engine's one-second tick fell)
        assert last[:4] + last[6:] == ["::1", "1", "12", "1.1k", "mqtt"]
        assert title(app).startswith("Traffic talkers 4")
        await pilot.press("down", "down", "down")
        packets = app.query_one(PacketTable)
        await wait_until(pilot, lambda: len(rows(packets)) == 12, "the packets of host ::1")
        box = Content.from_markup(app.query_one("#packets-box").border_title).plain
        assert box == "Packets 12 │ host ::1"
        await pilot.press("t")
        await wait_until(pilot, lambda: len(flow_rows(app)) == 3, "flows again")


async def test_display_filter_is_checked_as_typed_and_applied_on_enter(engine):
    replay(engine, MQTT, TELNET, HTTP)
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await open_traffic(pilot, app, 3)
        prompt = app.query_one("#traffic-filter", Input)
        error = app.query_one("#filter-error", Static)
        await pilot.press("slash", *"port")
        assert prompt.has_focus
        with pytest.raises(FilterError) as reason:
            parse_filter("port")
        await wait_until(pilot, lambda: prompt.has_class("-invalid"), "the prompt to turn red")
        assert str(error.render()) == str(reason.value)
        assert error.display
        await pilot.press("enter")
        assert prompt.has_focus, "an invalid filter is not applied"
        assert len(flow_rows(app)) == 3

        await pilot.press(*" 23 or mqtt")
        await wait_until(pilot, lambda: not prompt.has_class("-invalid"), "a valid filter")
        assert not error.display
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(flow_rows(app)) == 2, "telnet and mqtt only")
        assert sorted(r[0] for r in flow_rows(app)) == ["mqtt", "telnet"]
        assert "filter: port 23 or mqtt" in title(app)
        assert app.query_one(FlowTable).has_focus

        await pilot.press("escape")
        await wait_until(pilot, lambda: len(flow_rows(app)) == 3, "every flow again")
        assert "filter" not in title(app)


async def test_packets_of_the_flow_under_the_cursor_and_one_packet_decoded(engine):
    replay(engine, MQTT, HTTP)
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await open_traffic(pilot, app, 2)
        packets = app.query_one(PacketTable)
        await pilot.press("down")  # the mqtt flow
        await wait_until(pilot, lambda: len(rows(packets)) == 12, "the flow's 12 packets")
        box = app.query_one("#packets-box")
        assert Content.from_markup(box.border_title).plain.startswith(
            "Packets 12 │ mqtt [::1]:38458 → [::1]:1883 username=user password"
        )
        assert packets.cursor_row == 11, "the newest packet is under the cursor"
        assert rows(packets)[3][1:] == [
            "131",
            "[::1]:38458",
            "[::1]:1883",
            "mqtt",
            "38458 → 1883 [ACK,PSH] len=45 MQTT CONNECT client myvoiceismypassport",
        ]

        await pilot.press("enter")
        assert packets.has_focus
        await pilot.press("up", "up", "up", "up", "up", "up", "up", "up", "enter")
        assert isinstance(app.screen, PacketDetailScreen)
        packet_id = app.screen.packet_id
        expected = request(engine, "traffic.packet", {"id": packet_id})
        tree = app.screen.query_one(Tree)
        await wait_until(pilot, lambda: bool(tree.root.children), "the decoded layers")
        names = [str(node.label) for node in tree.root.children]
        assert names == [clean(layer["name"]) for layer in expected["layers"]]
        assert names[:3] == ["Ethernet", "IPv6", "TCP"]
        first = [str(leaf.label) for leaf in tree.root.children[0].children]
        assert first == [f"{k}: {v}" for k, v in expected["layers"][0]["fields"]]
        dump = str(app.screen.query_one("#hex", Static).render())
        assert dump.splitlines()[0] == expected["hex"].splitlines()[0]
        assert str(app.screen.query_one("#title", Static).render()).startswith(
            f"Packet #{packet_id} "
        )
        await pilot.press("x")
        assert not app.screen.query_one("#hex-box").display
        await pilot.press("escape")
        assert not isinstance(app.screen, PacketDetailScreen)
        assert packets.has_focus
        await pilot.press("escape")
        assert app.query_one(FlowTable).has_focus


async def test_a_packet_gone_from_the_ring_says_so(tmp_path):
    engine = start_engine(tmp_path, "[capture]\nring_bytes = 4000\n")
    try:
        replay(engine, MQTT)
        app = console_for(engine.config)
        async with app.run_test(size=SIZE) as pilot:
            await open_traffic(pilot, app, 1)
            packets = app.query_one(PacketTable)
            await wait_until(pilot, lambda: len(rows(packets)) == 12, "the flow's packets")
            await pilot.press("p")  # the list stays while newer traffic pushes it out
            replay(engine, TELNET)
            await pilot.press("enter", "enter")
            assert isinstance(app.screen, PacketDetailScreen)
            heading = app.screen.query_one("#title", Static)
            await wait_until(pilot, lambda: "ring" in str(heading.render()), "the reason")
            assert str(heading.render()) == (
                f"Packet #{app.screen.packet_id} has left the engine's ring buffer of recent"
                " packets; it can no longer be decoded."
            )
    finally:
        engine.stop()


async def test_save_a_flow_and_a_host_as_pcap(engine, tmp_path):
    replay(engine, MQTT, HTTP)
    original = [f.data for f in read_frames(pcap(MQTT))]
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await open_traffic(pilot, app, 2)
        await pilot.press("down", "w")
        assert isinstance(app.screen, SavePcapScreen)
        path = app.screen.query_one("#path", Input)
        assert path.value == "./iotsec-mqtt-__1-38458-__1-1883.pcap"
        target = tmp_path / "mqtt.pcap"
        await pilot.press("ctrl+u", *str(target), "enter")
        await wait_until(pilot, lambda: _notified(app, "Saved 12 packets"), "the save")
        assert _notified(app, f"Saved 12 packets (1.3kB, pcap) to {target}")
        assert [f.data for f in read_frames(target)] == original, "the very packets replayed"

        before = target.read_bytes()
        await pilot.press("w", "ctrl+u", *str(target), "enter")
        await wait_until(pilot, lambda: _notified(app, "already exists"), "the refusal")
        assert target.read_bytes() == before

        await pilot.press("t")
        await wait_until(pilot, lambda: [r[0] for r in flow_rows(app)][-1] == "::1", "talkers")
        await pilot.press("down", "down", "down", "w")
        assert app.screen.query_one("#path", Input).value == "./iotsec-host-__1.pcap"
        host = tmp_path / "host.pcap"
        await pilot.press("ctrl+u", *str(host), "enter")
        await wait_until(pilot, lambda: host.exists() and _notified(app, f"to {host}"), "saved")
        assert [f.data for f in read_frames(host)] == original


def _notified(app: IotsecApp, text: str) -> bool:
    return any(text in n.message for n in app._notifications)


# -- capture from the pane --------------------------------------------------------------------


async def test_the_engines_refusals_are_shown_in_the_capture_form(engine):
    require_root("packet sockets: without CAP_NET_RAW every start is refused the same way")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        await pilot.press("1", "c")
        assert isinstance(app.screen, CaptureScreen)
        form = app.screen
        error = form.query_one("#error", Static)
        await pilot.press("enter")
        assert str(error.render()) == "Name at least one interface to capture on."
        await pilot.press(*"nosuch0", "enter")
        await wait_until(pilot, lambda: "nosuch0" in str(error.render()), "the refusal")
        assert str(error.render()) == (
            "The engine refused this: no network interface named 'nosuch0'"
        )
        await pilot.press("ctrl+u", *"lo", "tab", *"port nonsense", "enter")
        await wait_until(pilot, lambda: "BPF" in str(error.render()), "the bad filter")
        assert str(error.render()).startswith("The BPF filter does not compile: ")
        assert app.screen is form, "the form stays open to correct the filter"
        await pilot.press("escape")
        assert not isinstance(app.screen, CaptureScreen)
    assert request(engine, "capture.status")["state"] == "stopped"


async def test_capture_without_cap_net_raw_says_why_in_the_pane(tmp_path):
    require_root("to drop the capability")
    require_tool("setpriv")
    drop = ("setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw")
    engine = start_engine(tmp_path, prefix=drop)
    try:
        app = console_for(engine.config)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
            await pilot.press("1")
            await wait_until(pilot, lambda: "unavailable" in summary(app), "the state")
            assert summary(app).startswith("✕ unavailable: ")
            assert "CAP_NET_RAW" in summary(app)
            await pilot.press("c", *"lo", "enter")
            error = app.screen.query_one("#error", Static)
            await wait_until(pilot, lambda: bool(str(error.render())), "the refusal")
            assert str(error.render()).startswith("Capture is not available: ")
            assert "CAP_NET_RAW" in str(error.render())
    finally:
        engine.stop()


async def test_live_capture_started_and_stopped_from_the_pane(pair: Pair, tmp_path):  # noqa: F811
    engine = start_engine(tmp_path, prefix=("ip", "netns", "exec", pair.b))
    try:
        app = console_for(engine.config)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
            await pilot.press("1", "c", *pair.veth_b, "tab", *"udp port 9999", "enter")
            await wait_until(pilot, lambda: summary(app).startswith("● running"), "running")
            assert f"on {pair.veth_b}  bpf udp port 9999" in summary(app)
            pair.send_udp()
            await wait_until(
                pilot,
                lambda: flow_rows(app) and flow_rows(app)[0][3] == str(DATAGRAMS),
                "every datagram counted",
            )
            app_tag, src, dst = flow_rows(app)[0][:3]
            assert (app_tag, src.split(":")[0], dst) == ("udp", SENDER, f"{RECEIVER}:9999")
            pps = app.query_one("#pps", Sparkline)
            await wait_until(pilot, lambda: max(pps.data or [0]) > 0, "the packet rate")

            await pilot.press("c")
            assert isinstance(app.screen, CaptureScreen)
            await pilot.click("#stop")
            await wait_until(pilot, lambda: summary(app).startswith("■ stopped"), "stopped")
        assert request(engine, "capture.status")["state"] == "stopped"
    finally:
        engine.stop()


async def test_a_viewer_sees_capture_and_save_greyed_out(viewer_socket):  # noqa: F811
    engine, listen = viewer_socket
    replay(engine, MQTT)
    app = console_for(engine.config, socket=listen)
    async with app.run_test(size=(100, 24)) as pilot:
        await open_traffic(pilot, app, 1)
        assert app.link.state.role == "viewer"
        bindings = app.screen.active_bindings
        for key in ("c", "w"):
            assert bindings[key].enabled is False, f"{key} should be disabled"
        await pilot.pause(0.1)
        footer = {k.action: k for k in app.query(FooterKey)}
        for action in ("capture", "save"):
            assert footer[action].has_class("-disabled"), f"{action} should be greyed out"
        await pilot.press("c", "w")
        assert app.screen is app.screen_stack[0], "no dialog opened"
        # Reading is still allowed.
        await pilot.press("down", "enter", "enter")
        assert isinstance(app.screen, PacketDetailScreen)


# -- how often the engine is asked ------------------------------------------------------------


async def test_polls_a_few_times_a_second_only_while_in_view(engine):
    replay(engine, MQTT)
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await open_traffic(pilot, app, 1)
        asked: list[float] = []
        ask = app.link.request

        async def counting(cmd: str, args: dict[str, Any] | None = None) -> Any:
            if cmd == "traffic.flows":
                asked.append(time.monotonic())
            return await ask(cmd, args)

        app.link.request = counting  # type: ignore[method-assign]
        await pilot.pause(2.0)
        assert 4 <= len(asked) <= 10, f"{len(asked)} polls in 2 s"
        await pilot.press("3")
        await pilot.pause(0.3)
        asked.clear()
        await pilot.pause(1.0)
        assert asked == [], "no polls while another pane is shown"
        await pilot.press("1")
        await wait_until(pilot, lambda: bool(asked), "polling again")


# -- what it looks like -----------------------------------------------------------------------


@pytest.fixture
def replayed_engine(tmp_path) -> Iterator[EngineProcess]:
    """An engine holding the recorded captures' traffic, with times shown in UTC."""
    with in_utc():
        engine = start_engine(tmp_path)
        try:
            replay(engine, MQTT, TELNET, HTTP, "sv_dns_a_aaaa_mx.pcap", "sv_modbus.pcap")
            yield engine
        finally:
            engine.stop()


def test_traffic_at_80x24(replayed_engine, snap_compare):
    app = console_for(replayed_engine.config)
    flows = request(replayed_engine, "traffic.flows")["total"]
    # The shipped rules raise alerts on these captures; the status bar shows them once it has
    # polled after the replay, so wait for the engine's own count.
    open_alerts = request(replayed_engine, "status")["alerts"]["open"]

    async def run_before(pilot) -> None:
        await open_traffic(pilot, app, flows)
        bar = app.query_one(StatusBar)
        await wait_until(
            pilot,
            lambda: bar.status is not None and bar.status["alerts"]["open"] == open_alerts,
            "open alerts in the status bar",
        )
        # A flow's rate is over the last seconds of wall-clock time: once the replay is a few
        # seconds old, every rate is 0 on every run.
        await wait_until(pilot, lambda: all(r[5] == "0" for r in flow_rows(app)), "rates at rest")
        await wait_until(pilot, lambda: len(rows(app.query_one(PacketTable))) > 4, "packets")
        traffic = pane(app)
        traffic.in_view(False)  # no more polls: what is drawn stays as it is
        await pilot.pause(0.3)
        # The sparklines place the replay's burst at the second it happened in; draw them with
        # the engine's real status but no rate history, so every run draws the same.
        assert traffic.status is not None
        quiet = {**traffic.status, "rates": {"interval": 1.0, "pps": [], "bps": []}}
        app.query_one(CaptureSummary).show(quiet)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_packet_detail_at_80x24(replayed_engine, snap_compare):
    app = console_for(replayed_engine.config)

    async def run_before(pilot) -> None:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        await pilot.press("1", "slash", *"mqtt", "enter")
        await wait_until(pilot, lambda: len(flow_rows(app)) == 1, "the mqtt flow")
        packets = app.query_one(PacketTable)
        await wait_until(pilot, lambda: len(rows(packets)) == 12, "its packets")
        # The fourth packet is the CONNECT with the username and password.
        await pilot.press("enter", *["up"] * 8, "enter")
        tree = app.screen.query_one(Tree)
        await wait_until(pilot, lambda: bool(tree.root.children), "the decoded layers")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
