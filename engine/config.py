"""The one TOML config file: every key has a default, unknown keys and wrong types are errors.

Looked up as ``--config``, then ``$IOTSEC_CONFIG``, then the per-user or system file
(see :func:`engine.paths.config_candidates`).

One file, though long: it is the whole schema, each section's keys and defaults with the checks
of their values, so what a key may be is found in one place.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import paths
from engine.durations import parse_duration
from engine.respond.targets import TargetError, parse_target
from engine.serial.settings import LineSettings, SettingsError


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the key."""


class Duration(float):
    """Seconds, written in the file as ``"15m"``, ``"2h"`` or a number."""


@dataclass(frozen=True)
class EngineConfig:
    log_level: str = "info"


@dataclass(frozen=True)
class RetentionConfig:
    alerts: Duration = Duration(90 * 86400)
    flows: Duration = Duration(14 * 86400)
    scans: Duration = Duration(90 * 86400)
    serial_sessions: Duration = Duration(90 * 86400)
    max_alerts: int = 200_000
    prune_interval: Duration = Duration(3600)


@dataclass(frozen=True)
class StoreConfig:
    path: str = ""
    batch_rows: int = 2000
    batch_interval: Duration = Duration(0.1)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    def db_path(self) -> Path:
        return Path(self.path).expanduser() if self.path else paths.default_db_path()


@dataclass(frozen=True)
class RolesConfig:
    admin: tuple[str, ...] = ()
    operator: tuple[str, ...] = ()
    viewer: tuple[str, ...] = ()


@dataclass(frozen=True)
class ControlConfig:
    socket: str = ""
    group: str = "iotsec"
    roles: RolesConfig = field(default_factory=RolesConfig)
    max_clients: int = 64
    # Of max_clients, this many are kept for admins: no crowd of others locks them out.
    admin_reserve: int = 4
    # Connections one user (not an admin) may hold at once.
    max_clients_per_user: int = 16
    # A connection idle this long without having said hello is closed.
    hello_timeout: Duration = Duration(10)
    # Replies waiting for a client that does not read them; past this it is disconnected.
    max_pending_bytes: int = 16 << 20
    queue_size: int = 10_000
    # Events waiting for one subscriber, in bytes as sent; past this they are dropped (counted).
    queue_bytes: int = 8 << 20

    def socket_path(self) -> Path:
        return Path(self.socket).expanduser() if self.socket else paths.default_socket_path()


@dataclass(frozen=True)
class AlertsConfig:
    fold_window: Duration = Duration(300)
    notify_severity: str = "high"


@dataclass(frozen=True)
class CaptureConfig:
    # Interfaces the engine captures on from start-up; empty: start from the console or CLI.
    interfaces: tuple[str, ...] = ()
    bpf: str = ""
    max_flows: int = 100_000
    idle_timeout: Duration = Duration(120)
    active_timeout: Duration = Duration(3600)
    # Recent raw packets kept for drill-down and saving (bytes), and the kernel ring per
    # interface (bytes).
    ring_bytes: int = 32 << 20
    buffer_bytes: int = 32 << 20
    # Write a summary row per ended flow to the store.
    store_flows: bool = True


@dataclass(frozen=True)
class DetectConfig:
    # Packet rule files in Suricata syntax (globs allowed); empty: the shipped pack,
    # rules/packet/*.rules.
    rule_files: tuple[str, ...] = ()
    # Address and port variables ($HOME_NET, $EXTERNAL_NET, $HTTP_PORTS, $MODBUS_CLIENTS, ...):
    # these override and extend the defaults.
    vars: dict[str, str] = field(default_factory=dict)
    # Bytes of each direction of a TCP flow that content rules see, reassembled in order.
    stream_depth: int = 65536
    # How long one rule's pcre searches may take on one packet (Suricata's pcre match-limit,
    # as time): past it the rule does not match there, and the sid's pcre_timeouts count
    # grows. The slowest shipped or ET Open pcre takes under 1 ms on a full 64 KiB stream.
    pcre_timeout: Duration = Duration(0.05)


