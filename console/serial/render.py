"""A received line drawn safely: the device's colours (SGR) rendered, carriage returns and
backspaces applied within the line, and every other control byte, C1 byte, invalid UTF-8 byte
and escape sequence shown as a visible escape (``\\x9b``, ``\\x1b[2J``), never passed to the
operator's terminal. Also the rows of the hex view."""

from __future__ import annotations

import itertools
import re
import time

from rich.segment import Segment
from rich.style import Style

ESCAPED = Style(color="black", bgcolor="yellow")
MATCH = Style(reverse=True, bold=True)
STAMP = Style(dim=True)
HEX_OFFSET = Style(dim=True)

# Anything that is not plain text: escape sequences, C0 and C1 controls, DEL, and the
# surrogates that ``surrogateescape`` makes of invalid UTF-8 bytes.
_SPECIAL = re.compile(r"[\x00-\x1f\x7f-\x9f\udc80-\udcff]")
_TOKEN = re.compile(
    r"(?P<csi>\x1b\[[0-?]*[ -/]*[@-~]?)"
    r"|(?P<string>\x1b[\]P^_X][^\x07\x1b]*(?:\x07|\x1b\\)?)"
    r"|(?P<esc>\x1b[ -~]?)"
    r"|(?P<control>[\x00-\x1f\x7f-\x9f\udc80-\udcff])"
)
_BASIC = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"]


def visible(text: str) -> str:
    """``text`` with every special character written as an escape."""
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    return "".join(out)


def sgr(params: str, style: Style) -> Style:
    """The style after a Select Graphic Rendition sequence (``ESC [ params m``)."""
    codes = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else [0]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code == 0:
            style = Style()
        elif code in (1, 2, 3, 4, 7, 9):
            attribute = {
                1: "bold",
                2: "dim",
                3: "italic",
                4: "underline",
                7: "reverse",
                9: "strike",
            }[code]
            style += Style(**{attribute: True})
        elif code in (22, 23, 24, 27, 29):
            off = {
                22: ("bold", "dim"),
                23: ("italic",),
                24: ("underline",),
                27: ("reverse",),
                29: ("strike",),
            }[code]
            style += Style(**dict.fromkeys(off, False))
        elif 30 <= code <= 37 or 90 <= code <= 97:
            style += Style(color=_colour(code % 10, code >= 90))
        elif 40 <= code <= 47 or 100 <= code <= 107:
            style += Style(bgcolor=_colour(code % 10, code >= 100))
        elif code == 39:
            style = Style.combine([style, Style(color="default")])
        elif code == 49:
            style = Style.combine([style, Style(bgcolor="default")])
        elif code in (38, 48) and i + 1 < len(codes):
            colour, used = _extended(codes[i + 1 :])
            if colour:
                style += Style(**{"color" if code == 38 else "bgcolor": colour})
            i += used
        i += 1
    return style


def _colour(n: int, bright: bool) -> str:
    return f"bright_{_BASIC[n]}" if bright else _BASIC[n]


def _extended(rest: list[int]) -> tuple[str, int]:
    if rest[0] == 5 and len(rest) > 1 and 0 <= rest[1] < 256:
        return f"color({rest[1]})", 2
    if rest[0] == 2 and len(rest) > 3 and all(0 <= c < 256 for c in rest[1:4]):
        return f"rgb({rest[1]},{rest[2]},{rest[3]})", 4
    return "", 1


class Cells:
    """A line being drawn: characters with styles, a cursor for CR, BS and overwriting."""

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.styles: list[Style | None] = []
        self.cursor = 0

    def put(self, text: str, style: Style | None) -> None:
        for char in text:
            if self.cursor < len(self.chars):
                self.chars[self.cursor] = char
                self.styles[self.cursor] = style
            else:
                self.chars.append(char)
                self.styles.append(style)
            self.cursor += 1

    def segments(self) -> list[Segment]:
        out: list[Segment] = []
        start = 0
        for n in range(1, len(self.chars) + 1):
            if n == len(self.chars) or self.styles[n] != self.styles[start]:
                out.append(Segment("".join(self.chars[start:n]), self.styles[start]))
                start = n
        return out


def render_line(data: bytes, map_in: str = "lf") -> list[Segment]:
    """The segments of one received line (without its line end)."""
    text = data.decode("utf-8", "surrogateescape")
    if not _SPECIAL.search(text):
        return [Segment(text)] if text else []
    cells = Cells()
    style = Style()
    position = 0
    for match in _TOKEN.finditer(text):
        if match.start() > position:
            cells.put(text[position : match.start()], style or None)
        position = match.end()
        token = match.group()
        if match["csi"]:
            final = token[-1]
            if final == "m" and len(token) > 2:
                style = sgr(token[2:-1], style)
            elif final == "K" and token[2:-1] in ("", "0"):
                del cells.chars[cells.cursor :], cells.styles[cells.cursor :]
            else:
                cells.put(visible(token), ESCAPED)
        elif match["string"] or match["esc"]:
            cells.put(visible(token), ESCAPED)
        elif token == "\r" and map_in == "lf":
            cells.cursor = 0
        elif token == "\b":
            cells.cursor = max(cells.cursor - 1, 0)
        elif token == "\t":
            cells.put(" " * (8 - cells.cursor % 8), style or None)
        else:
            cells.put(visible(token), ESCAPED)
    if position < len(text):
        cells.put(text[position:], style or None)
    return cells.segments()


def plain(segments: list[Segment]) -> str:
    return "".join(s.text for s in segments)


def highlight(segments: list[Segment], needle: str) -> list[Segment]:
    """``segments`` with every occurrence of ``needle`` (case-insensitive) marked."""
    text = plain(segments)
    spans = [(m.start(), m.end()) for m in re.finditer(re.escape(needle), text, re.I)]
    if not needle or not spans:
        return segments
    out: list[Segment] = []
    position = 0
    for segment in segments:
        end = position + len(segment.text)
        cuts = sorted({position, end, *(c for s in spans for c in s if position < c < end)})
        for a, b in itertools.pairwise(cuts):
            piece = segment.text[a - position : b - position]
            inside = any(s <= a and b <= e for s, e in spans)
            out.append(
                Segment(piece, (segment.style or Style()) + MATCH if inside else segment.style)
            )
        position = end
    return out


def stamp(mode: str, ts: float, started: float, previous: float | None) -> str:
    """The time column: absolute (wall clock), relative (since the session started) or delta
    (since the line before)."""
    if mode == "absolute":
        return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d} "
    if mode == "relative":
        return f"+{max(ts - started, 0):9.3f} "
    if mode == "delta":
        return f"+{max(ts - previous, 0) if previous else 0:8.3f} "
    return ""


def hex_segments(offset: int, data: bytes, skip: int) -> list[Segment]:
    """``00001a30  55 2d 42 6f ...  |U-Boot 2|`` for one row of 16 bytes."""
    cells = ["  "] * skip + [f"{b:02x}" for b in data]
    cells += ["  "] * (16 - len(cells))
    hexes = " ".join(cells[:8]) + "  " + " ".join(cells[8:])
    text = " " * skip + "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)
    return [Segment(f"{offset:08x}  ", HEX_OFFSET), Segment(f"{hexes}  |{text:<16}|")]
