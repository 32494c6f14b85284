"""The lab's devices: real daemons started in their namespaces, set up the way careless IoT
vendors ship them. Their files live in the lab's state directory; `down` ends the processes by
namespace and removes the directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from engine.lab import packages, processes, serial_device
from engine.lab.topology import Host, LabError, Plan, in_netns

STATE_ROOT = Path("/run/iotsec-lab")
PIDS = "pids"
# A classic of Mirai's list, as shipped on XiongMai cameras.
CAMERA_ROOT_PASSWORD = "xc3511"


def state_dir(plan: Plan) -> Path:
    return STATE_ROOT / plan.prefix


def spawn(host: Host, argv: list[str], log: Path) -> int:
    """Start ``argv`` in ``host``'s namespace, detached, output to ``log``; its pid.

    The pid and program are also written to the lab's ``pids`` file, so `down` finds the
    process even when its namespace has been removed under it.
    """
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _record(log.parent, proc.pid, argv[0])
    return proc.pid


def _record(directory: Path, pid: int, program: str) -> None:
    with (directory / PIDS).open("a") as fh:
        fh.write(f"{pid} {program}\n")


def recorded_processes(plan: Plan) -> list[int]:
    """Processes the lab started that still run the program it started them with."""
    try:
        lines = (state_dir(plan) / PIDS).read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        pid_text, program = line.split(" ", 1)
        # `ip netns exec` becomes the program; until it has, it is still `ip`.
        if processes.command_of(int(pid_text)) in (program, "ip"):
            found.append(int(pid_text))
    return found


def wait_listening(
    host: Host, port: int, *, udp: bool = False, timeout: float = 10.0, log: Path | None = None
) -> None:
    """Block until something listens on ``port`` in ``host``'s namespace; if nothing does,
    the error quotes the end of the daemon's ``log``."""
    flag = "-Hlun" if udp else "-Hltn"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = in_netns(host.netns, "ss", flag, f"sport = :{port}").stdout
        if out.strip():
            return
        time.sleep(0.05)
    tail = ""
    if log is not None and log.exists():
        tail = ": " + " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
    raise LabError(f"{host.role}: nothing listens on {'udp' if udp else 'tcp'}/{port} after"
                   f" {timeout:.0f} s{tail}")  # fmt: skip


