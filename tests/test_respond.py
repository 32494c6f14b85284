"""Bans in the real kernel firewall: a client namespace talks to a server namespace (both made
by the test, and removed), the engine runs in the server's and bans the client over TCP and
UDP, IPv4 and IPv6, one address and a network; bans end on time, survive a flushed ruleset
and a restart; allow-listed addresses, your own SSH client and malformed addresses are refused
with nothing written to the firewall. With nftables, and with iptables + ipset."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.respond.allowlist import AllowList, ssh_clients
from engine.respond.targets import TargetError, bantime, parse_target
from tests.conftest import EngineProcess, require_root, require_tool, start_engine, wait_for
from tests.test_capture_decode import pcap

CLIENT4, SERVER4 = "10.253.99.1", "10.253.99.2"
CLIENT6, SERVER6 = "fd00:253:99::1", "fd00:253:99::2"
PORT = 8081

# A TCP and UDP echo service on both families, for the client to reach (or not).
SERVE = f"""
import socket, threading
def tcp(family, host):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, {PORT})); s.listen(64)
    while True:
        c, _ = s.accept(); c.sendall(b"hello"); c.close()
def udp(family, host):
    s = socket.socket(family, socket.SOCK_DGRAM); s.bind((host, {PORT}))
    while True:
        data, peer = s.recvfrom(100); s.sendto(data, peer)
for target in (tcp, udp):
    for family, host in ((socket.AF_INET, "{SERVER4}"), (socket.AF_INET6, "{SERVER6}")):
        threading.Thread(target=target, args=(family, host), daemon=True).start()
threading.Event().wait()
"""

# Whether the client reaches the service: prints "ok" or "blocked".
PROBE = """
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if proto == "tcp":
        with socket.create_connection((host, port), timeout=0.7) as s:
            ok = s.recv(5) == b"hello"
    else:
        s = socket.socket(family, socket.SOCK_DGRAM); s.settimeout(0.7)
        s.sendto(b"ping", (host, port)); ok = s.recvfrom(10)[0] == b"ping"
except OSError:
    ok = False
