"""Why the console is turned away, in words a user can act on: the socket's permissions (and
which group to join), and an engine that speaks another protocol version."""

from __future__ import annotations

import grp
import os
from pathlib import Path

from console_helpers import console_for, wait_until

import console.engine_link
from console.widgets.link_notice import LinkNotice
from console.widgets.status_bar import StatusBar
from engine.control.client import _no_engine
from tests.conftest import start_engine


def test_permission_denied_on_the_socket_names_its_group_and_is_not_retried_quickly(tmp_path):
    socket = tmp_path / "control.sock"
    socket.touch()
    nogroup = grp.getgrnam("nogroup")
    os.chown(socket, -1, nogroup.gr_gid)
    error = _no_engine(socket, PermissionError(13, "Permission denied"))
    assert error.code == "denied"  # a refusal: no private engine, no fast retry
    assert str(error) == (
        f"{socket}: permission denied; join the group nogroup (an admin runs: usermod -aG"
        " nogroup USER), or run as the engine's user"
    )
    assert error.code in console.engine_link.REFUSALS


def test_permission_denied_on_the_way_to_the_socket_says_whom_to_ask(tmp_path):
    socket = tmp_path / "closed" / "control.sock"  # as when a directory on the way is closed
    error = _no_engine(socket, PermissionError(13, "Permission denied"))
    assert str(error) == (
        f"{socket}: permission denied; ask an admin for access to {socket.parent}, or run as"
        " the engine's user"
    )


def test_no_engine_is_not_a_refusal(tmp_path):
    error = _no_engine(tmp_path / "control.sock", FileNotFoundError(2, "No such file"))
    assert error.code == "unreachable"


async def test_an_engine_of_another_protocol_version_is_shown_as_a_refusal(
    tmp_path: Path, monkeypatch
):
    engine = start_engine(tmp_path)
    try:
        monkeypatch.setattr(console.engine_link, "PROTOCOL_VERSION", 99)
        app = console_for(engine.config)
        async with app.run_test(size=(100, 24)) as pilot:
            await wait_until(pilot, lambda: app.link.state.phase == "refused", "the refusal")
            assert app.link.state.message == (
                f"the engine at {engine.socket} speaks control protocol 1, this console 99:"
                " run the same iotsec version for both"
            )
            assert str(app.query_one(StatusBar).render()).startswith("✕ refused: the engine at")
            notice = app.query_one(LinkNotice)
            assert notice.display and "speaks control protocol 1" in str(notice.render())
            assert app.link.private is None
    finally:
        engine.stop()
