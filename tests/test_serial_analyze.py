"""The boot-log analyser on the real XM530 transcript (as saved, and mangled the ways copies
get mangled), on other bootloaders' banners, and the transcript file's exactness."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from console.serial.buffer import Line, SerialBuffer
from console.serial.render import plain, render_line
from console.serial.wrap import WrapRows
from engine.serial.analyze import BootAnalyzer, analyze, clean_line, parse_mtdparts
from engine.serial.settings import LineSettings, SettingsError, settings_from
from engine.serial.transcript import TranscriptWriter, read_transcript
from tests.conftest import BOOT_LOG

XM530_MTD = [
    ("boot", 0, 0x40000),
    ("kernel", 0x40000, 0x1C0000),
    ("romfs", 0x1C0000, 0x300000),
    ("user", 0x300000, 0x770000),
    ("custom", 0x770000, 0x7B0000),
    ("mtd", 0x7B0000, 0x800000),
]


def check_xm530(report: dict) -> None:
    assert report["bootloader"] == {"name": "U-Boot", "version": "2014.04"}
    assert report["autoboot"]["prompt"] == "Press Ctrl+C to stop autoboot"
    assert report["autoboot"]["interruptible"] is True
    assert report["autoboot"]["bootdelay"] == 1
    assert report["kernel"]["cmdline"].startswith("mem=36M init=/bin/ash console=ttyAMA0,115200")
    assert [(p["name"], p["start"], p["end"]) for p in report["mtd"]] == XM530_MTD
    assert report["identity"] == {"mac": "00:12:41:5e:c4:b5", "ip": "192.168.1.10"}
    kinds = {f["kind"]: f for f in report["findings"]}
    assert kinds["init-shell"]["severity"] == "high"
    assert kinds["init-shell"]["title"] == "Boot arguments start a shell as init (init=/bin/ash)"
    assert kinds["bootloader-shell"]["evidence"] == "U-Boot> help"
    assert kinds["autoboot-interruptible"]["severity"] == "medium"
    assert kinds["kernel-console"]["title"].endswith("(console=ttyAMA0,115200)")
    assert "root-shell-no-login" not in kinds  # this capture never reaches Linux
    for finding in report["findings"]:
        assert set(finding) >= {"kind", "severity", "title", "evidence"}


def test_the_xm530_transcript_as_saved() -> None:
    check_xm530(analyze(BOOT_LOG.read_bytes()).to_json())


def test_crlf_html_entities_and_terminal_noise_change_nothing() -> None:
    text = BOOT_LOG.read_text()
    mangled = (
        text.replace("\n", "\r\n")
        .replace("U-Boot>", "U-Boot&gt;")
        .replace("bootargs=mem=36M", "\x1b[1;32mbootargs\x1b[0m=mem=36M")
        .replace("Press Ctrl+C", "\x1b]0;cam\x07Press Ctrl+C")
        .replace("ethaddr=", "ethaddr=\x00")
        .replace("DRAM:  64 MiB", "DRAM:  64 MiX\bB\x1b[K")
    )
    report = analyze(mangled.encode()).to_json()
    check_xm530(report)
    assert clean_line("DRAM:  64 MiX\bB\x1b[K") == "DRAM:  64 MiB"
    assert clean_line("progress 10%\rprogress 100%") == "progress 100%"


def test_invalid_utf8_and_binary_garbage_between_lines() -> None:
    rng = random.Random(7)
    garbage = bytes(rng.randrange(256) for _ in range(4096)).replace(b"\n", b"")
    report = analyze(garbage + b"\n" + BOOT_LOG.read_bytes() + b"\n" + garbage).to_json()
    check_xm530(report)


def test_a_boot_into_a_root_shell_behind_a_prompt_without_newline() -> None:
    boot = (
        b"\r\nU-Boot 2016.11-g3e2b (Jan 02 2020)\r\nHit any key to stop autoboot:  0 \r\n"
        b"Starting kernel ...\r\n[    0.000000] Linux version 4.9.37 (builder@host) #1\r\n"
        b"[    0.000000] Kernel command line: console=ttyS0,115200 root=/dev/mtdblock3\r\n"
        b'[    0.50] 0x000000000000-0x000000030000 : "u-boot"\r\n'
        b'[    0.51] 0x000000030000-0x000000800000 : "firmware"\r\n'
        b"Please press Enter to activate this console.\r\n"
        b"BusyBox v1.28.4 (2020-01-02) built-in shell (ash)\r\n"
        b"root@OpenWrt:/# "
    )
    analyzer = BootAnalyzer()
    new = analyzer.feed(boot)
    report = analyzer.report.to_json()
    assert report["bootloader"] == {"name": "U-Boot", "version": "2016.11-g3e2b"}
    assert report["kernel"] == {
        "version": "4.9.37",
        "cmdline": "console=ttyS0,115200 root=/dev/mtdblock3",
    }
    assert report["busybox"]["version"] == "1.28.4"
    assert [p["name"] for p in report["mtd"]] == ["u-boot", "firmware"]
    assert report["shell"]["root"] and report["shell"]["prompt"] == "root@OpenWrt:/#"
    kinds = [f.kind for f in new]
    assert "root-shell-no-login" in kinds
    shell = next(f for f in new if f.kind == "root-shell-no-login")
    assert "console=ttyS0,115200" in shell.evidence


def test_a_login_prompt_is_not_a_root_shell() -> None:
    report = analyze(
        b"Linux version 5.10.0\nVFS: Mounted root\nBusyBox v1.31.1 (x) built-in shell (ash)\n"
        b"camera login: root\nPassword: \nLogin incorrect\ncamera login: "
    ).to_json()
    kinds = {f["kind"] for f in report["findings"]}
    assert "login-prompt" in kinds and "root-shell-no-login" not in kinds
    assert report["shell"]["login_prompt"] == "camera login:"


@pytest.mark.parametrize(
    ("banner", "name", "version"),
    [
        (
            b"RedBoot(tm) bootstrap and debug environment [ROMRAM]\nNon-certified release, version"
            b" v3_0 - built 10:11:12, Jan  1 2010\n== Executing boot script in 2.000 seconds -"
            b" enter ^C to abort\nRedBoot> fis list\n",
            "RedBoot",
            "v3_0",
        ),
        (b"CFE version 1.0.37-5.4 for BCM947XX (32bit,SP,LE)\nCFE> help\n", "CFE", "1.0.37-5.4"),
        (
            b"barebox 2019.01.0-00001-gabc #1 Mon Jan 7 2019\nHit any key to stop autoboot:    3\n",
            "Barebox",
            "2019.01.0-00001-gabc",
        ),
    ],
)
def test_other_bootloaders(banner: bytes, name: str, version: str) -> None:
    report = analyze(banner).to_json()
    assert report["bootloader"] == {"name": name, "version": version}
    kinds = {f["kind"] for f in report["findings"]}
    if name == "CFE":  # no autoboot prompt in this banner; its shell answered
        assert report["autoboot"]["interruptible"] is None and "bootloader-shell" in kinds
    else:
        assert report["autoboot"]["interruptible"] is True


def test_printed_secrets_are_findings_with_masked_values() -> None:
    report = analyze(
        b"wifi_psk=SuperSecret123\nroot:$1$abcdefgh$0123456789abcdefghijkl:18000:0:99999:7:::\n"
        b"-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"
        b"passwd  - change password\n"
    ).to_json()
    by_kind = {f["kind"]: f for f in report["findings"]}
    assert by_kind["secret"]["evidence"] == "wifi_psk=Su…(14 characters)"
    assert "SuperSecret123" not in str(report)
    assert by_kind["password-hash"]["title"] == "Password hash of root printed on the console"
    assert by_kind["private-key"]["severity"] == "high"
    assert sum(f["kind"] == "secret" for f in report["findings"]) == 1


def test_mtdparts_offsets_and_the_rest_of_the_device() -> None:
    parts = parse_mtdparts("spi0.0:256k(u-boot)ro,64k@0x50000(env),-(rootfs)")
    assert [(p["name"], p["start"], p["end"]) for p in parts] == [
        ("u-boot", 0, 0x40000),
        ("env", 0x50000, 0x60000),
        ("rootfs", 0x60000, None),
    ]


def test_the_transcript_keeps_every_byte_and_a_time_on_every_line(tmp_path: Path) -> None:
    writer = TranscriptWriter(tmp_path / "t.log", "test session", group="nonexistent-group")
    rng = random.Random(3)
    sent = bytearray()
    now = time.time()
    for n in range(200):
        chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        sent += chunk
        writer.received(chunk, now + n)
        if n % 50 == 0:
            writer.sent(b"typed\r\x1b[A\\", now + n)
            writer.note("dtr toggle", now + n)
        writer.pending(now + n + 2)
    writer.close()
    transcript = read_transcript(tmp_path / "t.log")
    assert transcript.received == bytes(sent)
    assert transcript.header == "test session"
    assert next(c for _t, tag, c in transcript.records if tag == ">") == b"typed\r\x1b[A\\"
    for ts, tag, _c in transcript.records:
        assert len(ts) == 32 and ts[4] == "-" and ts[10] == "T" and tag in "|\\>#"
    assert oct((tmp_path / "t.log").stat().st_mode & 0o777) == "0o600"


def test_settings_are_checked_by_name() -> None:
    settings = settings_from({"baud": "9600", "parity": "Even", "flow": "RTS/CTS", "stop_bits": 2})
    assert settings.describe() == "9600 8E2 rtscts"
    assert LineSettings(map_out="crlf").outgoing("printenv\n") == b"printenv\r\n"
    assert LineSettings().outgoing("a\nb\r\n") == b"a\rb\r"
    for bad, message in [
        ({"baud": 0}, "baud"),
        ({"data_bits": 9}, "data_bits"),
        ({"flow": "dsrdtr"}, "flow"),
        ({"map_in": "x"}, "map_in"),
        ({"echo": "yes"}, "echo"),
        ({"bits": 8}, "unknown setting"),
    ]:
        with pytest.raises(SettingsError, match=message):
            settings_from(bad)


def test_the_console_buffer_splits_lines_by_map_in_and_keeps_local_echo_apart() -> None:
    for map_in, lines in [
        ("lf", [b"one", b"two", b"three\rfour"]),
        ("cr", [b"one", b"two", b"three", b"four"]),
        ("crlf", [b"one", b"two"]),
    ]:
        buffer = SerialBuffer(map_in=map_in)
        buffer.feed(0, 1.0, b"one\r\ntwo\r")  # a CR LF cut between two batches
        buffer.feed(9, 2.0, b"\nthree\rfour\n")
        assert [line.data for line in buffer.lines][: len(lines)] == lines
    buffer = SerialBuffer()
    buffer.feed(0, 1.0, b"/ # ")
    buffer.local(2.0, b"id")
    assert buffer.open.data == b"/ # id" and buffer.end == 4  # echo is no received byte
    assert buffer.feed(10, 3.0, b"x") == 6  # a gap: not fed, 6 bytes to fetch first
    assert buffer.feed(4, 3.0, b"\r\nuid=0(root)\r\n") == 0
    assert [line.data for line in buffer.lines] == [b"/ # id", b"uid=0(root)"]


def test_wrapped_rows_follow_lines_arriving_falling_off_and_cleared() -> None:
    def drawn(index: int, line: Line) -> int:
        return len(plain(render_line(line.data)))

    def expected(buffer: SerialBuffer, width: int) -> list[tuple[int, int]]:
        return [
            (index, within)
            for index, line in enumerate(buffer.lines)
            for within in range(max(1, -(-drawn(index, line) // width)))
        ]

    buffer = SerialBuffer(max_lines=6)
    rows = WrapRows()
    offset = 0
    for batch in [b"short\n", b"x" * 25 + b"\n\n", b"\x9b" * 7 + b"\n", b"y" * 10 + b"\n" * 4]:
        offset += len(batch)
        buffer.feed(offset - len(batch), 1.0, batch)
        for width in (10, 7):
            rows.update(buffer, width, drawn)
            want = expected(buffer, width)
            assert rows.closed_rows() == len(want)
            assert [rows.locate(row) for row in range(len(want))] == want
            assert [rows.row_of(i) for i in range(len(buffer.lines))] == [
                want.index((i, 0)) for i in range(len(buffer.lines))
            ]
    buffer.clear_view()
    rows.update(buffer, 7, drawn)
    assert rows.closed_rows() == 0
    buffer.feed(offset, 2.0, b"z" * 8 + b"\n")
    rows.update(buffer, 7, drawn)
    assert rows.closed_rows() == 2 and rows.locate(1) == (0, 1)


def test_a_login_typed_after_the_prompt_is_a_login_and_old_u_boot_is_u_boot() -> None:
    report = analyze(
        b"U-Boot 1.1.4 (Nov 10 2014 - 11:03:27)\nHit any key to stop autoboot:  1\n"
        b"mtdparts=spi0.0:0256k(u-boot),64k(art)\nStarting kernel ...\nVFS: Mounted root\n"
        b"mydev login: admin\nPassword: \nLast login: Mon Jan  1 00:00:00 on console\n"
        b"root@mydev:~# id\nuid=0(root) gid=0(root)\n"
    ).to_json()
    assert report["bootloader"] == {"name": "U-Boot", "version": "1.1.4"}
    assert report["autoboot"]["interruptible"] is True
    kinds = {f["kind"] for f in report["findings"]}
    assert "login-prompt" in kinds and "root-shell-no-login" not in kinds
    assert report["shell"]["root"] is True
    assert parse_mtdparts("spi0.0:0256k(u-boot),64k(art)")[1]["start"] == 256 * 1024
