"""The detect part of the engine: the configured rule files compiled and run on live traffic,
their matches raised as alerts, hot reload (``rules.reload``, SIGHUP), and sids an operator
disables or enables again (kept in the store across restarts).

A reload parses and compiles off the loop, then swaps the detector's rule set in one
assignment: a packet is inspected by the old set or the new one, never by a mix. A reload that
brings new problems (a config or variable that does not parse, a rule file that cannot be read,
a rule rejected that the running set had accepted) keeps the running set and says why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.config import ConfigError, DetectConfig, load_config
from engine.detect.classification import severity_of
from engine.detect.detector import Detector, Match, RuleSet
from engine.detect.parser import configured_rule_files, load_rules
from engine.detect.rules import Rejection, Rule
from engine.detect.variables import load_variables
from engine.errors import BadRules, NotFound
from engine.shipped import MissingContent

if TYPE_CHECKING:
    from engine.alerts.manager import AlertManager
    from engine.config import Config
    from engine.events import EventBus
    from engine.model import AlertEvent
    from engine.store.writer import Writer

log = logging.getLogger("iotsec.detect")

SAVE_STATE = (
    "INSERT INTO rule_state (sid, enabled, changed, operator) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (sid) DO UPDATE SET enabled = excluded.enabled, changed = excluded.changed,"
    " operator = excluded.operator"
)


@dataclass(frozen=True)
class Loaded:
    """What one load of the rule files produced."""

    config: DetectConfig
    files: list[str]
    rules: list[Rule]
    rejections: list[Rejection]


class ReloadError(Exception):
    """A reload that would make things worse; the running rules stay."""


def load(config: DetectConfig) -> Loaded:
    """Parse the rule files ``config`` names (ConfigError when a variable does not parse,
    MissingContent when the shipped pack or classtypes are missing)."""
    files = configured_rule_files(config)
    rules, rejections = load_rules(files, load_variables(config.vars))
    return Loaded(config, files, rules, rejections)


def regressions(old: Loaded, new: Loaded) -> list[str]:
    """The problems ``new`` has that ``old`` did not: files it cannot read, and rules it
    rejects that ``old`` accepted or did not have rejected for the same reason."""
    known = {(r.file, r.sid, r.reason) for r in old.rejections}
    return [str(r) for r in new.rejections
            if r.line == 0 or (r.file, r.sid, r.reason) not in known]  # fmt: skip


class DetectService:
    def __init__(self, config: Config, alerts: AlertManager, writer: Writer, bus: EventBus,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.config = config
        self.alerts = alerts
        self.writer = writer
        self.bus = bus
        self.clock = clock
        self.detector = Detector(RuleSet([], severity_of), config.detect.stream_depth,
                                 config.detect.pcre_timeout)  # fmt: skip
        # Told of every alert the rules raise (the response policy), with the alert's id.
        self.respond: Callable[[AlertEvent, int], None] | None = None
        # Whether a match is our own traffic (a scan of ours): then it raises no alert.
        self.suppress: Callable[[AlertEvent], bool] | None = None
        self.loaded = Loaded(config.detect, [], [], [])
        self.disabled: set[int] = set()
        self.state = "stopped"
        self.loaded_at = 0.0
        self.reload_error = ""
        self.reloads = 0
        self.raised = 0
        self._lock = asyncio.Lock()  # one reload or enable/disable at a time

    # -- loading ------------------------------------------------------------------------------

    async def start(self, disabled: Mapping[int, bool]) -> None:
        """Load the configured rules; a problem is reported in the status, not fatal."""
        self.disabled = {sid for sid, enabled in disabled.items() if not enabled}
        try:
            loaded = await asyncio.to_thread(load, self.config.detect)
        except (ConfigError, MissingContent) as exc:
            self.state, self.reload_error = "error", str(exc)
            log.error("rules not loaded: %s", exc)
            return
        await self._install(loaded)
        self.state = "running"
        for rejection in loaded.rejections[:20]:
            log.warning("rule not loaded: %s", rejection)
        log.info("%d rules loaded from %d files, %d rejected", len(loaded.rules),
                 len(loaded.files), len(loaded.rejections))  # fmt: skip

    async def reload(self) -> dict[str, Any]:
        """Read the config's [detect] section and the rule files again and swap the rules in;
        BadRules (and the running rules stay) when that brings problems."""
        async with self._lock:
            try:
                loaded = await asyncio.to_thread(self._load_again)
            except ReloadError as exc:
                self.reload_error = str(exc)
                log.error("rules reload failed, the running rules stay: %s", exc)
                self._publish()
                raise BadRules(f"reload failed, the running rules stay: {exc}") from None
            await self._install(loaded)
            self.reloads += 1
            self.state, self.reload_error = "running", ""
            log.info("rules reloaded: %d loaded, %d rejected", len(loaded.rules),
                     len(loaded.rejections))  # fmt: skip
            return {**self.status(), "reloaded": True}

    def _load_again(self) -> Loaded:
        source = self.config.source
        try:
            detect = load_config(source).detect if source is not None else self.config.detect
            loaded = load(detect)
        except (ConfigError, MissingContent) as exc:
            raise ReloadError(str(exc)) from None
        problems = regressions(self.loaded, loaded) if self.state == "running" else []
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise ReloadError("; ".join(problems[:3]) + more)
        return loaded

    async def _install(self, loaded: Loaded) -> None:
        disabled = self.disabled
        ruleset = await asyncio.to_thread(
            RuleSet, [r for r in loaded.rules if r.sid not in disabled], severity_of
        )
        self.detector.ruleset = ruleset  # the swap: one assignment
        self.detector.pcre_timeout = loaded.config.pcre_timeout
        self.loaded, self.loaded_at = loaded, self.clock()
        self._publish()

    # -- enabling and disabling sids ----------------------------------------------------------

    async def set_enabled(self, sid: int, enabled: bool, operator: str) -> dict[str, Any]:
        async with self._lock:
            rule = next((r for r in self.loaded.rules if r.sid == sid), None)
            if rule is None:
                raise NotFound(f"no loaded rule has sid {sid}")
            changed = (sid in self.disabled) == enabled
            if enabled:
                self.disabled.discard(sid)
            else:
                self.disabled.add(sid)
            await self.writer.run(
                lambda conn: conn.execute(SAVE_STATE, (sid, int(enabled), self.clock(), operator))
            )
            if changed:
                await self._install(self.loaded)
            return self._rule_view(rule)

    # -- matches to alerts --------------------------------------------------------------------

    def raise_matches(self, matches: list[Match]) -> None:
        """Raise the alerts of rule matches (folded by the alert manager; a full writer drops
        and counts them there)."""
        raise_alert, respond = self.alerts.raise_alert, self.respond
        if self.suppress is not None:
            matches = [m for m in matches if not self.suppress(m.event)]
        for match in matches:
            alert, _ = raise_alert(match.event)
            if respond is not None:
                respond(match.event, alert.id)
        self.raised += len(matches)

    # -- what the control API shows -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        loaded = self.loaded
        per_file: dict[str, dict[str, Any]] = {
            f: {"path": f, "accepted": 0, "rejected": 0} for f in loaded.files
        }
        for rule in loaded.rules:
            per_file.setdefault(rule.file, {"path": rule.file, "accepted": 0, "rejected": 0})
            per_file[rule.file]["accepted"] += 1
        for rejection in loaded.rejections:
            entry = per_file.setdefault(
                rejection.file, {"path": rejection.file, "accepted": 0, "rejected": 0}
            )
            entry["rejected"] += 1
        hits = self.detector.hits
        # Copied at once: the capture threads add sids while the loop reads.
        timeouts = sorted(dict(self.detector.pcre_timeouts).items(), key=lambda t: (-t[1], t[0]))
        return {
            "state": self.state,
            "files": list(per_file.values()),
            "accepted": len(loaded.rules),
            "rejected": [
                {"file": r.file, "line": r.line, "sid": r.sid or None, "reason": r.reason}
                for r in loaded.rejections
            ],
            "disabled": sorted(self.disabled),
            "running": len(self.detector.ruleset),
            "loaded_at": self.loaded_at,
            "reloads": self.reloads,
            "reload_error": self.reload_error,
            "hits": sum(hits.values()),
            "alerts": self.raised,
            # The rules whose pcre ran out of time on some packets (not matching them), most first.
            "pcre_timeouts": [{"sid": sid, "packets": n} for sid, n in timeouts],
        }

    def rules(self, text: str = "", limit: int = 5000) -> dict[str, Any]:
        """The loaded rules (disabled ones too), those whose sid, msg or classtype contain
        ``text``, most hits first."""
        wanted = text.strip().lower()
        rows = [self._rule_view(r) for r in self.loaded.rules
                if not wanted or wanted in f"{r.sid} {r.msg} {r.classtype}".lower()]  # fmt: skip
        rows.sort(key=lambda r: (-r["hits"], r["sid"]))
        return {"rules": rows[:limit], "total": len(rows)}

    def _rule_view(self, rule: Rule) -> dict[str, Any]:
        return {
            "sid": rule.sid, "rev": rule.rev, "msg": rule.msg, "classtype": rule.classtype,
            "severity": severity_of(rule).label, "action": rule.action.value,
            "file": rule.file, "line": rule.line, "enabled": rule.sid not in self.disabled,
            "hits": self.detector.hits.get(rule.sid, 0),
            "pcre_timeouts": self.detector.pcre_timeouts.get(rule.sid, 0),
        }  # fmt: skip

    def _publish(self) -> None:
        if self.bus.wants("rules"):
            self.bus.publish("rules", self.status())


def rule_states(conn: Any) -> dict[int, bool]:
    """The sids an operator enabled or disabled, from the store."""
    return {sid: bool(enabled) for sid, enabled in
            conn.execute("SELECT sid, enabled FROM rule_state")}  # fmt: skip