@dataclass(frozen=True)
class PolicyRule:
    """Which alerts ban their source: every condition given must hold (none given: any
    alert). The first rule of [[respond.policy]] that holds decides."""

    sids: tuple[int, ...] = ()
    classtypes: tuple[str, ...] = ()
    # The rule's action: drop and reject hand the source to this policy (a log jail's alerts
    # are "drop" when the jail has ban = true, else "alert").
    actions: tuple[str, ...] = ()
    # At least this severity.
    severity: str = ""
    # Log jails (their alerts' rule).
    jails: tuple[str, ...] = ()
    # How long; empty: [respond] bantime, longer for repeat offenders. "permanent": until lifted.
    bantime: str = ""
    # Propose the ban and wait for an operator to confirm it (in the console's Bans view).
    confirm: bool = False
    # Do nothing for these alerts (a rule above the others that exempts some).
    ignore: bool = False


# Without [[respond.policy]]: rules whose action is drop or reject ban their source.
DEFAULT_POLICY = (PolicyRule(actions=("drop", "reject")),)


@dataclass(frozen=True)
class RespondConfig:
    # Where bans go: "dry-run" (records what it would do: the default, so that nothing is
    # blocked until you choose), "nftables", "iptables" (iptables + ipset), or "auto"
    # (nftables when nft is installed, else iptables).
    backend: str = "dry-run"
    # fail2ban's bantime, and bantime.increment: each earlier ban of the same address or
    # network multiplies it by `factor`, up to `maxtime`.
    bantime: Duration = Duration(3600)
    increment: bool = True
    factor: float = 2.0
    maxtime: Duration = Duration(7 * 86400)
    # Never banned, besides loopback, this box's addresses and operators' SSH clients.
    ignoreip: tuple[str, ...] = ()
    # How often the firewall is checked for our table (re-applied when it is gone).
    check_interval: Duration = Duration(2)
    # Which alerts ban their attacker ([[respond.policy]] tables); empty: DEFAULT_POLICY.
    policy: tuple[PolicyRule, ...] = ()
    # Whether the policy may ban a device of the inventory: a compromised camera spreading
    # Mirai is a case for it, a PLC is not. Operators can always, after a second confirmation.
    ban_devices: bool = False


@dataclass(frozen=True)
class JailConfig:
    """fail2ban's jail: sources, filters, maxretry failures within findtime, a response."""

    name: str = ""
    # Filters: a shipped one by name (rules/logs/NAME.toml: sshd, dropbear, mosquitto,
    # web-auth, ftp, iotsec-firewall) or a filter file's path.
    filters: tuple[str, ...] = ()
    # The filters' mode, for those that have modes (sshd: normal, ddos, extra, aggressive, as
    # fail2ban's); "" is each filter's default.
    mode: str = ""
    # Sources, any of: log files (globs allowed), syslog messages received by
    # [logwatch.syslog] (the filters' programs pick theirs), and systemd journal matches
    # ("_SYSTEMD_UNIT=ssh.service", "SYSLOG_IDENTIFIER=sshd"; journalctl's syntax).
    files: tuple[str, ...] = ()
    syslog: bool = False
    journal: tuple[str, ...] = ()
    # This many failures from one host within findtime (by the lines' own times) raise an
    # alert of this severity.
    maxretry: int = 5
    findtime: Duration = Duration(600)
    severity: str = "high"
    # The alert asks for a ban (through [[respond.policy]]; by default it bans), or only alerts.
    ban: bool = True
    # A file with no saved position is read from its end (fail2ban's tail), or from its start.
    from_start: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class SyslogConfig:
    # Receive syslog (RFC 3164 and RFC 5424) from devices that can only send that.
    enabled: bool = False
    # Loopback by default; a LAN address to hear devices (they send in the clear).
    address: str = "127.0.0.1"
    port: int = 5514
    udp: bool = True
    tcp: bool = True
    # A longer message is cut there (rsyslog's default $MaxMessageSize); over TCP it is also
    # the most an unfinished message holds of a connection's memory.
    max_message: int = 8192
    # The kernel's UDP receive buffer (bytes; 0: the system's default): room for a burst.
    # Datagrams that find it full are dropped by the kernel, and counted in `iotsec logs`.
    udp_buffer: int = 4 << 20
    # TCP connections at once; one more is closed as soon as it is accepted, and counted.
    max_connections: int = 100
    # A TCP connection that sends nothing for this long is closed (the sender reconnects).
    idle_timeout: Duration = Duration(300)