print("ok" if ok else "blocked")
"""


@dataclass
class Hosts:
    client: str
    server: str
    tmp: Path
    service: subprocess.Popen[bytes] | None = None

    def run(self, netns: str, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", netns, *command], capture_output=True,
                              text=True, timeout=60)  # fmt: skip

    def reaches(self, proto: str, host: str) -> bool:
        done = self.run(self.client, sys.executable, "-c", PROBE, proto, host, str(PORT))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip() == "ok"

    def engine(self, backend: str, extra: str = "") -> EngineProcess:
        config = f'[respond]\nbackend = "{backend}"\ncheck_interval = "1s"\n{extra}'
        return start_engine(self.tmp, config, prefix=("ip", "netns", "exec", self.server))

    def nft_elements(self) -> list[str]:
        done = self.run(self.server, "nft", "-j", "list", "table", "inet", "iotsec")
        if done.returncode != 0:
            return []
        found = []
        for item in json.loads(done.stdout)["nftables"]:
            for entry in item.get("set", {}).get("elem", []):
                value = entry["elem"]["val"] if isinstance(entry, dict) else entry
                if isinstance(value, dict):
                    value = f"{value['prefix']['addr']}/{value['prefix']['len']}"
                found.append(value)
        return found


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    require_root("network namespaces and the kernel firewall")
    for tool in ("ip", "nft", "iptables", "ip6tables", "ipset", "setpriv"):
        require_tool(tool)
    tag = f"{os.getpid() % 100000}"
    h = Hosts(f"iotbanC{tag}", f"iotbanS{tag}", tmp_path)
    veth_c, veth_s = f"ibC{tag}", f"ibS{tag}"
    steps = [
        ["ip", "netns", "add", h.client], ["ip", "netns", "add", h.server],
        ["ip", "link", "add", veth_c, "netns", h.client, "type", "veth", "peer", "name", veth_s,
         "netns", h.server],
        ["ip", "-n", h.client, "addr", "add", f"{CLIENT4}/24", "dev", veth_c],
        ["ip", "-n", h.server, "addr", "add", f"{SERVER4}/24", "dev", veth_s],
        ["ip", "-n", h.client, "addr", "add", f"{CLIENT6}/64", "dev", veth_c, "nodad"],
        ["ip", "-n", h.server, "addr", "add", f"{SERVER6}/64", "dev", veth_s, "nodad"],
        ["ip", "-n", h.client, "link", "set", veth_c, "up"],
        ["ip", "-n", h.server, "link", "set", veth_s, "up"],
        ["ip", "-n", h.client, "link", "set", "lo", "up"],
        ["ip", "-n", h.server, "link", "set", "lo", "up"],
    ]  # fmt: skip
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=30)
        h.service = subprocess.Popen(["ip", "netns", "exec", h.server, sys.executable, "-c",
                                      SERVE], stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while not (h.reaches("tcp", SERVER4) and h.reaches("tcp", SERVER6)):
            assert time.monotonic() < deadline, "the test service did not come up"
            time.sleep(0.1)
        yield h
    finally:
        if h.service is not None:
            h.service.kill()
            h.service.wait(timeout=10)
        for netns in (h.client, h.server):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)


def ban(engine: EngineProcess, address: str, *extra: str) -> dict:
    return json.loads(engine.cli("ban", address, *extra, "--json").stdout)


# -- bans in the firewall --------------------------------------------------------------------

BACKENDS = ["nftables", "iptables"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_ban_blocks_tcp_and_udp_over_both_families_for_an_address_or_a_network(
    hosts: Hosts, backend: str
) -> None:
    engine = hosts.engine(backend)
    try:
        cases = [(CLIENT4, SERVER4), (CLIENT6, SERVER6), ("10.253.99.0/31", SERVER4),
                 ("fd00:253:99::/127", SERVER6)]  # fmt: skip
        for target, server in cases:
            assert hosts.reaches("tcp", server) and hosts.reaches("udp", server)
            made = ban(engine, target, "--for", "1h", "--reason", "test")
            assert made["enforced"] and made["backend"] == backend
            assert not hosts.reaches("tcp", server), f"{target} still reaches {server} (tcp)"
            assert not hosts.reaches("udp", server), f"{target} still reaches {server} (udp)"
            listed = json.loads(engine.cli("bans", "--json").stdout)
            (entry,) = listed["bans"]
            assert entry["address"] == target and 3590 < entry["left"] <= 3600
            assert entry["packets"] >= 1 or backend == "iptables", "the set's drop counter"
            engine.cli("unban", target)
            assert hosts.reaches("tcp", server) and hosts.reaches("udp", server)
        text = engine.cli("bans").stdout
        assert text.startswith(f"0 active bans, enforced by {backend}")
    finally:
        engine.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_ban_is_lifted_when_its_time_runs_out(hosts: Hosts, backend: str) -> None:
    engine = hosts.engine(backend)
    try:
        made = ban(engine, CLIENT4, "--for", "4s")
        assert not hosts.reaches("tcp", SERVER4)
        wait_for(lambda: hosts.reaches("tcp", SERVER4), "the ban to end")
        wait_for(lambda: not engine.client().request("bans.list")["bans"], "the engine to mark it")

        def stored() -> tuple[str] | None:
            # The store follows the engine's memory within a write batch.
            with sqlite3.connect(engine.db) as conn:
                return conn.execute("SELECT state FROM bans WHERE id = ?", (made["id"],)).fetchone()

        wait_for(lambda: stored() == ("expired",), "the store to say expired", 5)
        assert stored() == ("expired",)
    finally:
        engine.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_flushed_firewall_is_noticed_and_the_bans_applied_again(
    hosts: Hosts, backend: str
) -> None:
    engine = hosts.engine(backend)
    try:
        ban(engine, CLIENT6, "--for", "1h")
        assert not hosts.reaches("udp", SERVER6)
        if backend == "nftables":
            done = hosts.run(hosts.server, "nft", "flush", "ruleset")
        else:
            done = hosts.run(hosts.server, "iptables-nft", "-F", "INPUT")
            hosts.run(hosts.server, "ip6tables", "-F", "INPUT")
        assert done.returncode == 0, done.stderr
        wait_for(lambda: not hosts.reaches("udp", SERVER6), "the ban to be applied again")
        status = engine.client().request("status")["bans"]
        assert status["reapplied"] >= 1 and status["active"] == 1
    finally:
        engine.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_restarted_engine_restores_active_bans_and_drops_expired_ones(
    hosts: Hosts, backend: str
) -> None:
    engine = hosts.engine(backend)
    try:
        lasting = ban(engine, CLIENT4, "--for", "1h")
        short = ban(engine, CLIENT6, "--for", "2s")
    finally:
        engine.stop()
    # As after a reboot: the firewall starts empty.
    if backend == "nftables":
        hosts.run(hosts.server, "nft", "flush", "ruleset")
    else:
        for tool in ("iptables", "ip6tables"):
            hosts.run(hosts.server, tool, "-F")
            hosts.run(hosts.server, tool, "-X")
        hosts.run(hosts.server, "ipset", "destroy")
    assert hosts.reaches("tcp", SERVER4)
    time.sleep(2.5)
    engine = hosts.engine(backend)
    try:
        assert not hosts.reaches("tcp", SERVER4), "the lasting ban is back"
        assert hosts.reaches("tcp", SERVER6), "the short one ran out while the engine was down"
        listed = engine.client().request("bans.list")["bans"]
        assert [b["id"] for b in listed] == [lasting["id"]]
        with sqlite3.connect(engine.db) as conn:
            state = conn.execute("SELECT state FROM bans WHERE id = ?", (short["id"],)).fetchone()
        assert state == ("expired",)
    finally:
        engine.stop()


def test_bans_of_allowed_own_and_malformed_addresses_are_refused_and_nothing_is_written(
    hosts: Hosts,
) -> None:
    engine = hosts.engine("nftables", 'ignoreip = ["10.253.99.128/25"]\n')
    try:
        refusals = {
            "127.0.0.1": "127.0.0.1 is in 127.0.0.0/8: loopback, never banned",
            "::1": "::1 is ::1: loopback",
            SERVER4: f"{SERVER4} is {SERVER4}: this box",
            "10.253.99.0/30": f"10.253.99.0/30 contains {SERVER4}: this box",
            "10.253.99.200": "10.253.99.200 is in 10.253.99.128/25: ignoreip",
            "10.253.99.300": "'10.253.99.300' is not an IPv4 or IPv6 address or network",
            "10.253.99.1/24": "has host bits set: the network is 10.253.99.0/24",
            "": "give the ADDRESS",
        }
        for address, message in refusals.items():
            done = engine.cli("ban", address, check=False)
            assert done.returncode != 0, address
            assert message in done.stderr, (address, done.stderr)
        # Your own SSH session: the CLI says where it comes from.
        done = engine.cli("ban", CLIENT4, check=False, env={"SSH_CLIENT": f"{CLIENT4} 50022 22"})
        assert done.returncode != 0
        assert f"would lock you out: your SSH session comes from {CLIENT4}" in done.stderr
        # A colleague's, as the console says it in hello, counts only once the engine verified
        # it (tests/security/test_identity.py): a bare claim is ignored, and said so.
        with engine.client() as colleague:
            hello = colleague.request("hello", {"client": "console",
                                                "ssh_client": f"{CLIENT6} 1 22"})  # fmt: skip
        assert hello["ssh_client"] is None and hello["ssh_client_note"].startswith("ignored")
        assert hosts.nft_elements() == []
        assert hosts.reaches("tcp", SERVER4) and hosts.reaches("tcp", SERVER6)
        audit = engine.client().request("audit.list", {"limit": 50})
        refused = [e for e in audit if e["command"] == "bans.ban"]
        assert len(refused) >= 7 and all(e["result"].startswith("failed") for e in refused)
    finally:
        engine.stop()


def test_several_addresses_are_one_decision(hosts: Hosts) -> None:
    engine = hosts.engine("nftables")
    try:
        done = engine.cli("ban", CLIENT4, SERVER6, "203.0.113.9", check=False)
        assert f"refused: {SERVER6} is {SERVER6}: this box" in done.stderr
        assert hosts.nft_elements() == [] and hosts.reaches("tcp", SERVER4)
        made = json.loads(engine.cli("ban", CLIENT4, CLIENT6, "--for", "1h", "--json").stdout)
        assert [b["address"] for b in made["bans"]] == [CLIENT4, CLIENT6]
        assert sorted(hosts.nft_elements()) == [CLIENT4, CLIENT6]
        assert not hosts.reaches("tcp", SERVER4) and not hosts.reaches("udp", SERVER6)
    finally:
        engine.stop()


def test_repeat_offenders_are_banned_longer_up_to_maxtime(hosts: Hosts) -> None:
    engine = hosts.engine("nftables", 'bantime = "60s"\nfactor = 2.0\nmaxtime = "200s"\n')
    try:
        lengths = []
        for _ in range(4):
            made = ban(engine, CLIENT4)
            lengths.append((made["previous"], round(made["expires"] - made["created"])))
            engine.cli("unban", CLIENT4)
        assert lengths == [(0, 60), (1, 120), (2, 200), (3, 200)]
        made = ban(engine, CLIENT4, "--for", "permanent")
        assert made["expires"] is None and not hosts.reaches("tcp", SERVER4)
        assert "permanent" in engine.cli("bans").stdout
    finally:
        engine.stop()


def test_a_network_ban_replaces_the_bans_inside_it_and_a_ban_inside_one_is_refused(
    hosts: Hosts,
) -> None:
    engine = hosts.engine("nftables")
    try:
        inner = ban(engine, CLIENT4, "--for", "1h")
        outer = ban(engine, "10.253.99.0/31", "--for", "2h")
        assert outer["replaced"] == [inner["id"]]
        assert hosts.nft_elements() == ["10.253.99.0/31"]
        done = engine.cli("ban", CLIENT4, check=False)
        assert f"{CLIENT4} is already banned: it is in 10.253.99.0/31 (ban #{outer['id']}" in (
            done.stderr
        )
        again = ban(engine, "10.253.99.0/31", "--for", "3h")
        assert again["replaced"] == [outer["id"]], "banned again: the new length holds"
        (listed,) = engine.client().request("bans.list")["bans"]
        assert listed["id"] == again["id"] and listed["left"] > 2 * 3600
        assert hosts.nft_elements() == ["10.253.99.0/31"] and not hosts.reaches("tcp", SERVER4)
        engine.cli("ban", "--flush")
        time.sleep(2.5)  # a flushed table is not "lost": the checks after it leave it gone
        assert hosts.run(hosts.server, "nft", "list", "table", "inet", "iotsec").returncode != 0
        assert hosts.reaches("tcp", SERVER4)
        ban(engine, CLIENT6, "--for", "1h")  # the next ban brings the table back
        assert hosts.nft_elements() == [CLIENT6] and not hosts.reaches("tcp", SERVER6)
    finally:
        engine.stop()


def test_dry_run_is_the_default_and_only_records(hosts: Hosts) -> None:
    engine = start_engine(hosts.tmp, prefix=("ip", "netns", "exec", hosts.server))
    try:
        made = ban(engine, CLIENT4, "--for", "1h")
        assert made["enforced"] is False and made["backend"] == "dry-run"
        assert hosts.reaches("tcp", SERVER4)
        assert hosts.run(hosts.server, "nft", "list", "ruleset").stdout.strip() == ""
        assert "NOT enforced (dry-run)" in engine.cli("bans").stdout
    finally:
        engine.stop()


def test_without_cap_net_admin_bans_are_recorded_and_said_not_enforced(hosts: Hosts) -> None:
    no_admin = ("setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin")
    prefix = ("ip", "netns", "exec", hosts.server, *no_admin)
    engine = start_engine(hosts.tmp, '[respond]\nbackend = "nftables"\n', prefix=prefix)
    try:
        made = ban(engine, CLIENT4, "--for", "1h")
        assert made["enforced"] is False and "needs CAP_NET_ADMIN" in made["problem"]
        assert hosts.reaches("tcp", SERVER4)
        status = engine.cli("status").stdout
        assert "active bans     1, not enforced (nftables): not enforced: nftables needs" in status
    finally:
        engine.stop()


# -- the parts, alone ------------------------------------------------------------------------


def test_targets_parse_strictly() -> None:
    assert str(parse_target(" 2001:db8::/48 ")) == "2001:db8::/48"
    assert str(parse_target("192.0.2.7")) == "192.0.2.7/32"
    with pytest.raises(TargetError, match=r"has host bits set: the network is 192\.0\.2\.0/24"):
        parse_target("192.0.2.7/24")
    with pytest.raises(TargetError, match="no address given"):
        parse_target(" ")


def test_bantime_escalates_by_the_factor_and_stops_at_the_maximum() -> None:
    assert [bantime(600, n, 2.0, 3000) for n in range(5)] == [600, 1200, 2400, 3000, 3000]
    assert bantime(600, 10_000, 2.0, 3000) == 3000
    assert bantime(600, 3, 1.0, 3000) == 600


def test_utmp_sessions_are_never_banned(tmp_path: Path) -> None:
    """The login records ``who`` reads: a session's remote address, IPv4 or IPv6."""
    record = struct.Struct("<hxxi32s4s32s256shhiii16s20x")
    utmp = tmp_path / "utmp"
    alice = record.pack(7, 100, b"pts/0", b"ts/0", b"alice", b"198.51.100.7", 0, 0, 0, 0, 0,
                        bytes([198, 51, 100, 7]) + bytes(12))  # fmt: skip
    bob = record.pack(7, 101, b"pts/1", b"ts/1", b"bob", b"", 0, 0, 0, 0, 0,
                      bytes.fromhex("20010db8000000000000000000000009"))  # fmt: skip
    gone = record.pack(8, 102, b"pts/2", b"", b"carol", b"203.0.113.1", 0, 0, 0, 0, 0, bytes(16))
    utmp.write_bytes(alice + bob + gone)
    assert [(str(a.network), a.why) for a in ssh_clients(utmp)] == [
        ("198.51.100.7/32", "SSH client of alice (logged in on pts/0)"),
        ("2001:db8::9/128", "SSH client of bob (logged in on pts/1)"),
    ]
    allow = AllowList([], lambda: [], utmp)
    assert "SSH client of alice" in allow.refusal(parse_target("198.51.100.0/24"))
    assert allow.refusal(parse_target("203.0.113.1")) is None, "carol has logged out"


