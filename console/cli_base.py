"""What every ``iotsec`` subcommand shares: the global options (``--config``, ``--socket``), the
engine client (the configured engine, else the lab's when it runs one), JSON output and output
that shows control characters instead of obeying them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from engine.config import Config, ConfigError, load_config
from engine.control.protocol import ControlError
from engine.text import printable

if TYPE_CHECKING:
    from engine.control.client import Client


class Settings:
    """What the global options said, filled in by ``--config``/``--socket`` at any level."""

    def __init__(self) -> None:
        self.config_path: str | None = None
        self.socket: str | None = None
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path).with_socket(self.socket)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._config

    def engine(self) -> tuple[Config, str]:
        """The config to reach the engine with, and what to call that engine: the configured
        socket when an engine answers there (or ``--socket`` named it), else the lab's engine
        when the lab runs one (``sudo make lab`` starts it), else the configured socket."""
        from engine.control.client import answers

        config = self.config
        if self.socket is not None or answers(config.control.socket_path()):
            return config, "engine"
        # Imported only now: the lab's modules are not needed while the engine answers.
        from engine.lab import engine as lab_engine
        from engine.lab.topology import LabError

        try:
            lab_socket = lab_engine.socket_path(config.lab)
        except LabError:
            return config, "engine"  # an unusable [lab] section: no lab to look for
        if answers(lab_socket):
            return config.with_socket(str(lab_socket)), "lab engine"
        return config, "engine"

    def client(self) -> Client:
        # Imported here: the client pulls in asyncio, which commands without an engine
        # (analyze, capture, lab) need not pay for at start-up.
        from engine.control.client import Client

        config, _label = self.engine()
        try:
            return Client(config.control.socket_path())
        except ControlError as exc:
            raise click.ClickException(str(exc)) from None


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None:
            setattr(ctx.ensure_object(Settings), name, value)
        return value

    return callback


def global_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--config`` and ``--socket``, accepted before or after the subcommand's name."""
    fn = click.option(
        "--socket",
        metavar="PATH",
        expose_value=False,
        callback=_remember("socket"),
        help="Control socket of the engine (default: [control] socket in the config).",
    )(fn)
    return click.option(
        "--config",
        metavar="FILE",
        expose_value=False,
        callback=_remember("config_path"),
        help="Config file (default: $IOTSEC_CONFIG, ~/.config/iotsec/iotsec.toml, /etc/iotsec).",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


def call(cmd: str, args: dict[str, Any] | None = None) -> Any:
    """One request to the engine; a refusal becomes a clear error and exit status 1."""
    settings = click.get_current_context().ensure_object(Settings)
    with settings.client() as client:
        try:
            return client.request(cmd, args)
        except ControlError as exc:
            raise click.ClickException(str(exc)) from None


def emit_json(data: Any) -> None:
    # json.dumps escapes control characters itself, so this output is safe as it is.
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def echo(text: object) -> None:
    """Print text that carries values from the engine: control characters shown, not obeyed."""
    click.echo("\n".join(printable(line) for line in str(text).split("\n")))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option("0.1.0", prog_name="iotsec")
@click.pass_context
def main(ctx: click.Context) -> None:
    """iotsec: a terminal operations console for IoT security."""
    ctx.ensure_object(Settings)
    if os.environ.get("NO_COLOR") is not None:  # set, even empty, means no colour (no-color.org)
        ctx.color = False
