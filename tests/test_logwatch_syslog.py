"""The syslog receiver: messages in the formats real senders use (rsyslog, BusyBox syslogd and
dropbear, mosquitto over RFC 5424) parsed into their fields, and a real receiver on loopback
taking them over UDP and TCP (both RFC 6587 framings) as devices send them."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.logwatch.syslog import SyslogError, SyslogMessage, SyslogReceiver, parse_message
from tests.conftest import unavailable

# An instant after every RFC 3164 time below, so their year is this one.
NOW = datetime(2026, 11, 24, 23, 0, 0).timestamp()

RSYSLOG = (
    b"<38>Nov 24 13:45:01 gw sshd[1234]: Failed password for root from 203.0.113.5 port 2222 ssh2"
)
DROPBEAR = b"<86>Nov  4 03:01:02 dropbear[77]: Bad password attempt for 'root' from 192.0.2.9:40000"
MOSQUITTO = (
    b'<165>1 2026-11-24T13:45:01.123Z cam1 mosquitto 812 - [meta sequenceId="1"] '
    b"\xef\xbb\xbfClient x disconnected, not authorised."
)


def test_rfc3164_from_rsyslog() -> None:
    msg = parse_message(RSYSLOG, "10.0.0.1", NOW)
    assert msg == SyslogMessage(
        ts=datetime(2026, 11, 24, 13, 45, 1).timestamp(),
        hostname="gw",
        program="sshd",
        pid="1234",
        message="Failed password for root from 203.0.113.5 port 2222 ssh2",
        facility=4,  # auth
        severity=6,  # info
        peer="10.0.0.1",
        received=NOW,
    )
    assert msg.line() == RSYSLOG.decode()[4:]


def test_busybox_and_dropbear_send_no_hostname() -> None:
    msg = parse_message(DROPBEAR, "192.168.1.20", NOW)
    assert msg.ts == datetime(2026, 11, 4, 3, 1, 2).timestamp()
    assert (msg.hostname, msg.program, msg.pid) == ("192.168.1.20", "dropbear", "77")
    assert msg.message == "Bad password attempt for 'root' from 192.0.2.9:40000"
    assert (msg.facility, msg.severity) == (10, 6)  # authpriv.info
    assert msg.line() == (
        "Nov  4 03:01:02 192.168.1.20 dropbear[77]: Bad password attempt for 'root' from "
        "192.0.2.9:40000"
    )


def test_rfc3164_without_a_time_is_stamped_when_received() -> None:
    msg = parse_message(b"<13>kernel: eth0: link up\n", "10.0.0.7", NOW)
    assert msg.ts is None
    assert (msg.hostname, msg.program, msg.pid, msg.message) == (
        "10.0.0.7",
        "kernel",
        "",
        "eth0: link up",
    )
    assert msg.line() == "Nov 24 23:00:00 10.0.0.7 kernel: eth0: link up"


def test_rfc3164_without_a_tag_keeps_the_whole_text() -> None:
    msg = parse_message(b"<46>Nov 24 13:45:01 gw -- MARK --", "10.0.0.1", NOW)
    assert (msg.hostname, msg.program, msg.message) == ("gw", "", "-- MARK --")
    assert msg.line() == "Nov 24 13:45:01 gw -- MARK --"


def test_rfc3164_year_is_the_one_closest_before_now() -> None:
    new_year = datetime(2027, 1, 1, 0, 5, 0).timestamp()
    december = parse_message(b"<38>Dec 31 23:59:58 gw sshd[1]: x", "10.0.0.1", new_year)
    assert december.ts == datetime(2026, 12, 31, 23, 59, 58).timestamp()
    # A sender whose clock runs a few minutes ahead is still this year, not last.
    ahead = parse_message(b"<38>Jan  1 00:09:00 gw sshd[1]: x", "10.0.0.1", new_year)
    assert ahead.ts == datetime(2027, 1, 1, 0, 9, 0).timestamp()


def test_rfc5424_with_structured_data_and_a_bom() -> None:
    msg = parse_message(MOSQUITTO, "10.0.0.9", NOW)
    assert msg.ts == pytest.approx(datetime(2026, 11, 24, 13, 45, 1, 123000, UTC).timestamp())
    assert (msg.hostname, msg.program, msg.pid) == ("cam1", "mosquitto", "812")
    assert msg.message == "Client x disconnected, not authorised."
    assert (msg.facility, msg.severity) == (20, 5)  # local4.notice


def test_rfc5424_structured_data_with_escapes_and_nil_values() -> None:
    data = (
        b'<34>1 2026-11-24T14:45:01.5+01:00 - - - ID47 [exampleSDID@32473 iut="3" '
        b'eventSource="App\\"li\\]cation" eventID="1011"][examplePriority@32473 class="high"] '
        b"'su root' failed for lonvick on /dev/pts/8"
    )
    msg = parse_message(data, "2001:db8::20", NOW)
    assert msg.ts == pytest.approx(datetime(2026, 11, 24, 13, 45, 1, 500000, UTC).timestamp())
    assert (msg.hostname, msg.program, msg.pid) == ("2001:db8::20", "", "")
    assert msg.message == "'su root' failed for lonvick on /dev/pts/8"
    assert msg.line().endswith(" 2001:db8::20 'su root' failed for lonvick on /dev/pts/8")


def test_rfc5424_with_nil_structured_data_bom_and_offset() -> None:
    data = (
        b"<86>1 2026-11-24T08:45:01-05:00 gw.lan sshd 4321 - - \xef\xbb\xbfInvalid user admin "
        b"from 2001:db8::66 port 51000\r\n"
    )
    msg = parse_message(data, "10.0.0.1", NOW)
    expected = datetime(2026, 11, 24, 8, 45, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert msg.ts == expected.timestamp()
    assert (msg.hostname, msg.program, msg.pid) == ("gw.lan", "sshd", "4321")
    assert msg.message == "Invalid user admin from 2001:db8::66 port 51000"


def test_rfc5424_without_a_message() -> None:
    msg = parse_message(b"<14>1 - host app - - -", "10.0.0.1", NOW)
    assert (msg.ts, msg.hostname, msg.program, msg.message) == (None, "host", "app", "")


def test_ipv6_hostname_and_addresses() -> None:
    data = b"<38>Nov 24 13:45:01 2001:db8::5 sshd[99]: Failed password for root from ::1 port 22"
    msg = parse_message(data, "2001:db8::5", NOW)
    assert (msg.hostname, msg.program, msg.pid) == ("2001:db8::5", "sshd", "99")
    assert msg.message == "Failed password for root from ::1 port 22"


def test_invalid_utf8_is_replaced_not_refused() -> None:
    msg = parse_message(b"<13>Nov 24 13:45:01 gw app: caf\xe9 \xff\xfe login\x00\n", "h", NOW)
    assert msg.message == "caf\ufffd \ufffd\ufffd login"


def test_a_message_cannot_forge_a_second_line() -> None:
    data = (
        b"<38>1 - gw sshd 1 - - ok\n"
        b"Nov 24 13:45:01 gw sshd[1]: Failed password for root from 198.51.100.66"
    )
    msg = parse_message(data, "10.0.0.1", NOW)
    assert "\n" in msg.message
    assert "\n" not in msg.line() and "ok#012Nov 24" in msg.line()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty message"),
        (b"\r\n", "empty message"),
        (b"Nov 24 13:45:01 gw sshd[1]: hi", "no <PRI> at the start"),
        (b"<999>Nov 24 13:45:01 gw sshd[1]: hi", "PRI 999 is out of range"),
        (b"<192>x: hi", "PRI 192 is out of range"),
        (b"<13 x: hi", "<PRI> is not 1 to 3 digits closed by '>'"),
        (b"<1000>x: hi", "<PRI> is not 1 to 3 digits"),
        (b"<165>1 2026-11-24T13:45:01Z cam1", "RFC 5424 header has 2 of its 6 fields"),
        (b"<165>1 yesterday cam1 app - - - hi", "RFC 5424 TIMESTAMP 'yesterday' is not a date"),
        (b'<165>1 - cam1 app - - [meta a="]"', "RFC 5424 STRUCTURED-DATA element is not closed"),
        (b"<165>1 - cam1 app - - hi", "RFC 5424 STRUCTURED-DATA is neither '-' nor"),
    ],
)
def test_malformed_messages_say_what_is_wrong(data: bytes, problem: str) -> None:
    with pytest.raises(SyslogError, match="^" + re.escape(problem)) as caught:
        parse_message(data, "10.0.0.1", NOW)
    assert str(caught.value).endswith(f": {data!r}")  # the message quoted, escaped


def test_the_excerpt_of_a_long_malformed_message_is_short() -> None:
    with pytest.raises(SyslogError) as caught:
        parse_message(b"GET / HTTP/1.1\r\n" + b"x" * 1000, "10.0.0.1", NOW)
    assert "no <PRI> at the start: b'GET / HTTP/1.1\\r\\nxxx" in str(caught.value)
    assert len(str(caught.value)) < 120


class Collector:
    """The receiver's handler: the batches it got, and a wait for a number of messages."""

    def __init__(self) -> None:
        self.batches: list[list[SyslogMessage]] = []
        self._changed = asyncio.Event()

    def __call__(self, batch: list[SyslogMessage]) -> None:
        self.batches.append(batch)
        self._changed.set()

    @property
    def messages(self) -> list[SyslogMessage]:
        return [msg for batch in self.batches for msg in batch]

    async def wait(self, count: int) -> list[SyslogMessage]:
        async with asyncio.timeout(1):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages


@pytest.fixture
async def receiver() -> AsyncIterator[SyslogReceiver]:
    r = SyslogReceiver(Collector(), address="127.0.0.1", port=0)
    await r.start()
    yield r
    await r.stop()


def send_udp(port: int, *datagrams: bytes, host: str = "127.0.0.1") -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for datagram in datagrams:
            sock.sendto(datagram, (host, port))


async def test_udp_messages_in_both_formats_arrive(receiver: SyslogReceiver) -> None:
    assert receiver.udp_port and receiver.tcp_port
    send_udp(receiver.udp_port, RSYSLOG + b"\n", MOSQUITTO)
    got = await receiver.handler.wait(2)
    # Both were waiting when the loop next ran: read in one turn, handed over as one batch.
    assert [len(batch) for batch in receiver.handler.batches] == [2]
    assert [(m.hostname, m.program, m.pid, m.peer) for m in got] == [
        ("gw", "sshd", "1234", "127.0.0.1"),
        ("cam1", "mosquitto", "812", "127.0.0.1"),
    ]
    assert got[0].message == "Failed password for root from 203.0.113.5 port 2222 ssh2"
    assert got[1].message == "Client x disconnected, not authorised."
    assert receiver.received == 2 and receiver.malformed == 0


async def test_a_malformed_datagram_is_counted_and_the_next_still_arrive(
    receiver: SyslogReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "iotsec.logwatch")
    send_udp(receiver.udp_port, b"hello there", b"<999>x: y", RSYSLOG, DROPBEAR)
    got = await receiver.handler.wait(2)
    assert [m.program for m in got] == ["sshd", "dropbear"]
    assert (receiver.received, receiver.malformed) == (4, 2)
    assert receiver.last_error.startswith("malformed syslog message from 127.0.0.1: PRI 999")
    # Warned once, not once per message: a flood of junk does not flood the log.
    warnings = [r for r in caplog.records if r.name == "iotsec.logwatch"]
    assert len(warnings) == 1 and "no <PRI> at the start" in warnings[0].getMessage()