# -- the response policy ---------------------------------------------------------------------

TELNET_CLIENT = "192.168.0.2"  # the client of sv_telnet_ppa.pcap
TELNET_DEVICE = "192.168.0.1"  # its server
DROP_TELNET = (
    'drop tcp any any -> any 23 (msg:"Telnet to a device"; flow:to_server; '
    "classtype:policy-violation; sid:1000001;)\n"
)
# The server's answers: the login failure, with Suricata's target naming the server.
DROP_LOGIN_FAILED = (
    'drop tcp any 23 -> any any (msg:"Telnet login prompt"; flow:from_server; content:"login:"; '
    "target:src_ip; classtype:unsuccessful-user; sid:1000002;)\n"
)


def policy_engine(hosts: Hosts, backend: str, policy: str = "", *, rules_text: str = DROP_TELNET,
                  ban_devices: bool = True) -> EngineProcess:  # fmt: skip
    """An engine with drop rules for the telnet capture. Its replay puts both ends in the
    inventory (they are on a local network), so the policy bans them only with ban_devices."""
    rules = hosts.tmp / "drop.rules"
    rules.write_text(rules_text)
    return hosts.engine(backend, f"ban_devices = {str(ban_devices).lower()}\n{policy}\n"
                                 f'[detect]\nrule_files = ["{rules}"]\n')  # fmt: skip