@dataclass(frozen=True)
class LogwatchConfig:
    # How changes to followed files are noticed: "auto" (inotify, polling where it is not
    # available), "inotify" or "polling".
    watcher: str = "auto"
    # How often files are checked besides inotify's events (and under polling).
    poll_interval: Duration = Duration(1)
    syslog: SyslogConfig = field(default_factory=SyslogConfig)
    # The journal jails read: empty for the system's; a directory of journal files (a
    # device's or container's /var/log/journal) otherwise.
    journal_directory: str = ""
    # Users whose files the engine reads, besides root and its own user (it reads as root,
    # so a file another user owns, or planted, is refused and said). Debian's rsyslog writes
    # root's files (root:adm); Ubuntu's runs as syslog. Add a daemon whose own log a jail
    # reads (mosquitto, www-data).
    owners: tuple[str, ...] = ("syslog",)
    # [[logwatch.jail]] tables.
    jail: tuple[JailConfig, ...] = ()


@dataclass(frozen=True)
class ScheduleConfig:
    """A scan the engine runs by itself every ``interval`` (nmap from cron, without cron)."""

    name: str = ""
    # Addresses, networks or ranges; empty: every network of [scan] scope.
    targets: tuple[str, ...] = ()
    interval: Duration = Duration(86400)
    # quick: the top IoT ports; full: every TCP port; ports: a list such as "22,80,8000-8100".
    profile: str = "quick"
    ports: str = ""
    udp: bool = True
    check_default_creds: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class ScanConfig:
    # The networks scans may touch; a target outside them is refused. Empty: no scans.
    scope: tuple[str, ...] = ()
    # New TCP connects a second per host, and connects in flight at once over all hosts.
    rate: float = 2000.0
    concurrency: int = 512
    # A port's timeout follows the host's round-trip time, between these.
    min_timeout: Duration = Duration(0.1)
    max_timeout: Duration = Duration(1.5)
    # Default-credential checks (only with --check-default-creds): pairs tried at most per
    # service per host, and the pause between two tries.
    creds_max_attempts: int = 10
    creds_delay: Duration = Duration(0.5)
    # Scans running at once in the engine (more are refused until one ends).
    max_running: int = 2
    # [[scan.schedule]] tables.
    schedule: tuple[ScheduleConfig, ...] = ()


@dataclass(frozen=True)
class DevicesConfig:
    # A device not seen (traffic, ARP, announcements, scans) for this long is marked gone.
    gone_after: Duration = Duration(3600)
    # An empty inventory learns the network this long before a new device raises an alert:
    # the devices found then are the network as it was, not news (events are sent for them).
    learning: Duration = Duration(600)
    # Alerts for what changes in the inventory (each is also an event on the devices topic).
    alert_new_device: bool = True
    alert_gone: bool = True
    alert_new_port: bool = True
    alert_findings: bool = True
    # Addresses that traffic shows behind a MAC are the device's own only inside these
    # networks (besides [scan] scope); others are hosts beyond a router. Default: the private,
    # link-local and unique-local ranges.
    local_networks: tuple[str, ...] = (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
        "fe80::/10",
    )


