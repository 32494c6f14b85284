"""From rule files to a running detector: parse (with the config's variables), compile into a
RuleSet with each rule's severity, and report the rules that did not load."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.config import DetectConfig
from engine.detect.classification import severity_of
from engine.detect.detector import Detector, RuleSet
from engine.detect.parser import configured_rule_files, load_rules
from engine.detect.rules import Rejection
from engine.detect.variables import load_variables


def load_ruleset(
    paths: Iterable[str], variables: Mapping[str, str]
) -> tuple[RuleSet, list[Rejection]]:
    """The compiled rules of ``paths``; ConfigError when a variable does not parse."""
    rules, rejected = load_rules(list(paths), load_variables(variables))
    return RuleSet(rules, severity_of), rejected


def load_detector(
    paths: Iterable[str],
    variables: Mapping[str, str],
    stream_depth: int = 65536,
    pcre_timeout: float = DetectConfig.pcre_timeout,
) -> tuple[Detector, list[Rejection]]:
    ruleset, rejected = load_ruleset(paths, variables)
    return Detector(ruleset, stream_depth, pcre_timeout), rejected


def configured_detector(detect: DetectConfig) -> tuple[Detector, list[Rejection]]:
    """The detector the config asks for (its rule files, else the shipped pack)."""
    return load_detector(configured_rule_files(detect), detect.vars, detect.stream_depth,
                         detect.pcre_timeout)  # fmt: skip