def replay_telnet(engine: EngineProcess) -> None:
    engine.client().request("capture.replay", {"path": str(pcap("sv_telnet_ppa.pcap"))})


@pytest.mark.parametrize("backend", ["dry-run", "nftables"])
def test_a_drop_rule_bans_its_source_through_the_policy(hosts: Hosts, backend: str) -> None:
    engine = policy_engine(hosts, backend)
    try:
        replay_telnet(engine)
        wait_for(lambda: engine.client().request("bans.list")["bans"], "the policy's ban")
        (made,) = engine.client().request("bans.list")["bans"]
        assert (made["address"], made["source"], made["created_by"]) == (
            TELNET_CLIENT,
            "rule:1000001",
            "policy",
        )
        assert made["reason"].startswith("alert #") and "Telnet to a device" in made["reason"]
        assert 3590 < made["left"] <= 3600
        expected = [TELNET_CLIENT] if backend == "nftables" else []
        assert hosts.nft_elements() == expected
    finally:
        engine.stop()


def test_a_drop_rule_on_the_servers_answer_bans_the_client_not_the_device(hosts: Hosts) -> None:
    engine = policy_engine(hosts, "nftables", rules_text=DROP_LOGIN_FAILED)
    try:
        replay_telnet(engine)
        wait_for(lambda: engine.client().request("bans.list")["bans"], "the policy's ban")
        (made,) = engine.client().request("bans.list")["bans"]
        assert (made["address"], made["source"]) == (TELNET_CLIENT, "rule:1000002")
        assert hosts.nft_elements() == [TELNET_CLIENT], "the attacker, not the device"
    finally:
        engine.stop()


