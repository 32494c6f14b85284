"""The engine is headless: importing all of it never pulls in the console or Textual; and the
console's start-up path never imports scapy (it costs a second before the first frame).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE_ENGINE = """
import importlib, json, pkgutil, sys
import engine
names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(sys.modules)}))
"""

PROBE_CONSOLE = """
import json, sys
import console.cli, console.app
print(json.dumps(sorted(sys.modules)))
"""


def run(code: str):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_engine_never_imports_console_or_textual() -> None:
    result = run(PROBE_ENGINE)
    assert len(result["modules"]) >= 15, result["modules"]
    assert "engine.daemon" in result["modules"] and "engine.control.server" in result["modules"]
    offenders = [m for m in result["loaded"] if m.split(".")[0] in ("textual", "console")]
    assert not offenders, f"engine imported {offenders}"


def test_console_start_up_does_not_import_scapy() -> None:
    loaded = run(PROBE_CONSOLE)
    assert "textual" in loaded
    assert not [m for m in loaded if m.split(".")[0] == "scapy"]


def _imports(tree: ast.AST) -> set[str]:
    """Every module a file imports (``from a import b`` counts as a and as a.b)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_control_server_knows_the_wire_protocol() -> None:
    """The parts raise their own errors (engine.errors); only engine/control/ speaks the
    protocol and its error codes."""
    engine = ROOT / "engine"
    offenders = []
    for path in sorted(engine.rglob("*.py")):
        if path.is_relative_to(engine / "control"):
            continue
        if "engine.control.protocol" in _imports(ast.parse(path.read_text(), str(path))):
            offenders.append(str(path.relative_to(ROOT)))
    assert len(list(engine.rglob("*.py"))) >= 100
    assert not offenders, f"these import engine.control.protocol: {offenders}"
