"""Live capture from network interfaces: an AF_PACKET socket per interface with a TPACKET_V3
memory-mapped ring, so the kernel hands over blocks of frames and one poll serves hundreds of
them (a recv per packet cannot keep up at 100k packets/s in Python). An optional BPF filter,
compiled by libpcap through scapy, runs in the kernel.

Each interface has a reader thread; it copies a block's frames out of the ring, gives the block
back, and passes the frames to ``handle(iface, linktype, frames)``. Kernel drops come from
PACKET_STATISTICS. Needs CAP_NET_RAW; without it :class:`CaptureUnavailable` says so.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import select
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine.capture.decode import LINK_ETHERNET, LINK_RAW

log = logging.getLogger("iotsec.capture")

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
ETH_P_ALL = 0x0003
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
ARPHRD_LINKTYPE = {1: LINK_ETHERNET, 772: LINK_ETHERNET, 65534: LINK_RAW}
BLOCK_SIZE = 1 << 20
FRAME_SIZE = 1 << 11
# A block is handed to us at the latest this many ms after its first frame.
BLOCK_TIMEOUT_MS = 50
POLL_MS = 200

_BLOCK = struct.Struct("=III")  # block_status, num_pkts, offset_to_first_pkt (at +8)
_FRAME = struct.Struct("=IIIIIIHH")  # next, sec, nsec, snaplen, len, status, mac, net
_VLAN = struct.Struct("=IH")  # vlan_tci, vlan_tpid (at +32)

Frames = list[tuple[float, bytes, int]]  # (time, bytes, length on the wire)
Handler = Callable[[str, int, Frames], None]

GRANT_HINT = (
    "live capture needs CAP_NET_RAW: run the engine as root, give the service "
    "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN (see iotsec.service), or grant the "
    "interpreter: sudo setcap cap_net_raw,cap_net_admin+eip $(readlink -f .venv/bin/python)"
)


class CaptureError(Exception):
    """Capture could not start on an interface; the message says which and why."""


class CaptureUnavailable(CaptureError):
    """This process may not capture at all (no CAP_NET_RAW)."""


def can_capture() -> tuple[bool, str]:
    """Whether this process may open packet sockets, and if not, why and how to fix it."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        return False, GRANT_HINT
    except OSError as exc:
        return False, f"packet sockets unavailable: {exc.strerror}"
    return True, ""


def link_type(iface: str) -> int:
    """The pcap link type of ``iface`` (Ethernet, loopback and tun-style raw IP)."""
    try:
        kind = int(Path(f"/sys/class/net/{iface}/type").read_text())
    except (OSError, ValueError):
        raise CaptureError(f"no network interface named {iface!r}") from None
    if kind not in ARPHRD_LINKTYPE:
        raise CaptureError(f"interface {iface}: link type {kind} is not supported")
    return ARPHRD_LINKTYPE[kind]


def compile_bpf(expression: str, linktype: int) -> bytes:
    """``expression`` compiled to classic BPF, packed as the kernel's ``struct sock_fprog``.

    The returned bytes point into a program kept alive in ``_PROGRAMS``.
    """
    from scapy.arch.common import compile_filter
    from scapy.error import Scapy_Exception

    try:
        program = compile_filter(expression, linktype=linktype)
    except Scapy_Exception as exc:
        raise CaptureError(f"BPF filter {expression!r} does not compile: {exc}") from None
    except OSError as exc:
        raise CaptureError(f"cannot compile BPF filters here (libpcap missing?): {exc}") from None
    _PROGRAMS.append(program)
    return struct.pack("HL", program.bf_len, ctypes.addressof(program.bf_insns.contents))


_PROGRAMS: list[object] = []


@dataclass
class InterfaceStats:
    name: str
    linktype: int
    packets: int = 0
    kernel_packets: int = 0
    kernel_drops: int = 0
    state: str = "running"
    error: str = ""


