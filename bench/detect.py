"""Rule engine rate: `iotsec analyze` with 1, 50 and all accepted rules, against Suricata.

On the Traffic bench's mixed IoT capture (bench/traffic_offline.py writes it; 200,000 packets by
default), times `iotsec analyze FILE --json` in its own child process, wall time (the median of
--runs, the configurations taking turns) and the child's peak RSS: with --no-rules as a
baseline, with one of our rules, with 50 rules (ours first, then ET Open) and with all of them:
every rule of the ET Open files in tests/data/rules (emerging-scan, emerging-telnet) plus ours
(rules/packet/iot.rules). Only rules the engine accepts are counted; each set is a temporary
rule file holding exactly those rules. Where suricata is on the PATH it reads the same capture
with all the rules, and the time ratio is printed.
Targets: >= 150,000 packets/s with all rules, <= 1.5x the 1-rule time with all rules.

Run: .venv/bin/python bench/detect.py [--packets 200000] [--pcap FILE] [--runs 3]
     [--rules-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.traffic_offline import generate, measure
from engine.detect.options import ENCODING
from engine.detect.parser import load_rules
from engine.detect.rules import Rule
from engine.detect.variables import load_variables
from tests.conftest import DATA, ROOT

TARGET_RATE, TARGET_SLOWDOWN = 150_000, 1.5
OURS = ROOT / "rules" / "packet" / "iot.rules"
ET_FILES = ("emerging-scan.rules", "emerging-telnet.rules")
SOME = 50


def accepted_rules(rules_dir: Path) -> tuple[list[Rule], list[Rule]]:
    """Our pack's rules and the ET Open files' rules that the engine accepts, in file order."""
    et_files = [rules_dir / name for name in ET_FILES]
    missing = [str(path) for path in (OURS, *et_files) if not path.is_file()]
    if missing:
        sys.exit(f"rule files missing: {', '.join(missing)} (see --rules-dir)")
    rules, rejected = load_rules([OURS, *et_files], load_variables({}))
    ours = [rule for rule in rules if rule.file == str(OURS)]
    et = [rule for rule in rules if rule.file != str(OURS)]
    print(f"rules accepted: {len(ours)} of ours, {len(et)} ET Open; {len(rejected)} rejected")
    return ours, et


def write_rules(path: Path, rules: list[Rule]) -> Path:
    """A rule file of exactly ``rules``, each as the parser read it (continued lines joined)."""
    path.write_text("".join(rule.text + "\n" for rule in rules), *ENCODING)
    return path


@dataclass(frozen=True)
class Timed:
    """One configuration's runs of `iotsec analyze`: median wall time, highest peak RSS."""

    name: str
    rules: int
    seconds: float
    peak_rss_mb: float
    packets: int
    alerts: int


def time_analyze(configs: list[tuple[str, int, list[str]]], runs: int) -> list[Timed]:
    """Each (name, rules, argv) timed ``runs`` times, the configurations taking turns (one run
    of each, then the next round), so a slow spell of the machine falls on all of them alike
    rather than on whichever ran then; the ratios are what the targets judge."""
    done: dict[str, list[Any]] = {name: [] for name, _, _ in configs}
    for _ in range(runs):
        for name, _, argv in configs:
            done[name].append(measure(argv))
    timed = []
    for name, rules, _ in configs:
        report = json.loads(done[name][-1].stdout)
        alerts = len(report.get("alerts", [])) + report.get("alerts_dropped", 0)
        seconds = statistics.median(run.seconds for run in done[name])
        peak = max(run.peak_rss_mb for run in done[name])
        timed.append(Timed(name, rules, seconds, peak, report["packets"], alerts))
    return timed


def time_suricata(suricata: str, pcap: Path, rules: Path, logs: Path, packets: int) -> float | None:
    """Suricata's wall time over the capture with ``rules``, or None if it failed."""
    logs.mkdir()
    argv = [suricata, "-r", str(pcap), "-S", str(rules), "-l", str(logs), "-k", "none",
            "--runmode", "single"]  # fmt: skip
    try:
        run = measure(argv)
    except SystemExit as exc:
        # measure() exits when the child fails; a Suricata without a usable config should not
        # cost the table above, only this comparison.
        print(f"suricata: failed, comparison skipped: {exc}")
        return None
    print(f"suricata -r with all rules: {run.seconds:.2f} s, {packets / run.seconds:,.0f} "
          f"packets/s, peak RSS {run.peak_rss_mb:.0f} MB")  # fmt: skip
    return run.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--pcap", type=Path, help="use this capture instead of generating one")
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration (median)")
    parser.add_argument("--rules-dir", type=Path, default=DATA / "rules",
                        help="where the ET Open rule files are")  # fmt: skip
    args = parser.parse_args()
    ours, et = accepted_rules(args.rules_dir)
    iotsec = str(Path(sys.executable).with_name("iotsec"))
    with tempfile.TemporaryDirectory(prefix="iotsec-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.pcap is None:
            pcap = tmp / "mixed.pcap"
            made = generate(pcap, args.packets)
            print(f"generated {made.packets:,} packets, {made.flows:,} flows, "
                  f"{made.size / 1e6:.1f} MB in {made.seconds:.1f} s")  # fmt: skip
        else:
            pcap = args.pcap
        # An empty config: the child's variables are the defaults, as in accepted_rules().
        config = tmp / "iotsec.toml"
        config.touch()
        analyze = [iotsec, "--config", str(config), "analyze", str(pcap), "--json"]
        sets = {"1 rule": ours[:1], f"{SOME} rules": (ours + et)[:SOME], "all rules": ours + et}
        files = {name: write_rules(tmp / f"set{i}.rules", rules)
                 for i, (name, rules) in enumerate(sets.items())}  # fmt: skip
        configs = [("no rules", 0, [*analyze, "--no-rules"])] + [
            (name, len(rules), [*analyze, "--rules", str(files[name])])
            for name, rules in sets.items()
        ]
        results = time_analyze(configs, args.runs)
        one, every = results[1], results[-1]
        print(f"{'config':<10} {'rules':>6} {'wall s':>7} {'packets/s':>11} {'alerts':>7} "
              f"{'vs 1 rule':>9} {'peak RSS MB':>12}")  # fmt: skip
        for timed in results:
            print(f"{timed.name:<10} {timed.rules:>6} {timed.seconds:>7.2f} "
                  f"{timed.packets / timed.seconds:>11,.0f} {timed.alerts:>7,} "
                  f"{timed.seconds / one.seconds:>8.2f}x {timed.peak_rss_mb:>12.0f}")  # fmt: skip
        rate, slowdown = every.packets / every.seconds, every.seconds / one.seconds
        checks = (
            (f">= {TARGET_RATE:,} packets/s with all rules", rate >= TARGET_RATE,
             f"{rate:,.0f}"),
            (f"<= {TARGET_SLOWDOWN:g}x slowdown from 1 rule to all", slowdown <= TARGET_SLOWDOWN,
             f"{slowdown:.2f}x"),
        )  # fmt: skip
        for target, met, value in checks:
            print(f"target {target}: {'PASS' if met else 'FAIL'} ({value})")
        print(f"verdict: {'PASS' if all(met for _, met, _ in checks) else 'FAIL'}")
        suricata = shutil.which("suricata")
        if suricata is None:
            print("suricata: not on PATH, skipped")
            return
        theirs = time_suricata(suricata, pcap, files["all rules"], tmp / "suricata", every.packets)
        if theirs is not None:
            print(f"ours/suricata time with all rules: {every.seconds / theirs:.2f}x")


if __name__ == "__main__":
    main()
