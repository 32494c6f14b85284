"""Sharding an offline analysis over processes: every process reads all the frames but accounts
only the flows that hash to its shard, so the shards' counts add up to one process's counts.

The hash (the mix) is symmetric, so both directions of a conversation land in one shard: the
XOR of the addresses (IPv6 ones as 64-bit words) and, for TCP and UDP, of the ports, modulo
MIX_PRIME. The fast path (:mod:`engine.capture.fastpath`) mixes the raw headers of the common
frame; :meth:`Shard.owns` decodes any other frame to mix the same fields. A split is exact only
while capture time never runs backwards (expiry walks the flows least recently seen first and
stops at the first active one, so each shard expires what one process would only when that
order is time order) and while no shard's flow table fills up (which flow is evicted depends on
all of them). :class:`Unshardable` says when it is not, and the caller then analyses in one
process.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

from engine.capture.decode import TCP, UDP, Decoder

T = TypeVar("T")

_WITH_PORTS = frozenset((TCP, UDP))
_MASK64 = (1 << 64) - 1
# The mix is reduced modulo a prime first, so that every bit of it counts.
MIX_PRIME = 251
# Each process reads every frame, which bounds what more processes can gain.
MAX_PROCESSES = 4


class Unshardable(Exception):
    """The analysis cannot be split (exactly); the message says why."""


class Shard:
    """Which frames shard ``index`` of ``count`` accounts."""

    def __init__(self, index: int, count: int) -> None:
        # Whether each value of the mix modulo MIX_PRIME is this shard's: one index per frame
        # instead of a second modulo and a comparison.
        self.mine = [mix % count == index for mix in range(MIX_PRIME)]
        self._decoder = Decoder()  # its counts are not reported

    def owns(self, data: bytes, linktype: int) -> bool:
        """Whether this shard accounts a frame, by its decoded addresses and ports; a frame in no
        flow (not decoded) is shard 0's."""
        packet = self._decoder.decode(data, linktype)
        if packet is None:
            return self.mine[0]
        family = socket.AF_INET6 if packet.ip_version == 6 else socket.AF_INET
        mix = 0
        for address in (packet.src, packet.dst):
            value = int.from_bytes(socket.inet_pton(family, address), "big")
            mix ^= (value >> 64) ^ (value & _MASK64) if family == socket.AF_INET6 else value
        if packet.proto in _WITH_PORTS:
            mix ^= packet.sport ^ packet.dport
        return self.mine[mix % MIX_PRIME]


def processes() -> int:
    """How many processes a sharded analysis can use here (1: do not shard)."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return 1  # forking a process with threads can leave their locks held in the child
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return min(cores, MAX_PROCESSES)


def run_sharded(count: int, work: Callable[[int], T]) -> list[T]:
    """``work(index)`` for every shard, shard 0 in this process and each other one in a forked
    child; their results in shard order. An exception in any shard is raised here."""
    children: list[tuple[int, BinaryIO]] = []  # pid, the pipe its result comes through
    try:
        for index in range(1, count):
            read_end, write_end = os.pipe()
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(read_end)
                os.close(write_end)
                raise Unshardable(f"cannot start a process: {exc.strerror}") from None
            if pid == 0:
                os.close(read_end)
                _child(work, index, write_end)
            os.close(write_end)
            children.append((pid, os.fdopen(read_end, "rb")))
        results = [work(0)]
        while children:
            pid, pipe = children[0]
            with pipe:
                message = pipe.read()
            os.waitpid(pid, 0)
            children.pop(0)
            if not message:
                raise ChildProcessError(f"the process of shard {len(results)} died")
            failed, value = pickle.loads(message)
            if failed:
                raise value
            results.append(value)
        return results
    finally:
        for pid, pipe in children:  # only when something failed: stop the others
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pipe.close()


def _child(work: Callable[[int], Any], index: int, write_end: int) -> None:
    """Run one shard and send its result, or what went wrong, back; never returns."""
    try:
        try:
            message = pickle.dumps((False, work(index)))
        except Unshardable as exc:
            message = pickle.dumps((True, exc))
        except Exception:
            import traceback  # only here: most analyses never need it

            # The exception itself may not pickle; its traceback as text always does.
            failure = ChildProcessError(f"shard {index} failed:\n{traceback.format_exc()}")
            message = pickle.dumps((True, failure))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(message)
    finally:
        # Not sys.exit: the parent's atexit handlers and buffered output are not the child's.
        os._exit(0)
