"""The config file: defaults for every key, clear errors for unknown keys and wrong types."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import Config, ConfigError, load_config, parse_config
from engine.durations import format_duration, parse_duration


def test_no_file_means_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("IOTSEC_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr("engine.paths.SYSTEM_CONFIG", tmp_path / "none.toml")
    config = load_config()
    assert config == Config()
    assert config.alerts.fold_window == 300
    assert config.store.batch_interval == pytest.approx(0.1)


def test_values_and_durations(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[store]\npath = "/x/db.sqlite"\n[store.retention]\nalerts = "30d"\n'
        '[alerts]\nfold_window = "10m"\n[control.roles]\nviewer = ["alice", "@noc"]\n'
        '[console.keymap]\n"alerts.ack" = "A"\n'
    )
    config = load_config(path)
    assert config.store.db_path() == Path("/x/db.sqlite")
    assert config.store.retention.alerts == 30 * 86400
    assert config.alerts.fold_window == 600
    assert config.control.roles.viewer == ("alice", "@noc")
    assert config.console.keymap == {"alerts.ack": "A"}
    assert config.source == path


def test_env_var_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "env.toml"
    path.write_text('[control]\nsocket = "/tmp/x.sock"\n')
    monkeypatch.setenv("IOTSEC_CONFIG", str(path))
    assert str(load_config().control.socket_path()) == "/tmp/x.sock"
    assert str(load_config().with_socket("/tmp/y.sock").control.socket_path()) == "/tmp/y.sock"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[store]\npaht = 'x'\n", "unknown key 'store.paht'"),
        ("[nope]\n", "unknown key 'nope'"),
        ("[store]\nbatch_rows = 'many'\n", "store.batch_rows: expected int"),
        ("[alerts]\nfold_window = 'soon'\n", "alerts.fold_window: expected a duration"),
        ("[control.roles]\nadmin = 'root'\n", "control.roles.admin: expected a list of strings"),
        ("[store\n", "not valid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")


def test_parse_config_rejects_bools_as_ints() -> None:
    with pytest.raises(ConfigError, match="expected an integer"):
        parse_config({"store": {"batch_rows": True}})


def test_durations() -> None:
    assert parse_duration("2h") == 7200
    assert parse_duration("1h30m") == 5400
    assert parse_duration(45) == 45
    assert format_duration(5400) == "1h30m"
    for bad in ("", "2x", "h", "-5"):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[alerts]\nnotify_severity = 'urgent'\n", "alerts.notify_severity: expected one of"),
        ("[engine]\nlog_level = 'loud'\n", "engine.log_level: expected one of"),
        ("[store]\nbatch_rows = 0\n", "store.batch_rows: must be at least 1"),
        ("[control]\nqueue_size = 0\n", "control.queue_size: must be at least 1"),
        ("[store.retention]\nprune_interval = 0\n", "prune_interval: must be longer than zero"),
        ("[alerts]\nfold_window = 'inf'\n", "alerts.fold_window: expected a duration"),
    ],
)
def test_values_that_make_no_sense(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_unreadable_candidate_is_skipped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("IOTSEC_CONFIG", raising=False)
    blocked = tmp_path / "blocked"

    def refuse(self: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr("engine.paths.config_candidates", lambda: [blocked / "iotsec.toml"])
    monkeypatch.setattr(Path, "is_file", refuse)
    assert load_config() == Config()