def test_without_ban_devices_the_policy_bans_no_device_of_the_inventory(hosts: Hosts) -> None:
    engine = policy_engine(hosts, "nftables", ban_devices=False)
    try:
        replay_telnet(engine)
        wait_for(lambda: engine.client().request("bans.list")["refused"], "the refusal")
        listed = engine.client().request("bans.list")
        assert listed["bans"] == [] and listed["proposed"] == []
        assert hosts.nft_elements() == []
        assert "ban_devices is off" in engine.log.read_text()
    finally:
        engine.stop()


def test_a_proposed_ban_waits_for_an_operator(hosts: Hosts) -> None:
    policy = '[[respond.policy]]\nsids = [1000001]\nconfirm = true\nbantime = "2h"\n'
    engine = policy_engine(hosts, "nftables", policy)
    try:
        replay_telnet(engine)
        client = engine.client()
        wait_for(lambda: client.request("bans.list")["proposed"], "the proposal")
        listed = client.request("bans.list")
        (proposal,) = listed["proposed"]
        assert listed["bans"] == [] and hosts.nft_elements() == []
        assert (proposal["address"], proposal["state"], proposal["bantime"]) == (
            TELNET_CLIENT,
            "proposed",
            7200,
        )
        made = json.loads(engine.cli("bans", "--json").stdout)["proposed"][0]
        assert made["id"] == proposal["id"]
        confirmed = client.request("bans.confirm", {"id": proposal["id"]})
        assert confirmed["address"] == TELNET_CLIENT and 7190 < confirmed["left"] <= 7200
        assert hosts.nft_elements() == [TELNET_CLIENT]
        assert client.request("bans.list")["proposed"] == []
        # Lifted, the next alert proposes again; rejected, nothing reaches the firewall.
        engine.cli("unban", TELNET_CLIENT)
        replay_telnet(engine)
        wait_for(lambda: client.request("bans.list")["proposed"], "a new proposal")
        (again,) = client.request("bans.list")["proposed"]
        assert client.request("bans.reject", {"id": again["id"]})["state"] == "rejected"
        assert client.request("bans.list")["proposed"] == [] and hosts.nft_elements() == []
        audit = [e["command"] for e in client.request("audit.list", {"limit": 20})]
        assert {"bans.confirm", "bans.reject"} <= set(audit)
    finally:
        engine.stop()


