"""The control commands as the daemon registers them: each one says what it does and the least
role it needs, a command that changes state needs an operator, and every call of one lands in
the audit log, whether it succeeds or fails."""

from __future__ import annotations

from pathlib import Path

from engine.config import Config
from engine.control.protocol import ControlError
from engine.control.registry import Registry
from engine.control.server import ControlServer
from engine.daemon import Engine, register_commands
from engine.model import Role
from tests.conftest import start_engine


def declared() -> Registry:
    """The registry the daemon builds, from an engine that is not started: only what the
    commands declare is read here, their handlers are never called."""
    engine = Engine(Config())
    server = ControlServer(engine, engine.config.control)
    register_commands(server.registry, engine)
    return server.registry


COMMANDS = declared().commands


def test_every_command_says_what_it_does_and_who_may_use_it() -> None:
    assert len(COMMANDS) >= 60, sorted(COMMANDS)
    for command in declared():
        assert command.help, f"{command.name} has no help"
        assert isinstance(command.role, Role), command.name


def test_every_state_changing_command_needs_an_operator() -> None:
    changing = [c for c in declared() if c.changes_state]
    assert {"alerts.ack", "bans.ban", "capture.start", "serial.open"} <= {c.name for c in changing}
    weak = [c.name for c in changing if c.role < Role.OPERATOR]
    assert not weak, f"a viewer may change state with {weak}"


def test_every_state_changing_command_is_audited(tmp_path: Path) -> None:
    # Dry-run bans and no scan scope: each call below is refused by its part or changes nothing
    # outside the engine (capture.stop, rules.reload, bans.flush).
    engine = start_engine(tmp_path, '[respond]\nbackend = "dry-run"\n[scan]\nscope = []\n')
    changing = sorted(c.name for c in declared() if c.changes_state)
    try:
        with engine.client() as client:
            assert client.hello["commands"] == sorted(COMMANDS)
            outcomes = {}
            for name in changing:
                try:
                    client.request(name, {})
                    outcomes[name] = "ok"
                except ControlError as exc:
                    outcomes[name] = exc.code
            rows = client.request("audit.list", {"limit": 1000})
    finally:
        engine.stop()
    audited = {row["command"]: row["result"] for row in rows}
    missing = [name for name in changing if name not in audited]
    assert not missing, f"not audited: {missing}"
    for name in changing:
        expected = "ok" if outcomes[name] == "ok" else "failed: "
        assert audited[name].startswith(expected), (name, outcomes[name], audited[name])
    assert len(rows) == len(changing), "only state-changing commands are audited"
