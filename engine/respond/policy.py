"""The response policy: which alerts ban their source, for how long, and whether an operator
confirms first ([[respond.policy]] in the config; the first entry that holds decides)."""

from __future__ import annotations

from engine.config import DEFAULT_POLICY, PolicyRule
from engine.durations import parse_duration
from engine.model import AlertEvent, Severity

PERMANENT = -1.0  # a proposal's stored bantime for a ban until lifted


def decide(rules: tuple[PolicyRule, ...], event: AlertEvent) -> PolicyRule | None:
    """The policy entry for ``event`` (None: no ban, or an entry that says to ignore it)."""
    for rule in rules or DEFAULT_POLICY:
        if _holds(rule, event):
            return None if rule.ignore else rule
    return None


def _holds(rule: PolicyRule, event: AlertEvent) -> bool:
    evidence = event.evidence or {}
    from_rules = event.source == "rules"
    if rule.sids and not (from_rules and _sid(event.rule) in rule.sids):
        return False
    if rule.classtypes and evidence.get("classtype") not in rule.classtypes:
        return False
    # A rule's action, or "drop" from a jail that bans.
    if rule.actions and evidence.get("action") not in rule.actions:
        return False
    if rule.jails and not (event.source == "logwatch" and event.rule in rule.jails):
        return False
    return not (rule.severity and event.severity < Severity.parse(rule.severity))


def _sid(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def ban_length(rule: PolicyRule) -> float | None:
    """The entry's bantime in seconds, PERMANENT, or None for the configured default."""
    if not rule.bantime:
        return None
    if rule.bantime == "permanent":
        return PERMANENT
    return parse_duration(rule.bantime)