@dataclass(frozen=True)
class SerialConfig(LineSettings):
    """[serial]: a new session's line settings (those of LineSettings: baud, data_bits, parity,
    stop_bits, flow, dtr, rts, map_out, map_in, echo), unless it asks for others, and these."""

    # Where transcripts are written; empty: serial/ next to the database ([store] path), which
    # is <state dir>/serial by default.
    transcript_dir: str = ""
    # Received bytes each session keeps in memory for consoles that attach later.
    scrollback: int = 1 << 20
    max_sessions: int = 8
    # Ports the engine opens when it starts and keeps open (reconnecting after an unplug);
    # clients may open them too, as written here.
    open: tuple[str, ...] = ()
    # Clients may open serial lines (ttyS, ttyUSB, ttyACM, ... and USB adapters) and these:
    # paths or globs of ptys and other terminals, matching the path a client gives (a link,
    # which must lead into /dev) or the device it leads to. Another user's terminal only when
    # listed here, a login terminal never. The default: the lab camera's UART (root's /run).
    allow: tuple[str, ...] = ("/run/iotsec-lab/*/ttyLAB0",)
    # URL schemes clients may open, to addresses inside [scan] scope: rfc2217, socket (never
    # spy, loop, alt or hwgrep, which reach local files and devices).
    urls: tuple[str, ...] = ("rfc2217", "socket")
    # At a login prompt, try the shipped default credentials through the session (opt-in;
    # also on demand with `iotsec serial login`), at most this many pairs.
    check_default_creds: bool = False
    creds_max_attempts: int = 5
    # The console's key in front of serial commands: Ctrl-T as in tio (tmux takes Ctrl-B,
    # screen and minicom Ctrl-A).
    prefix: str = "ctrl+t"
    # Named strings to send, e.g. interrupt = "\u0003" or printenv = "printenv\n" (a newline
    # is sent as map_out says).
    macros: dict[str, str] = field(default_factory=dict)

    def line_settings(self) -> LineSettings:
        return LineSettings(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(LineSettings)}
        )

    def transcripts(self, database: Path) -> Path:
        """The transcripts' directory, for an engine whose database is ``database``."""
        if self.transcript_dir:
            return Path(self.transcript_dir).expanduser()
        return database.parent / "serial"


@dataclass(frozen=True)
class ConsoleConfig:
    keymap: dict[str, str] = field(default_factory=dict)
    max_rows: int = 5000
    refresh: Duration = Duration(0.25)


@dataclass(frozen=True)
class LabConfig:
    # Names and ranges chosen to be unlikely on a real host; `iotsec lab up` refuses if the
    # host already routes either range.
    prefix: str = "iotlab"
    lan: str = "10.253.7.0/24"
    outside: str = "10.253.8.0/24"


