"""What an operator may do follows the role the engine gives their connection."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import console_for, inject, pane_title, request, shown_ids, wait_until
from textual.widgets._footer import FooterKey

from console.screens.prompts import NoteScreen
from console.widgets.link_notice import LinkNotice
from console.widgets.status_bar import StatusBar
from tests.conftest import require_root, start_engine

RELAY = Path(__file__).with_name("socket_relay.py")


def _require_root() -> None:
    require_root("a viewer connection needs a second uid, which needs root to set up")


def _others_may_run(program: Path) -> bool:
    """Whether a user with no special rights can execute ``program`` (every directory on the
    way searchable, the file executable, by others)."""
    real = program.resolve()
    return all(p.stat().st_mode & 0o001 for p in [real, *real.parents])


@pytest.fixture
def viewer_socket() -> Iterator[tuple[object, Path]]:
    """A real engine, and a socket through which the engine sees user ``nobody``, a viewer."""
    with _nobody_socket('[control.roles]\nviewer = ["nobody"]\n') as found:
        yield found


@pytest.fixture
def stranger_socket() -> Iterator[tuple[object, Path]]:
    """A real engine, and a socket through which the engine sees user ``nobody``, who has no
    role on it."""
    with _nobody_socket("") as found:
        yield found


@contextlib.contextmanager
def _nobody_socket(extra_config: str) -> Iterator[tuple[object, Path]]:
    """A real engine with ``extra_config``, and a socket through which it sees user ``nobody``.

    The engine treats root and its own uid as admins, and these tests run as root. So a relay
    runs as ``nobody`` and connects to the engine for the console: the engine reads nobody's
    uid from the socket's peer credentials and looks it up in [control.roles]: it says the role
    in its hello, or refuses the connection, exactly as for that user logged in over SSH. The
    console is not told anything else; its permissions come from that answer.
    """
    _require_root()
    nobody = pwd.getpwnam("nobody")
    candidates = [sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")]
    python = next((p for p in candidates if p and _others_may_run(Path(p))), None)
    assert python, f"the relay needs a python3 that user nobody may run; tried {candidates}"
    top = Path(tempfile.mkdtemp(prefix="iotsec-viewer-"))
    relay = None
    engine = None
    try:
        engine_dir = top / "engine"
        engine_dir.mkdir()
        engine = start_engine(engine_dir, extra_config)
        # Let nobody reach the engine's socket (the test's own files, under a private top dir
        # that only root and nobody can use).
        for path in (top, engine_dir, engine.socket.parent):
            path.chmod(0o711)
        engine.socket.chmod(0o666)
        relay_dir = top / "relay"
        relay_dir.mkdir()
        os.chown(relay_dir, nobody.pw_uid, nobody.pw_gid)
        listen = relay_dir / "viewer.sock"
        relay = subprocess.Popen(
            [python, "-c", RELAY.read_text(), str(listen), str(engine.socket)],
            user=nobody.pw_uid,
            group=nobody.pw_gid,
            extra_groups=[],
        )
        deadline = time.monotonic() + 10
        while not listen.exists():
            assert relay.poll() is None, "the relay exited"
            assert time.monotonic() < deadline, "the relay did not start"
            time.sleep(0.05)
        yield engine, listen
    finally:
        if relay is not None:
            relay.terminate()
            relay.wait(10)
        if engine is not None:
            engine.stop()
        shutil.rmtree(top, ignore_errors=True)


async def test_a_viewer_sees_the_workflow_keys_greyed_out_and_cannot_ack(viewer_socket):
    engine, listen = viewer_socket
    alert_id = inject(engine, title="telnet brute force", src="10.0.0.5")
    app = console_for(engine.config, socket=listen)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        assert (app.link.state.operator, app.link.state.role) == ("nobody", "viewer")
        assert "read-only (viewer)" in str(app.query_one(StatusBar).render())

        bindings = app.screen.active_bindings
        for key in ("a", "r", "s"):
            assert bindings[key].enabled is False, f"{key} should be disabled"
            assert bindings[key].binding.show, f"{key} should still be shown"
        await pilot.pause(0.1)
        footer = {k.action: k for k in app.query(FooterKey)}
        for action in ("ack", "resolve", "silence"):
            assert footer[action].has_class("-disabled"), f"{action} should be greyed out"
        assert not footer["filter"].has_class("-disabled")

        await pilot.press("a", "r", "s")
        assert not isinstance(app.screen, NoteScreen)
        assert app.screen is app.screen_stack[0], "no dialog opened"
        names = [name for name, _, _ in app.palette_commands()]
        assert not any("Acknowledge" in n or "Resolve" in n for n in names)
        # The Silences view is theirs to read; making a silence is not.
        assert [n for n in names if "Silence" in n] == [
            "Alerts: Open the Silences view: what is silenced, for how long; extend or end one"
        ]
        assert any("Filter" in n for n in names)

        # Reading is still allowed: filter and details work.
        await pilot.press("slash", *"telnet", "enter")
        assert "filter: telnet" in pane_title(app)
    assert request(engine, "alerts.get", {"id": alert_id})["state"] == "open"


async def test_a_user_without_a_role_is_told_why_and_who_can_grant_one(stranger_socket):
    engine, listen = stranger_socket
    app = console_for(engine.config, socket=listen)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: app.link.state.phase == "refused", "the refusal")
        message = app.link.state.message
        assert message.startswith("user nobody (uid ")
        assert "has no role on this engine; an admin can add them to [control.roles]" in message
        assert str(app.query_one(StatusBar).render()).startswith("✕ refused: user nobody")
        notice = app.query_one(LinkNotice)
        assert notice.display and notice.border_title == "The engine refused this console"
        assert "[control.roles]" in str(notice.render())
        assert app.link.private is None, "no engine of its own for a refused user"
        # Retrying cannot help until an admin acts: the console does not hammer the engine.
        await pilot.pause(2)
        assert request(engine, "status")["control"]["refused"] == 1