@dataclass
class LiveCapture:
    interfaces: list[str]
    handle: Handler
    bpf: str = ""
    buffer_bytes: int = 32 << 20
    stats: dict[str, InterfaceStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: dict[str, tuple[socket.socket, mmap.mmap, int]] = {}

    def start(self) -> None:
        """Open every interface (all or none) and start reading."""
        if not self.interfaces:
            raise CaptureError("no interface given")
        try:
            for iface in self.interfaces:
                self._open(iface)
        except BaseException:
            self._close_all()
            raise
        for iface in self.interfaces:
            thread = threading.Thread(target=self._read, args=(iface,), daemon=True,
                                      name=f"capture-{iface}")  # fmt: skip
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads.clear()
        self.poll_statistics()
        self._close_all()

    @property
    def kernel_drops(self) -> int:
        return sum(s.kernel_drops for s in self.stats.values())

    def poll_statistics(self) -> None:
        """Add the kernel's counters since the last call (reading them resets them)."""
        for iface, (sock, _, _) in list(self._sockets.items()):
            try:
                raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
            except OSError:
                continue
            packets, drops = struct.unpack_from("=II", raw)
            stats = self.stats[iface]
            stats.kernel_packets += packets
            stats.kernel_drops += drops

    def _open(self, iface: str) -> None:
        linktype = link_type(iface)
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise CaptureUnavailable(GRANT_HINT) from None
        try:
            if self.bpf:
                # Attached before binding, so no unfiltered frame slips in.
                sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                                compile_bpf(self.bpf, linktype))  # fmt: skip
            if iface == "lo":
                # Loopback shows each packet leaving and arriving; keep one copy, as tcpdump does.
                try:
                    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                except OSError:
                    log.warning("kernel lacks PACKET_IGNORE_OUTGOING: lo packets appear twice")
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            blocks = max(2, self.buffer_bytes // BLOCK_SIZE)
            frames = BLOCK_SIZE // FRAME_SIZE * blocks
            request = struct.pack("=7I", BLOCK_SIZE, blocks, FRAME_SIZE, frames,
                                  BLOCK_TIMEOUT_MS, 0, 0)  # fmt: skip
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
            ring = mmap.mmap(sock.fileno(), BLOCK_SIZE * blocks, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
            sock.bind((iface, ETH_P_ALL))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ENODEV:
                raise CaptureError(f"no network interface named {iface!r}") from None
            raise CaptureError(f"cannot capture on {iface}: {exc.strerror}") from None
        except CaptureError:
            sock.close()
            raise
        self._sockets[iface] = (sock, ring, blocks)
        self.stats[iface] = InterfaceStats(iface, linktype)

    def _read(self, iface: str) -> None:
        sock, ring, blocks = self._sockets[iface]
        stats = self.stats[iface]
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLERR)
        index = 0
        unpack_block, unpack_frame, unpack_vlan = (_BLOCK.unpack_from, _FRAME.unpack_from,
                                                   _VLAN.unpack_from)  # fmt: skip
        while not self._stop.is_set():
            base = index * BLOCK_SIZE
            status, count, first = unpack_block(ring, base + 8)
            if not status & TP_STATUS_USER:
                for _, event in poller.poll(POLL_MS):
                    if event & select.POLLERR and self._failed(sock, stats):
                        return
                continue
            frames: Frames = []
            offset = base + first
            for _ in range(count):
                following, sec, nsec, snaplen, length, fstatus, mac, _ = unpack_frame(ring, offset)
                start = offset + mac
                data = ring[start : start + snaplen]
                if fstatus & TP_STATUS_VLAN_VALID and stats.linktype == LINK_ETHERNET:
                    data = _with_vlan(data, fstatus, *unpack_vlan(ring, offset + 32))
                    length += 4
                frames.append((sec + nsec * 1e-9, data, length))
                offset += following
            struct.pack_into("=I", ring, base + 8, 0)  # the block goes back to the kernel
            index = (index + 1) % blocks
            stats.packets += count
            self.handle(iface, stats.linktype, frames)

    def _failed(self, sock: socket.socket, stats: InterfaceStats) -> bool:
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code in (errno.ENETDOWN, errno.ENODEV, errno.ENXIO):
            stats.state = "error"
            stats.error = f"interface {stats.name} went away: {os.strerror(code)}"
            log.warning("%s", stats.error)
            return True
        return False

    def _close_all(self) -> None:
        for sock, ring, _ in self._sockets.values():
            ring.close()
            sock.close()
        self._sockets.clear()


def _with_vlan(data: bytes, status: int, tci: int, tpid: int) -> bytes:
    """Put back the 802.1Q tag the kernel took off the frame."""
    tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID and tpid else 0x8100
    return data[:12] + struct.pack("!HH", tpid, tci & 0xFFFF) + data[12:]