async def test_tcp_octet_counting_several_in_one_send(receiver: SyslogReceiver) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", receiver.tcp_port)
    frames = [MOSQUITTO, RSYSLOG, b"<13>1 - h app - - - two\nlines"]
    writer.write(b"".join(b"%d %s" % (len(frame), frame) for frame in frames))
    await writer.drain()
    got = await receiver.handler.wait(3)
    assert [m.program for m in got] == ["mosquitto", "sshd", "app"]
    assert got[2].message == "two\nlines"  # octet counting carries newlines inside a message
    writer.close()
    await writer.wait_closed()


async def test_tcp_lf_and_nul_framing_several_in_one_send(receiver: SyslogReceiver) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", receiver.tcp_port)
    writer.write(RSYSLOG + b"\r\n" + DROPBEAR + b"\x00\n" + MOSQUITTO + b"\n")
    await writer.drain()
    got = await receiver.handler.wait(3)
    assert [m.program for m in got] == ["sshd", "dropbear", "mosquitto"]
    assert got[0].message.endswith("port 2222 ssh2")
    assert receiver.malformed == 0  # the empty frame between NUL and LF is not a message
    writer.close()
    await writer.wait_closed()


# Split inside the message, and inside the octet count ("9" then "1 <38>...").
@pytest.mark.parametrize(("octet_counted", "split"), [(True, 30), (True, 1), (False, 30)])
async def test_tcp_message_split_over_two_sends(
    receiver: SyslogReceiver, octet_counted: bool, split: int
) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", receiver.tcp_port)
    data = b"%d %s" % (len(RSYSLOG), RSYSLOG) if octet_counted else RSYSLOG + b"\n"
    writer.write(data[:split])
    await writer.drain()
    await asyncio.sleep(0.05)
    assert receiver.handler.messages == []  # half a message is not passed on
    writer.write(data[split:])
    await writer.drain()
    (msg,) = await receiver.handler.wait(1)
    assert msg.message == "Failed password for root from 203.0.113.5 port 2222 ssh2"
    writer.close()
    await writer.wait_closed()