def _need(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise LabError(f"{program} is missing: install the Debian package {package}")
    return path


def _busybox_with(applets: set[str]) -> str:
    busybox = _need("busybox", "busybox-static")
    if not packages.busybox_has(applets):
        raise LabError(
            f"this busybox lacks one of {', '.join(sorted(applets))}: install busybox-static"
        )
    return busybox


def _md5_crypt(password: str) -> str:
    done = subprocess.run(
        [_need("openssl", "openssl"), "passwd", "-1", password], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise LabError(f"openssl passwd failed: {done.stderr.strip()}")
    return done.stdout.strip()


def start_camera(plan: Plan, host: Host) -> None:
    """An IP camera: BusyBox telnetd with root / xc3511 and a web admin page behind basic auth
    admin / admin, both in a chroot of their own holding only a static BusyBox."""
    busybox = _busybox_with(packages.BUSYBOX_APPLETS)
    root = state_dir(plan) / "camera"
    for sub in ("bin", "etc", "www", "tmp", "dev", "var/log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in ("sh", "login", "ls", "cat", "echo", "ps", "uname", "id"):
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    (root / "etc" / "shadow").write_text(
        f"root:{_md5_crypt(CAMERA_ROOT_PASSWORD)}:19000:0:99999:7:::\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "etc" / "issue").write_text("IPCam XM530 (BusyBox)\n")
    (root / "etc" / "httpd.conf").write_text("/:admin:admin\n")
    (root / "www" / "index.html").write_text(
        "<html><head><title>IPCam admin</title></head><body><h1>NETSurveillance WEB</h1>"
        "</body></html>\n"
    )
    _device_nodes(root / "dev")
    log = state_dir(plan) / "camera.log"
    chroot = _need("chroot", "coreutils")
    # syslogd first: login's failures land in the camera's /var/log/messages, for log watching.
    spawn(host, [chroot, str(root), "/bin/busybox", "syslogd", "-n", "-O", "/var/log/messages"],
          log)  # fmt: skip
    spawn(host, [chroot, str(root), "/bin/busybox", "telnetd", "-F", "-p", "23",
                 "-l", "/bin/login"], log)  # fmt: skip
    spawn(host, [chroot, str(root), "/bin/busybox", "httpd", "-f", "-p", "80",
                 "-h", "/www", "-c", "/etc/httpd.conf"], log)  # fmt: skip
    wait_listening(host, 23, log=log)
    wait_listening(host, 80, log=log)


def _device_nodes(dev: Path) -> None:
    """The few device nodes telnetd's login needs inside the chroot (ptys, null)."""
    if not (dev / "null").exists():
        os.mknod(dev / "null", 0o666 | 0o020000, os.makedev(1, 3))
    if not (dev / "ptmx").exists():
        os.mknod(dev / "ptmx", 0o666 | 0o020000, os.makedev(5, 2))
    pts = dev / "pts"
    pts.mkdir(exist_ok=True)
    if not os.path.ismount(pts):
        done = subprocess.run(
            ["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts", str(pts)],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise LabError(f"cannot mount a devpts for the camera: {done.stderr.strip()}")


def start_broker(plan: Plan, host: Host) -> None:
    """An MQTT broker that takes anonymous clients; the sensor publishes telemetry to it every
    second and the controller subscribes."""
    mosquitto = _need("mosquitto", "mosquitto")
    config = state_dir(plan) / "mosquitto.conf"
    config.write_text(
        "listener 1883 0.0.0.0\nallow_anonymous true\npersistence false\n"
        "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
        "connection_messages true\n"
    )
    log = state_dir(plan) / "broker.log"
    spawn(host, [mosquitto, "-c", str(config)], log)
    wait_listening(host, 1883, log=log)
    sensor = next(d for d in plan.devices if d.role == "sensor")
    controller = next(d for d in plan.devices if d.role == "controller")
    spawn(controller, [_need("mosquitto_sub", "mosquitto-clients"), "-h", host.address,
                       "-i", "controller-01", "-t", "telemetry/#", "-v"],
          state_dir(plan) / "telemetry.log")  # fmt: skip
    spawn(sensor, [_need("mosquitto_pub", "mosquitto-clients"), "-h", host.address,
                   "-i", "sensor-01", "-t", "telemetry/sensor-01/temperature",
                   "-m", '{"celsius": 21.5}', "--repeat", str(TELEMETRY_REPEATS),
                   "--repeat-delay", "1"], state_dir(plan) / "sensor.log")  # fmt: skip


# A day of once-a-second telemetry; `down` ends it sooner.
TELEMETRY_REPEATS = 86_400


def start_tls(plan: Plan, host: Host) -> None:
    """An HTTPS admin page with an expired, self-signed certificate and a 1024-bit key."""
    from engine.lab.tls_device import make_expired_certificate

    make_expired_certificate(state_dir(plan))
    log = state_dir(plan) / "tls.log"
    spawn(host, [sys.executable, "-m", "engine.lab.tls_device", str(state_dir(plan))], log)
    wait_listening(host, 443, log=log)


def start_ssh(plan: Plan, host: Host) -> None:
    """Dropbear, the SSH server of most BusyBox devices (root logins refused: the accounts
    behind it are the host's own)."""
    dropbear = _need("dropbear", "dropbear-bin")
    key = state_dir(plan) / "dropbear_ed25519_host_key"
    if not key.exists():
        done = subprocess.run([_need("dropbearkey", "dropbear-bin"), "-t", "ed25519", "-f",
                               str(key)], capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise LabError(f"dropbearkey failed: {done.stderr.strip()}")
    pidfile = state_dir(plan) / "dropbear.pid"
    argv = [dropbear, "-F", "-E", "-w", "-p", "22", "-r", str(key), "-P", str(pidfile)]
    log = state_dir(plan) / "ssh.log"
    spawn(host, argv, log)
    wait_listening(host, 22, log=log)


def start_sensor(plan: Plan, host: Host) -> None:
    """A sensor: an open CoAP server (aiocoap) and snmpd answering community `public`."""
    log = state_dir(plan) / "sensor.log"
    spawn(host, [sys.executable, "-m", "engine.lab.coap_device"], log)
    config = state_dir(plan) / "snmpd.conf"
    config.write_text(
        "agentAddress udp:161\nrocommunity public\n"
        "sysDescr Linux sensor 3.10.14 #1 PREEMPT armv7l (IoT sensor firmware 2.1.0)\n"
        "sysLocation plant floor\nsysContact admin@example.invalid\n"
    )
    spawn(host, [_need("snmpd", "snmpd"), "-f", "-Lo", "-C", "-c", str(config),
                 "-p", str(state_dir(plan) / "snmpd.pid")], log)  # fmt: skip
    wait_listening(host, 5683, udp=True, log=log)
    wait_listening(host, 161, udp=True, log=log)


def start_controller(plan: Plan, host: Host) -> None:
    """A PLC: Modbus/TCP (pymodbus) with no access control, polled by an HMI in the broker's
    namespace every two seconds."""
    log = state_dir(plan) / "controller.log"
    spawn(host, [sys.executable, "-m", "engine.lab.modbus_device", "serve"], log)
    wait_listening(host, 502, log=log)
    hmi = next(d for d in plan.devices if d.role == "broker")
    spawn(hmi, [sys.executable, "-m", "engine.lab.modbus_device", "poll", host.address],
          state_dir(plan) / "hmi.log")  # fmt: skip


SERIAL_LINK = "ttyLAB0"


def serial_path(plan: Plan) -> Path:
    """The pty a serial console opens to talk to the lab's camera UART."""
    return state_dir(plan) / SERIAL_LINK


def plug_serial(plan: Plan) -> Path:
    """Power the serial device: a socat pty pair whose far end is the camera's UART."""
    path = serial_path(plan)
    if path.exists():
        return path
    _need("socat", "socat")  # a clear error before anything starts
    try:
        proc = serial_device.plug(path, [], state_dir(plan) / "serial.log")
    except RuntimeError as exc:
        raise LabError(str(exc)) from None
    (state_dir(plan) / "serial.pid").write_text(f"{proc.pid}\n")
    _record(state_dir(plan), proc.pid, proc.args[0])
    return path


def unplug_serial(plan: Plan) -> None:
    """Pull the cable: the pty disappears until :func:`plug_serial`."""
    pidfile = state_dir(plan) / "serial.pid"
    if pidfile.exists():
        processes.end([int(pidfile.read_text())], grace=1.0)
        pidfile.unlink()
    serial_path(plan).unlink(missing_ok=True)


def stop_all(plan: Plan) -> None:
    """Unmount what the devices mounted and remove their files (processes end with `down`)."""
    directory = state_dir(plan)
    if not directory.exists():
        return
    for mount in sorted(_mounts_under(directory), reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    shutil.rmtree(directory, ignore_errors=True)


def _mounts_under(directory: Path) -> list[str]:
    prefix = str(directory) + "/"
    with open("/proc/self/mounts") as fh:
        return [line.split()[1] for line in fh if line.split()[1].startswith(prefix)]


# Each device: how to start it and the services that answer once it runs.
# The broker before the sensor and controller: its clients run in their namespaces.
STARTERS = {
    "camera": start_camera,
    "broker": start_broker,
    "sensor": start_sensor,
    "controller": start_controller,
    "tls": start_tls,
    "ssh": start_ssh,
}
SERVICES: dict[str, list[tuple[str, int]]] = {
    "camera": [("tcp", 23), ("tcp", 80)],
    "broker": [("tcp", 1883)],
    "sensor": [("udp", 5683), ("udp", 161)],
    "controller": [("tcp", 502)],
    "tls": [("tcp", 443)],
    "ssh": [("tcp", 22)],
}


def listening(host: Host) -> bool:
    """Whether every service of ``host`` listens now."""
    for proto, port in SERVICES.get(host.role, []):
        flag = "-Hlun" if proto == "udp" else "-Hltn"
        if not in_netns(host.netns, "ss", flag, f"sport = :{port}").stdout.strip():
            return False
    return True


def start_all(plan: Plan) -> None:
    directory = state_dir(plan)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    hosts = {h.role: h for h in plan.devices}
    for role, starter in STARTERS.items():
        starter(plan, hosts[role])
    plug_serial(plan)
