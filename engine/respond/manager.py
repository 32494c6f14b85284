# Over 500 lines: one class, the ban life cycle, whose steps share one lock and the bans.
"""The ban manager: bans and unbans (refused for the allow-list), their escalation, their rows
in the store, and the firewall kept equal to the active bans — installed on start with the
bans still running, expired ones dropped, and installed again when the firewall lost our table
(``nft flush ruleset``, a firewall service restart).

Firewall commands are blocking subprocesses: they run off the loop, one change at a time.
Without CAP_NET_ADMIN the bans are still recorded, and the status says they are not enforced
and why.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from engine.durations import MAX_SECONDS
from engine.errors import BadArgument, EngineError, Exists, FirewallFailed, NotFound, Refused
from engine.respond.allowlist import Allowed, AllowList
from engine.respond.firewall import DryRun, Element, Firewall, FirewallError
from engine.respond.iptables import Iptables
from engine.respond.nftables import Nftables, find_nft
from engine.respond.policy import PERMANENT, ban_length, decide
from engine.respond.targets import (
    BAN_COLUMNS,
    Ban,
    Network,
    TargetError,
    bantime,
    parse_target,
)
from engine.respond.targets import shown as shown_target

if TYPE_CHECKING:
    from engine.config import RespondConfig
    from engine.devices.inventory import Inventory
    from engine.events import EventBus
    from engine.model import AlertEvent
    from engine.store.db import Reader
    from engine.store.writer import Writer

log = logging.getLogger("iotsec.respond")

# In the refusal to ban a device of the inventory without local_ok: the console, reading it,
# asks the operator the second time and sends local_ok.
DEVICE_REFUSAL = "a device of the inventory"

T = TypeVar("T")


def make_firewall(backend: str) -> Firewall:
    """The backend the config names ("auto": nftables when nft is installed)."""
    if backend == "auto":
        backend = "nftables" if find_nft() else "iptables"
    if backend == "nftables":
        return Nftables()
    if backend == "iptables":
        return Iptables()
    return DryRun()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "until lifted"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


class BanManager:
    def __init__(self, config: RespondConfig, writer: Writer, bus: EventBus, read: Reader,
                 ssh_clients: Callable[[], Iterable[tuple[str, str]]],
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        """``ssh_clients``: (operator, address) of the SSH client of every operator connected
        now, which the allow-list holds while they are."""
        self.config = config
        self.writer = writer
        self.bus = bus
        self.read = read
        self.clock = clock
        self.ssh_clients = ssh_clients
        self.allowlist = AllowList(config.ignoreip, self._connected_operators)
        # The inventory, once the engine has one: a device's address is banned only on request.
        self.devices: Inventory | None = None
        self.active: dict[str, Ban] = {}  # by target
        # Bans the policy proposed, waiting for an operator: by id, with (bantime, alert id).
        self.proposed: dict[int, tuple[Ban, float | None, int | None]] = {}
        self.refused = 0  # bans the policy wanted that the allow-list refused
        self._deciding: set[str] = set()  # sources whose policy ban is under way
        self._tasks: set[asyncio.Task[Any]] = set()
        self.state = "not started"
        self.problem = ""  # why bans are not enforced, when they are not
        self.reapplied = 0  # times the firewall lost our table and it was installed again
        # Stored bans left out of the firewall since the start, by id: why (see _leave_out).
        self.unapplied: dict[int, str] = {}
        # Whether our table should be in the firewall: not after a flush, until the next ban.
        self.installed = False
        self.counts: dict[str, tuple[int, int]] = {}
        self._lock = asyncio.Lock()
        try:
            self.firewall: Firewall = make_firewall(config.backend)
        except FirewallError as exc:
            self.firewall = DryRun()
            self.problem = f"{config.backend} unavailable ({exc}): recording bans only"

    @property
    def enforced(self) -> bool:
        return self.firewall.enforcing and not self.problem

    @property
    def why_not_enforced(self) -> str:
        if not self.firewall.enforcing and not self.problem:
            return "dry-run: bans are recorded, not applied ([respond] backend)"
        return self.problem

    def _connected_operators(self) -> list[Allowed]:
        found = []
        for name, address in self.ssh_clients():
            try:
                network = parse_target(address)
            except TargetError:
                continue
            found.append(Allowed(network, f"SSH client of {name} (connected now)"))
        return found

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore the bans still running into the firewall; mark the ones that ran out, and
        leave out the ones that cannot be restored (see :meth:`_leave_out`) so that the
        others are. The engine starts whatever the firewall says: without our table, bans are
        recorded and the status says why."""
        now = self.clock()

        def load(conn: sqlite3.Connection) -> tuple[list[Ban], list[Any]]:
            rows = conn.execute(
                f"SELECT {BAN_COLUMNS} FROM bans WHERE state = 'active' ORDER BY id"
            ).fetchall()
            proposals = conn.execute(
                f"SELECT {BAN_COLUMNS}, bantime, alert FROM bans WHERE state = 'proposed'"
                " ORDER BY id"
            ).fetchall()
            return [Ban(*row) for row in rows], proposals

        bans, proposals = await self.read(load)
        self.proposed = {row[0]: (Ban(*row[:9]), row[9], row[10]) for row in proposals}
        unusable = [(b, why) for b in bans if (why := _unrestorable(b))]
        if unusable:
            await self._leave_out(unusable, "invalid", now)
            left_out = {b.id for b, _ in unusable}
            bans = [b for b in bans if b.id not in left_out]
        over = [b.id for b in bans if b.expires is not None and b.expires <= now]
        if over:
            await self._set_state(over, "expired", "", now)
        self.active = {b.target: b for b in bans if b.id not in over}
        async with self._lock:
            try:
                await self._install(now)
            except FirewallError as exc:
                # The next ban tries again (see ban_many); until then bans are only recorded.
                self.problem = (f"not enforced: {self.firewall.name} could not install our"
                                f" table: {exc}")  # fmt: skip
                log.error("respond: %s", self.problem)
            else:
                self.installed = True
        self.state = "running"
        log.info("respond: %d bans restored, %d had expired; backend %s%s",
                 len(self.active), len(over), self.firewall.name,
                 f" ({self.problem})" if self.problem else "")  # fmt: skip

    async def _install(self, now: float) -> None:
        """Install our table anew with the active bans; the ones the firewall refuses are
        left out (see :meth:`_leave_out`). Call with the lock held."""
        owners = {Element(b.network, b.left(now)): b for b in self.active.values()}
        refused = await self._apply(lambda fw: fw.install(list(owners)))
        left_out = [(owners[r.element], f"the firewall refused it: {r.why}")
                    for r in refused or () if r.element in owners]  # fmt: skip
        if left_out:
            await self._leave_out(left_out, "failed", now)

    async def _leave_out(self, bans: list[tuple[Ban, str]], state: str, now: float) -> None:
        """Stored bans that cannot be in the firewall (an address no firewall can hold, from
        before such addresses were refused, or one the firewall refuses): marked ``state``
        in the store, taken out of the active bans, and each named with why in one log line
        and in the status, so that one of them keeps neither the others out nor the engine
        from starting."""
        for ban, why in bans:
            if self.active.get(ban.target) is ban:
                del self.active[ban.target]
            self.unapplied[ban.id] = why
            log.warning("respond: ban #%d not applied: %s", ban.id, why)
        await self._set_state([b.id for b, _ in bans], state, "", now)

    async def _apply(self, change: Callable[[Firewall], T]) -> T | None:
        """Run a firewall change off the loop; a refusal for want of privilege makes the
        bans recorded-only (and says so, and gives None), any other failure is an error for
        the caller."""
        try:
            done = await asyncio.to_thread(change, self.firewall)
        except FirewallError as exc:
            if not exc.permission:
                raise
            self.problem = (
                f"not enforced: {self.firewall.name} needs CAP_NET_ADMIN (run the engine as"
                f" root or grant it the capability): {exc}"
            )
            log.warning("respond: %s", self.problem)
            return None
        if self.problem.startswith("not enforced"):
            self.problem = ""
        return done

    async def tick(self) -> None:
        """Mark bans whose time ran out; install our table again if it is gone."""
        now = self.clock()
        over = [b for b in self.active.values() if b.expires is not None and b.expires <= now]
        if over:
            for ban in over:
                del self.active[ban.target]
            await self._set_state([b.id for b in over], "expired", "", now)
            async with self._lock:
                # The kernel expires its elements itself; a backend that cannot is told.
                await self._apply(lambda fw: fw.change([], [b.network for b in over]))
            for ban in over:
                self._publish("expired", ban)
        if self.firewall.enforcing and not self.problem and self.installed:
            counts = await asyncio.to_thread(self.firewall.observe)
            if counts is None:
                async with self._lock:
                    if not self.installed:  # flushed on purpose while we looked
                        return
                    await self._install(self.clock())
                self.reapplied += 1
                log.warning("respond: our firewall table was gone (flushed?): installed again "
                            "with %d bans", len(self.active))  # fmt: skip
                if self.bus.wants("bans"):
                    self.bus.publish("bans", {"event": "reapplied", "bans": len(self.active)})
            else:
                self.counts = counts

    # -- bans ---------------------------------------------------------------------------------

    async def ban(self, target: str, **options: Any) -> dict[str, Any]:
        """Ban one address or network (see :meth:`ban_many`)."""
        return (await self.ban_many([target], **options))[0]

    async def ban_many(self, targets: list[str], *, duration: float | None = None,
                       permanent: bool = False, reason: str = "", source: str = "operator",
                       by: str = "", protect: str = "",
                       local_ok: bool = False) -> list[dict[str, Any]]:  # fmt: skip
        """Ban addresses or networks as one decision: every one is checked first, and if any
        is refused none is made; then one store transaction and one firewall change.
        ``protect``: the requesting operator's own SSH client address; ``local_ok``: the
        requester confirmed banning a device of the inventory."""
        _check_request(targets, duration, permanent, [reason, source, by, protect])
        networks = [self._parse(t) for t in targets]
        if not networks:
            raise BadArgument("no address given")
        keys = [shown_target(n) for n in networks]
        if len(set(keys)) != len(keys):
            raise BadArgument("an address is given twice")
        for network in networks:
            if protect and _holds(network, protect):
                raise Refused(
                    f"{shown_target(network)} would lock you out: your SSH session comes from"
                    f" {protect}; nothing was written to the firewall"
                )
        if not local_ok:
            for key in keys:
                device = self.device_at(key)
                if device:
                    raise Refused(
                        f"{key} is {device}, {DEVICE_REFUSAL}: confirm that you mean"
                        " to ban it (local_ok, iotsec ban --local-ok); nothing was written to"
                        " the firewall"
                    )
        entries = await asyncio.to_thread(self.allowlist.entries)
        for network in networks:
            refusal = self.allowlist.refusal(network, entries)
            if refusal:
                raise Refused(f"refused: {refusal}; nothing was written to the firewall")
        async with self._lock:
            replaced = self._replaced(networks, keys)
            now = self.clock()
            previous = await self.read(lambda conn: _previous(conn, keys))
            rows = []
            for key in keys:
                if permanent:
                    expires = None
                else:
                    config = self.config
                    base = duration if duration is not None else config.bantime
                    if duration is None and config.increment:
                        base = bantime(base, previous.get(key, 0), config.factor, config.maxtime)
                    expires = now + base
                rows.append((key, reason or "banned by an operator", source, now, expires, by,
                             previous.get(key, 0)))  # fmt: skip
            gone = [b.id for b in replaced]
            ids = await self.writer.run(lambda conn: _insert(conn, rows, gone))
            bans = [Ban(i, *row) for i, row in zip(ids, rows, strict=True)]
            add = [Element(n, b.left(now)) for n, b in zip(networks, bans, strict=True)]
            try:
                if not self.installed:  # the first ban since a flush brings our table back
                    await self._install(now)
                    self.installed = True
                await self._apply(lambda fw: fw.change(add, [b.network for b in replaced]))
            except FirewallError as exc:
                await self._set_state(ids, "failed", by, now)
                raise FirewallFailed(f"the firewall refused the ban: {exc}") from None
            for old in replaced:
                del self.active[old.target]
            for ban in bans:
                self.active[ban.target] = ban
        for ban in bans:
            self._publish("banned", ban)
        extra = {"enforced": self.enforced, "backend": self.firewall.name,
                 "problem": self.why_not_enforced}  # fmt: skip
        return [{**ban.record(now), **extra,
                 "replaced": [b.id for b in replaced if ban.network.supernet_of(b.network)
                              and ban.network.version == b.network.version]}
                for ban in bans]  # fmt: skip

    async def preview(self, target: str) -> dict[str, Any]:
        """How long a ban of ``target`` at the configured bantime would last, and why: the
        bantime, multiplied by ``factor`` for each of its ``previous`` bans, up to ``maxtime``."""
        key = shown_target(self._parse(target))
        previous = (await self.read(lambda conn: _previous(conn, [key]))).get(key, 0)
        config = self.config
        base, factor = float(config.bantime), config.factor if config.increment else 1.0
        return {
            "address": key,
            "bantime": bantime(base, previous, factor, float(config.maxtime)),
            "base": base,
            "previous": previous,
            "factor": factor,
            "maxtime": float(config.maxtime),
        }

    def _replaced(self, networks: list[Network], keys: list[str]) -> list[Ban]:
        """The active bans the new ones take the place of (the same target, or inside a new
        network); Exists when a new one is inside an active network ban."""
        active = self.active
        wide = [b for b in active.values() if b.network.num_addresses > 1]
        replaced: dict[int, Ban] = {}
        for network, key in zip(networks, keys, strict=True):
            for ban in wide:
                if (ban.target != key and ban.network.version == network.version
                        and ban.network.supernet_of(network)):  # fmt: skip
                    raise Exists(
                        f"{key} is already banned: it is in {ban.target} (ban #{ban.id},"
                        f" {_duration(ban.left(self.clock()))} left)"
                    )
            if network.num_addresses == 1:
                if key in active:
                    replaced[active[key].id] = active[key]
                continue
            for ban in active.values():
                if ban.network.version == network.version and network.supernet_of(ban.network):
                    replaced[ban.id] = ban
        return list(replaced.values())

    # -- the policy ---------------------------------------------------------------------------

    def device_at(self, address: str) -> str:
        """The inventory's device at ``address`` (one address, not a network), named for a
        message; empty when it is none of them."""
        device = self.devices.find(address) if self.devices is not None else None
        if device is None:
            return ""
        name = f"device {device.ip or address}"
        what = device.hostname or device.vendor or device.kind
        if what:
            name += f" ({what})"
        return f"{name}, MAC {device.mac}" if device.mac else name

    def consider(self, event: AlertEvent, alert_id: int | None = None) -> None:
        """An alert was raised: ban (or propose to ban) its attacker if the policy says so. A
        device of the inventory only with [respond] ban_devices."""
        rule = decide(self.config.policy, event)
        attacker, _target = event.sides()
        if rule is None or not attacker:
            return
        try:
            key = shown_target(parse_target(attacker))
        except TargetError:
            return
        pending = {b.target for b, _, _ in self.proposed.values()}
        if key in self.active or key in pending or key in self._deciding:
            return
        self._deciding.add(key)
        source = f"rule:{event.rule}" if event.source == "rules" else f"{event.source}:{event.rule}"
        reason = f"alert #{alert_id}: {event.title}" if alert_id else event.title
        task = asyncio.get_running_loop().create_task(
            self._respond(key, ban_length(rule), rule.confirm, reason, source, alert_id)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respond(self, key: str, length: float | None, confirm: bool, reason: str,
                       source: str, alert_id: int | None) -> None:  # fmt: skip
        try:
            # Asked here, not in consider: the inventory learns of the packets' hosts after
            # detection has seen them.
            device = "" if self.config.ban_devices else self.device_at(key)
            if device:
                raise Refused(f"{key} is {device}, {DEVICE_REFUSAL}, and [respond] ban_devices"
                              " is off")  # fmt: skip
            if confirm:
                await self.propose(key, length, reason, source, alert_id)
            else:
                await self.ban(key, **_length(length), reason=reason, source=source,
                               by="policy", local_ok=self.config.ban_devices)  # fmt: skip
        except EngineError as exc:
            self.refused += 1
            log.warning("respond: policy ban of %s not made: %s", key, exc)
            if self.bus.wants("bans"):
                self.bus.publish("bans", {"event": "refused", "address": key, "reason": str(exc)})
        finally:
            self._deciding.discard(key)

    async def propose(self, target: str, length: float | None, reason: str, source: str,
                      alert_id: int | None) -> dict[str, Any]:  # fmt: skip
        """Record a ban for an operator to confirm (or reject); nothing reaches the firewall."""
        network = self._parse(target)
        refusal = await asyncio.to_thread(self.allowlist.refusal, network)
        if refusal:
            raise Refused(f"refused: {refusal}")
        key = shown_target(network)
        now = self.clock()
        previous = (await self.read(lambda conn: _previous(conn, [key]))).get(key, 0)

        def insert(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO bans (address, reason, source, created, expires, created_by,"
                " previous, state, bantime, alert) VALUES (?, ?, ?, ?, NULL, 'policy', ?,"
                " 'proposed', ?, ?)",
                (key, reason, source, now, previous, length, alert_id),
            )
            return int(cursor.lastrowid or 0)

        proposal_id = await self.writer.run(insert)
        ban = Ban(proposal_id, key, reason, source, now, None, "policy", previous, "proposed")
        self.proposed[proposal_id] = (ban, length, alert_id)
        record = self._proposal_record(proposal_id)
        if self.bus.wants("bans"):
            self.bus.publish("bans", {"event": "proposed", **record})
        return record

    async def confirm(self, proposal_id: int, by: str = "") -> dict[str, Any]:
        """An operator confirms a proposed ban: it is made now (the allow-list is asked again)."""
        _check_id(proposal_id)
        if proposal_id not in self.proposed:
            raise NotFound(f"no proposed ban {proposal_id}")
        ban, length, _alert = self.proposed[proposal_id]
        result = await self.ban(ban.target, **_length(length), reason=ban.reason,
                                source=ban.source, by=by,
                                local_ok=self.config.ban_devices)  # fmt: skip
        self.proposed.pop(proposal_id, None)
        await self._set_state([proposal_id], "confirmed", by, self.clock())
        return {**result, "proposal": proposal_id}

    async def reject(self, proposal_id: int, by: str = "") -> dict[str, Any]:
        _check_id(proposal_id)
        if proposal_id not in self.proposed:
            raise NotFound(f"no proposed ban {proposal_id}")
        ban, _length, _alert = self.proposed.pop(proposal_id)
        await self._set_state([proposal_id], "rejected", by, self.clock())
        self._publish("rejected", ban)
        return {"id": proposal_id, "address": ban.target, "state": "rejected"}

    def _proposal_record(self, proposal_id: int) -> dict[str, Any]:
        ban, length, alert_id = self.proposed[proposal_id]
        return {**ban.record(self.clock()), "alert": alert_id,
                "bantime": None if length == PERMANENT else length,
                "permanent": length == PERMANENT}  # fmt: skip

    async def unban(self, target: str, by: str = "") -> dict[str, Any]:
        network = self._parse(target)
        key = shown_target(network)
        async with self._lock:
            ban = self.active.get(key)
            if ban is None:
                inside = [b.target for b in self.active.values()
                          if b.network.version == network.version
                          and b.network.supernet_of(network)]  # fmt: skip
                hint = f"; it is in the ban of {inside[0]}" if inside else ""
                raise NotFound(f"{key} is not banned{hint}")
            await self._apply(lambda fw: fw.change([], [network]))
            del self.active[key]
            await self._set_state([ban.id], "lifted", by, self.clock())
        self._publish("lifted", ban)
        return {**ban.record(self.clock()), "state": "lifted", "lifted_by": by}

    async def flush(self, by: str = "") -> dict[str, Any]:
        """Lift every ban and remove our table from the firewall."""
        async with self._lock:
            lifted = list(self.active.values())
            await self._apply(lambda fw: fw.uninstall())
            self.installed = False
            self.active.clear()
            if lifted:
                await self._set_state([b.id for b in lifted], "lifted", by, self.clock())
        for ban in lifted:
            self._publish("lifted", ban)
        return {"lifted": len(lifted), "backend": self.firewall.name}

    def _parse(self, target: str) -> Network:
        try:
            return parse_target(target)
        except TargetError as exc:
            raise BadArgument(f"{exc}; nothing was written to the firewall") from None

    async def _set_state(self, ids: list[int], state: str, by: str, when: float) -> None:
        def update(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE bans SET state = ?, lifted = ?, lifted_by = ? WHERE id = ?",
                [(state, when, by, ban_id) for ban_id in ids],
            )

        await self.writer.run(update)

    def _publish(self, event: str, ban: Ban) -> None:
        if self.bus.wants("bans"):
            self.bus.publish("bans", {"event": event, **ban.record(self.clock())})

    # -- what the control API shows -----------------------------------------------------------

    def bans(self) -> list[dict[str, Any]]:
        """Active bans, soonest to end first, with the firewall's drop counters."""
        now = self.clock()
        ordered = sorted(self.active.values(),
                         key=lambda b: (b.expires is None, b.expires or 0, b.id))  # fmt: skip
        out = []
        for ban in ordered:
            packets, size = self.counts.get(ban.target, (0, 0))
            out.append({**ban.record(now), "packets": packets, "bytes": size})
        return out

    def proposals(self) -> list[dict[str, Any]]:
        return [self._proposal_record(i) for i in sorted(self.proposed)]

    def status(self) -> dict[str, Any]:
        """The backend's state; ``problem`` says why bans are not enforced, else which stored
        bans were left out of the firewall (all of them in ``unapplied``)."""
        return {
            "state": self.state,
            "backend": self.firewall.name,
            "enforced": self.enforced,
            "problem": self.why_not_enforced or self._unapplied_summary(),
            "active": len(self.active),
            "proposed": len(self.proposed),
            "refused": self.refused,
            "reapplied": self.reapplied,
            "unapplied": [{"id": i, "why": why} for i, why in self.unapplied.items()],
        }  # fmt: skip

    def _unapplied_summary(self) -> str:
        if len(self.unapplied) == 1:
            ((ban_id, why),) = self.unapplied.items()
            return f"ban #{ban_id} not applied: {why}"
        if self.unapplied:
            ids = ", ".join(f"#{i}" for i in list(self.unapplied)[:10])
            more = ", ..." if len(self.unapplied) > 10 else ""
            return f"{len(self.unapplied)} stored bans not applied ({ids}{more}): see unapplied"
        return ""


def _length(length: float | None) -> dict[str, Any]:
    """A policy length (seconds, PERMANENT, or None for the configured bantime) as the
    options of :meth:`BanManager.ban`."""
    if length == PERMANENT:
        return {"permanent": True}
    return {"duration": length}


def _holds(network: Network, address: str) -> bool:
    try:
        parsed = parse_target(address)
    except TargetError:
        return False
    return parsed.version == network.version and network.overlaps(parsed)


def _unrestorable(ban: Ban) -> str | None:
    """Why a stored active ban cannot go into the firewall, or None."""
    try:
        parse_target(ban.target)
    except TargetError as exc:
        return f"its address cannot be banned: {exc}"
    end = ban.expires
    if end is not None and (isinstance(end, bool) or not isinstance(end, int | float)
                            or not math.isfinite(end)):  # fmt: skip
        return f"its end ({end!r}) is not a time"
    return None


def _check_request(targets: object, duration: object, permanent: object,
                   texts: list[object]) -> None:  # fmt: skip
    """What a ban request holds besides its addresses, checked here whatever the caller did:
    a firewall timeout is written only from a finite number of seconds."""
    if not isinstance(targets, list | tuple):
        raise BadArgument("the addresses must be a list")
    if not isinstance(permanent, bool):
        raise BadArgument(f"permanent must be true or false, not {type(permanent).__name__}")
    if duration is not None:
        if permanent:
            raise BadArgument("a ban is for a duration or permanent, not both")
        if (isinstance(duration, bool) or not isinstance(duration, int | float)
                or not math.isfinite(duration) or not 0 < duration <= MAX_SECONDS):  # fmt: skip
            raise BadArgument("for: a duration must be longer than zero and at most 100 years")
    if not all(isinstance(text, str) for text in texts):
        raise BadArgument("reason, source and who must be text")


def _check_id(proposal_id: object) -> None:
    if isinstance(proposal_id, bool) or not isinstance(proposal_id, int):
        raise BadArgument(f"a proposal id is a number, not {type(proposal_id).__name__}")


CHUNK = 500  # addresses per query


def _previous(conn: sqlite3.Connection, targets: list[str]) -> dict[str, int]:
    """How many times each target was banned before (proposals that were never made aside)."""
    counts: dict[str, int] = {}
    for start in range(0, len(targets), CHUNK):
        chunk = targets[start : start + CHUNK]
        marks = ", ".join("?" * len(chunk))
        counts.update(conn.execute(
            f"SELECT address, count(*) FROM bans WHERE address IN ({marks}) AND state IN"
            " ('active', 'expired', 'lifted', 'replaced') GROUP BY address",
            chunk,
        ).fetchall())  # fmt: skip
    return counts


def _insert(
    conn: sqlite3.Connection, rows: list[tuple[Any, ...]], replaced: list[int]
) -> list[int]:
    ids = []
    for row in rows:
        cursor = conn.execute(
            "INSERT INTO bans (address, reason, source, created, expires, created_by, previous)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        ids.append(int(cursor.lastrowid or 0))
    if replaced:
        conn.executemany(
            "UPDATE bans SET state = 'replaced', lifted = ? WHERE id = ?",
            [(rows[0][3], ban_id) for ban_id in replaced],
        )
    return ids