async def test_tcp_last_message_without_lf_arrives_when_the_sender_closes(
    receiver: SyslogReceiver,
) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", receiver.tcp_port)
    writer.write(DROPBEAR)
    writer.write_eof()
    (msg,) = await receiver.handler.wait(1)
    assert msg.program == "dropbear"
    writer.close()


async def test_tcp_sender_closing_inside_an_octet_counted_frame_is_malformed(
    receiver: SyslogReceiver,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", receiver.tcp_port)
    writer.write(b"200 " + RSYSLOG)
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 1) == b""
    assert receiver.handler.messages == []
    assert receiver.malformed == 1
    assert "bytes into a frame of 200" in receiver.last_error


@pytest.mark.parametrize("octet_counted", [True, False])
async def test_tcp_frame_longer_than_max_message_is_cut(octet_counted: bool) -> None:
    collector = Collector()
    receiver = SyslogReceiver(collector, port=0, udp=False, max_message=100)
    await receiver.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", receiver.tcp_port)
        long = b"<13>Nov 24 13:45:01 gw app: " + b"A" * 5000
        for frame in (long, RSYSLOG):
            writer.write(b"%d %s" % (len(frame), frame) if octet_counted else frame + b"\n")
        await writer.drain()
        got = await collector.wait(2)
        assert got[0].message == "A" * (100 - len(b"<13>Nov 24 13:45:01 gw app: "))
        assert got[1].program == "sshd"
        assert (receiver.cut, receiver.received, receiver.malformed) == (1, 2, 0)
        writer.close()
    finally:
        await receiver.stop()


async def test_stop_closes_the_sockets_and_connections(receiver: SyslogReceiver) -> None:
    reader, _ = await asyncio.open_connection("127.0.0.1", receiver.tcp_port)
    await asyncio.sleep(0.01)
    await receiver.stop()
    assert await asyncio.wait_for(reader.read(), 1) == b""
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", receiver.tcp_port)
    # The ports are free again: a new receiver can take them.
    again = SyslogReceiver(Collector(), port=receiver.tcp_port, udp=False)
    await again.start()
    await again.stop()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_ipv6_loopback_over_udp_and_tcp() -> None:
    if not ipv6_loopback():
        unavailable("no IPv6 loopback (::1) on this machine")
    collector = Collector()
    receiver = SyslogReceiver(collector, address="::1", port=0)
    await receiver.start()
    try:
        send_udp(receiver.udp_port, RSYSLOG, host="::1")
        _, writer = await asyncio.open_connection("::1", receiver.tcp_port)
        writer.write(b"%d %s" % (len(MOSQUITTO), MOSQUITTO))
        await writer.drain()
        got = await collector.wait(2)
        assert sorted((m.program, m.peer) for m in got) == [("mosquitto", "::1"), ("sshd", "::1")]
        writer.close()
    finally:
        await receiver.stop()


async def test_rfc3164_without_hostname_over_udp_is_named_by_its_address() -> None:
    collector = Collector()
    receiver = SyslogReceiver(collector, port=0, tcp=False)
    await receiver.start()
    try:
        assert receiver.tcp_port is None
        send_udp(receiver.udp_port, DROPBEAR)
        (msg,) = await collector.wait(1)
        assert msg.hostname == "127.0.0.1"
        assert msg.line().endswith(" 127.0.0.1 dropbear[77]: " + msg.message)
    finally:
        await receiver.stop()


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
async def test_a_port_in_use_is_an_error_naming_the_address_and_port(kind: int) -> None:
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            taken.listen()
        port = taken.getsockname()[1]
        receiver = SyslogReceiver(Collector(), address="127.0.0.1", port=port)
        with pytest.raises(OSError, match=f"127.0.0.1 port {port}: Address already in use"):
            await receiver.start()
    # Nothing stays bound after the failure: the same port can be used once it is free.
    await receiver.start()
    await receiver.stop()