def test_policy_entries_match_in_order() -> None:
    from engine.config import PolicyRule
    from engine.model import AlertEvent, Severity
    from engine.respond.policy import decide

    def rule_alert(sid: int, action: str = "alert", severity=Severity.MEDIUM) -> AlertEvent:
        return AlertEvent(severity, "rules", str(sid), "t", src="203.0.113.9",
                          evidence={"action": action, "classtype": "attempted-admin"})  # fmt: skip

    jail = AlertEvent(Severity.HIGH, "logwatch", "sshd", "t", src="203.0.113.9")
    assert decide((), rule_alert(1, "drop")) is not None, "default: drop and reject ban"
    assert decide((), rule_alert(1, "alert")) is None
    assert decide((), jail) is None
    policy = (
        PolicyRule(sids=(7,), ignore=True),
        PolicyRule(classtypes=("attempted-admin",), severity="high"),
        PolicyRule(jails=("sshd",), confirm=True),
    )
    assert decide(policy, rule_alert(7, severity=Severity.CRITICAL)) is None, "ignored first"
    assert decide(policy, rule_alert(8, severity=Severity.HIGH)) is policy[1]
    assert decide(policy, rule_alert(8, severity=Severity.MEDIUM)) is None
    assert decide(policy, jail) is policy[2]