@dataclass(frozen=True)
class Config:
    engine: EngineConfig = field(default_factory=EngineConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    respond: RespondConfig = field(default_factory=RespondConfig)
    logwatch: LogwatchConfig = field(default_factory=LogwatchConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    serial: SerialConfig = field(default_factory=SerialConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    lab: LabConfig = field(default_factory=LabConfig)
    source: Path | None = None

    def with_socket(self, socket: str | os.PathLike[str] | None) -> Config:
        """This config with the control socket replaced (``--socket`` wins over the file)."""
        if not socket:
            return self
        control = dataclasses.replace(self.control, socket=str(socket))
        return dataclasses.replace(self, control=control)

    def private(self, directory: Path) -> Config:
        """This config for a console's private engine in ``directory``: its own database,
        socket and transcripts there, bans only recorded (dry-run) and no serial port opened at
        start, so it never takes another engine's database, firewall or ports."""
        return dataclasses.replace(
            self,
            store=dataclasses.replace(self.store, path=str(directory / "iotsec.db")),
            control=dataclasses.replace(self.control, socket=str(directory / "control.sock")),
            respond=dataclasses.replace(self.respond, backend="dry-run"),
            serial=dataclasses.replace(
                self.serial, open=(), transcript_dir=str(directory / "serial")
            ),
        )


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file in effect: ``explicit``, then ``$IOTSEC_CONFIG``, then the defaults."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("IOTSEC_CONFIG")
    if env:
        return Path(env)
    for candidate in paths.config_candidates():
        try:
            if candidate.is_file():
                return candidate
        except OSError:
            continue  # e.g. a home directory this user may not read: not a config
    return None


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Read and check the config in effect; no file at all means every default."""
    path = find_config(explicit)
    if path is None:
        return Config()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    config = parse_config(raw, str(path))
    return dataclasses.replace(config, source=path)


def parse_config(raw: dict[str, Any], where: str = "<config>") -> Config:
    """Build a :class:`Config` from parsed TOML, naming the file and key of the first problem."""
    config = _build(Config, raw, where, "", skip={"source"})
    _check_values(config, where)
    return config


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SEVERITIES = ("info", "low", "medium", "high", "critical")
BACKENDS = ("dry-run", "nftables", "iptables", "auto")
WATCHERS = ("auto", "inotify", "polling")


def _check_values(config: Config, where: str) -> None:
    """Values of the right type that still make no sense (zero batch sizes, unknown levels)."""
    choices = [
        ("engine.log_level", config.engine.log_level, LOG_LEVELS),
        ("alerts.notify_severity", config.alerts.notify_severity, SEVERITIES),
        ("respond.backend", config.respond.backend, BACKENDS),
        ("logwatch.watcher", config.logwatch.watcher, WATCHERS),
    ]
    for key, value, allowed in choices:
        if value.lower() not in allowed:
            raise ConfigError(
                f"{where}: {key}: expected one of {', '.join(allowed)}, got {value!r}"
            )
    minimums = [
        ("store.batch_rows", config.store.batch_rows, 1),
        ("store.retention.max_alerts", config.store.retention.max_alerts, 0),
        ("control.max_clients", config.control.max_clients, 1),
        ("control.admin_reserve", config.control.admin_reserve, 0),
        ("control.max_clients_per_user", config.control.max_clients_per_user, 1),
        ("control.max_pending_bytes", config.control.max_pending_bytes, 1 << 20),
        ("control.queue_size", config.control.queue_size, 1),
        ("control.queue_bytes", config.control.queue_bytes, 1 << 16),
        ("console.max_rows", config.console.max_rows, 1),
        ("capture.max_flows", config.capture.max_flows, 1),
        ("capture.ring_bytes", config.capture.ring_bytes, 0),
        ("capture.buffer_bytes", config.capture.buffer_bytes, 2 << 20),
        ("detect.stream_depth", config.detect.stream_depth, 0),
        ("scan.concurrency", config.scan.concurrency, 1),
        ("scan.rate", config.scan.rate, 1),
        ("scan.creds_max_attempts", config.scan.creds_max_attempts, 1),
        ("scan.max_running", config.scan.max_running, 1),
        ("serial.scrollback", config.serial.scrollback, 4096),
        ("serial.max_sessions", config.serial.max_sessions, 1),
        ("serial.creds_max_attempts", config.serial.creds_max_attempts, 1),
    ]
    for key, value, least in minimums:
        if value < least:
            raise ConfigError(f"{where}: {key}: must be at least {least}, got {value}")
    for key, seconds in [
        ("store.batch_interval", config.store.batch_interval),
        ("store.retention.prune_interval", config.store.retention.prune_interval),
        ("console.refresh", config.console.refresh),
        ("capture.idle_timeout", config.capture.idle_timeout),
        ("capture.active_timeout", config.capture.active_timeout),
        ("respond.bantime", config.respond.bantime),
        ("respond.check_interval", config.respond.check_interval),
        ("logwatch.poll_interval", config.logwatch.poll_interval),
        ("control.hello_timeout", config.control.hello_timeout),
        ("scan.min_timeout", config.scan.min_timeout),
        ("devices.gone_after", config.devices.gone_after),
        ("detect.pcre_timeout", config.detect.pcre_timeout),
    ]:
        if seconds <= 0:
            raise ConfigError(f"{where}: {key}: must be longer than zero")
    if config.control.admin_reserve >= config.control.max_clients:
        raise ConfigError(f"{where}: control.admin_reserve: must be less than control.max_clients")
    if config.respond.factor < 1:
        raise ConfigError(
            f"{where}: respond.factor: must be at least 1, got {config.respond.factor}"
        )
    if config.respond.maxtime < config.respond.bantime:
        raise ConfigError(f"{where}: respond.maxtime: must be at least respond.bantime")
    for n, rule in enumerate(config.respond.policy):
        at = f"{where}: respond.policy[{n}]"
        if rule.severity and rule.severity.lower() not in SEVERITIES:
            raise ConfigError(f"{at}.severity: expected one of {', '.join(SEVERITIES)}")
        unknown = set(rule.actions) - {"alert", "drop", "reject", "pass"}
        if unknown:
            raise ConfigError(f"{at}.actions: unknown action {sorted(unknown)[0]!r}")
        if rule.bantime and rule.bantime != "permanent":
            try:
                if parse_duration(rule.bantime) <= 0:
                    raise ValueError("must be longer than zero")
            except ValueError as exc:
                raise ConfigError(f'{at}.bantime: {exc} (or "permanent")') from None
    _check_jails(config.logwatch, where)
    if config.scan.max_timeout < config.scan.min_timeout:
        raise ConfigError(f"{where}: scan.max_timeout: must be at least scan.min_timeout")
    _check_networks(
        where, "scan.scope", config.scan.scope, "is not a network (e.g. 192.168.1.0/24)"
    )
    _check_schedules(config.scan, where)
    _check_networks(
        where, "devices.local_networks", config.devices.local_networks, "is not a network"
    )
    for text in config.respond.ignoreip:
        # The ban targets' own parser: a zone id (fe80::1%eth0) is refused, as for a ban.
        try:
            parse_target(text, strict=False)
        except TargetError as exc:
            raise ConfigError(f"{where}: respond.ignoreip: {exc}") from None
    _check_serial(config.serial, where)


def _check_networks(where: str, key: str, values: tuple[str, ...], problem: str) -> None:
    for text in values:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(f"{where}: {key}: {text!r} {problem}") from None


def _build(cls: type, raw: Any, where: str, prefix: str, skip: set[str] | None = None) -> Any:
    label = prefix or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [{label}] must be a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in (skip or set())}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(
            f"{where}: unknown key {_key(prefix, unknown[0])!r} (known here: {known})"
        )
    values = {}
    for name, value in raw.items():
        values[name] = _convert(hints[name], value, where, _key(prefix, name))
    try:
        return cls(**values)
    except SettingsError as exc:  # [serial]'s line settings check themselves
        raise ConfigError(f"{where}: {_key(prefix, str(exc))}") from None


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _convert(hint: Any, value: Any, where: str, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, key)
    origin = typing.get_origin(hint)
    if hint is Duration:
        try:
            return Duration(parse_duration(value))
        except ValueError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if dataclasses.is_dataclass(item):
            if not isinstance(value, list):
                raise ConfigError(f"{where}: [[{key}]] must be a list of tables")
            return tuple(_build(item, v, where, f"{key}[{i}]") for i, v in enumerate(value))
        if item is int:
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ConfigError(f"{where}: {key}: expected a list of integers, got {value!r}")
            return tuple(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{where}: [{key}] must be a table of strings")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"{where}: {key}: expected {hint.__name__}, got {value!r}")
    return value


def _check_jails(config: LogwatchConfig, where: str) -> None:
    if not 0 <= config.syslog.port <= 65535:
        raise ConfigError(f"{where}: logwatch.syslog.port: expected 0-65535")
    try:
        ipaddress.ip_address(config.syslog.address)
    except ValueError:
        raise ConfigError(
            f"{where}: logwatch.syslog.address: {config.syslog.address!r} is not an address"
        ) from None
    syslog = config.syslog
    for key, value, least, most in [
        ("max_message", syslog.max_message, 480, 1 << 20),  # 480: RFC 5426's least for IPv4
        ("udp_buffer", syslog.udp_buffer, 0, 1 << 30),
        ("max_connections", syslog.max_connections, 1, 65536),
    ]:
        if not least <= value <= most:
            raise ConfigError(
                f"{where}: logwatch.syslog.{key}: expected {least} to {most}, got {value}"
            )
    if syslog.idle_timeout <= 0:
        raise ConfigError(f"{where}: logwatch.syslog.idle_timeout: must be longer than zero")
    names: set[str] = set()
    for n, jail in enumerate(config.jail):
        at = f"{where}: logwatch.jail[{n}]"
        _check_name(at, jail.name, names, "jail")
        if not jail.filters:
            raise ConfigError(f"{at} ({jail.name}): filters: at least one filter is needed")
        if not (jail.files or jail.syslog or jail.journal):
            raise ConfigError(
                f"{at} ({jail.name}): no source: give files, syslog = true or journal matches"
            )
        if jail.maxretry < 1:
            raise ConfigError(f"{at}.maxretry: must be at least 1, got {jail.maxretry}")
        if jail.findtime <= 0:
            raise ConfigError(f"{at}.findtime: must be longer than zero")
        if jail.severity.lower() not in SEVERITIES:
            raise ConfigError(f"{at}.severity: expected one of {', '.join(SEVERITIES)}")
        if jail.syslog and not config.syslog.enabled:
            raise ConfigError(
                f"{at} ({jail.name}): syslog = true needs [logwatch.syslog] enabled = true"
            )
        for match in jail.journal:
            if "=" not in match and match != "+":
                raise ConfigError(
                    f"{at}.journal: {match!r} is not a match (FIELD=value, or + between groups)"
                )


def _check_name(at: str, name: str, names: set[str], what: str) -> None:
    """A jail's or schedule's name: present, of safe characters, and not taken."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(f"{at}.name: a name of letters, digits, '-', '_' or '.' is needed")
    if name in names:
        raise ConfigError(f"{at}.name: another {what} is called {name!r}")
    names.add(name)


# Keys a serial prefix must not take: the multiplexers', the terminal's and what a device
# console needs (interrupt, end of input, suspend, flow control, Enter, Tab, Backspace).
PREFIX_TAKEN = {
    "ctrl+a": "screen, minicom",
    "ctrl+b": "tmux",
    "ctrl+c": "interrupt",
    "ctrl+d": "end of input",
    "ctrl+z": "suspend",
    "ctrl+s": "XOFF",
    "ctrl+q": "XON",
    "ctrl+m": "Enter",
    "ctrl+j": "Enter",
    "ctrl+i": "Tab",
    "ctrl+h": "Backspace",
}


def _check_serial(config: SerialConfig, where: str) -> None:
    # Imported here, as the scanner's in _check_schedules: importing the config loads no pyserial.
    from engine.serial.allow import CLIENT_SCHEMES

    for scheme in config.urls:
        if scheme not in CLIENT_SCHEMES:
            raise ConfigError(
                f"{where}: serial.urls: {scheme!r} cannot be allowed to clients (expected any of"
                f" {', '.join(CLIENT_SCHEMES)})"
            )
    for pattern in config.allow:
        if not pattern.startswith("/"):
            raise ConfigError(f"{where}: serial.allow: {pattern!r} is not an absolute path or glob")
    for name in config.macros:
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ConfigError(
                f"{where}: serial.macros: {name!r}: a name of letters, digits, '-', '_' or '.'"
            )
    key = config.prefix.strip().lower()
    if not re.fullmatch(r"ctrl\+[a-z]", key) or key in PREFIX_TAKEN:
        taken = ", ".join(f"{k} ({why})" for k, why in PREFIX_TAKEN.items())
        raise ConfigError(
            f"{where}: serial.prefix: expected ctrl+<letter> not taken by the terminal, tmux or"
            f" the device, got {config.prefix!r} (taken: {taken})"
        )


def _check_schedules(config: ScanConfig, where: str) -> None:
    # Imported here: the scanner's modules are not needed by most commands reading the config.
    from engine.scan.ports import PortsError, parse_ports
    from engine.scan.scope import ScopeError, expand, parse_scope

    names: set[str] = set()
    for n, schedule in enumerate(config.schedule):
        at = f"{where}: scan.schedule[{n}]"
        _check_name(at, schedule.name, names, "schedule")
        at = f"{at} ({schedule.name})"
        if schedule.interval < 1:
            raise ConfigError(f"{at}.interval: must be at least one second")
        if schedule.profile not in ("quick", "full"):
            raise ConfigError(f"{at}.profile: expected quick or full, got {schedule.profile!r}")
        try:
            if schedule.ports:
                parse_ports(schedule.ports)
            expand(schedule.targets or config.scope, parse_scope(config.scope))
        except PortsError as exc:
            raise ConfigError(f"{at}.ports: {exc}") from None
        except ScopeError as exc:
            raise ConfigError(f"{at}.targets: {exc}") from None
