"""The values of rule options, one parser per keyword: content patterns (``|hex|`` and escapes),
pcre (translated to the ``regex`` module, whose searches take a timeout), flow, flags, size
tests, threshold and detection_filter, flowbits, isdataat. Each turns one option's text into the
rule model or raises RuleError with a reason that names the keyword.
"""

from __future__ import annotations

import re

import regex

from engine.detect.rules import Comparison, Flowbit, FlowOption, RuleError, TcpFlags, Threshold

# Rule files are read as UTF-8 with undecodable bytes kept as surrogates; this gives them back.
ENCODING = ("utf-8", "surrogateescape")

# Characters a backslash may escape in a quoted value (Suricata's list).
ESCAPABLE = '\\";:'

PCRE_FLAGS = {"i": regex.IGNORECASE, "s": regex.DOTALL, "m": regex.MULTILINE,
              "x": regex.VERBOSE}  # fmt: skip
# pcre flags that choose the HTTP buffer the expression inspects.
PCRE_BUFFERS = {
    "U": "http.uri",
    "I": "http.uri.raw",
    "H": "http.header",
    "D": "http.header",
    "M": "http.method",
    "C": "http.cookie",
    "P": "http.request_body",
    "V": "http.user_agent",
    "W": "http.host",
}

# PCRE's \\z is the very end (Python's \\Z), its \\Z also matches before a final newline;
# \\h and \\v are horizontal and vertical white space (Python's \\v is only \\x0b).
HORIZONTAL, VERTICAL = "\\t \\xa0", "\\n\\x0b\\x0c\\r\\x85"
PCRE_ESCAPES = {
    "\\z": "\\Z",
    "\\Z": "(?=\\n?\\Z)",
    "\\h": f"[{HORIZONTAL}]",
    "\\H": f"[^{HORIZONTAL}]",
    "\\v": f"[{VERTICAL}]",
    "\\V": f"[^{VERTICAL}]",
    "\\R": f"(?:\\r\\n|[{VERTICAL}])",
}
PCRE_IN_CLASS = {"\\h": HORIZONTAL, "\\v": VERTICAL}

FLOW_OPTIONS = {
    "established": ("established", True),
    "not_established": ("established", False),
    "to_server": ("to_server", True),
    "from_client": ("to_server", True),
    "to_client": ("to_server", False),
    "from_server": ("to_server", False),
    "stateless": ("stateless", True),
    "only_stream": ("stream", True),
    "no_stream": ("stream", False),
}

# TCP header bits; Snort's 1 and 2 are the two reserved bits that became CWR and ECE.
TCP_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20,
                 "E": 0x40, "2": 0x40, "C": 0x80, "1": 0x80}  # fmt: skip
FLAG_MODIFIERS = "+*!"

COMPARISON = re.compile(
    r"(?:(?P<low>\d+)\s*(?:<>|-)\s*(?P<high>\d+)|(?P<op><=|>=|<|>|!|=)?\s*(?P<value>\d+))"
)

THRESHOLD_TYPES = ("limit", "threshold", "both")
TRACKS = ("by_src", "by_dst", "by_rule", "by_both")
FLOWBIT_COMMANDS = ("set", "unset", "toggle", "isset", "isnotset", "noalert")
FLOWBIT_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def integer(keyword: str, text: str, least: int | None = None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise RuleError(f"{keyword}: expected a number, got {text.strip()!r}") from None
    if least is not None and value < least:
        raise RuleError(f"{keyword}: must be at least {least}, got {value}")
    return value


def text_value(keyword: str, text: str) -> str:
    """A value such as ``msg``'s, quoted or not, with its escapes undone."""
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
    return "".join(_unescaped(keyword, text))


def _unescaped(keyword: str, text: str) -> list[str]:
    chars: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            if char not in ESCAPABLE:
                raise RuleError(f"{keyword}: unknown escape '\\{char}'")
            chars.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            chars.append(char)
    if escaped:
        raise RuleError(f"{keyword}: ends with a lone '\\'")
    return chars


def _negated_quoted(keyword: str, text: str) -> tuple[str, bool]:
    """``"..."`` or ``!"..."``: the text between the quotes and whether it is negated."""
    text = text.strip()
    negated = text.startswith("!")
    if negated:
        text = text[1:].lstrip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise RuleError(f"{keyword}: expected a quoted string, got {text!r}")
    return text[1:-1], negated


def content(text: str) -> tuple[bytes, bool]:
    """``content``'s pattern as bytes (``|41 42|`` hex blocks, ``\\"`` ``\\;`` ``\\\\``
    escapes), and whether it is negated (``!``)."""
    inner, negated = _negated_quoted("content", text)
    pattern = bytearray()
    hex_digits: list[str] | None = None  # inside |...|
    escaped = False
    for char in inner:
        if hex_digits is not None:
            if char == "|":
                pattern += _hex_block(hex_digits)
                hex_digits = None
            elif char in "0123456789abcdefABCDEF":
                hex_digits.append(char)
            elif not char.isspace():
                raise RuleError(f"content: {char!r} is not a hex digit (inside |...|)")
        elif escaped:
            if char not in ESCAPABLE:
                raise RuleError(f"content: unknown escape '\\{char}'")
            pattern += char.encode(*ENCODING)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "|":
            hex_digits = []
        elif char == '"':
            raise RuleError("content: a '\"' inside the pattern must be escaped as \\\"")
        else:
            pattern += char.encode(*ENCODING)
    if hex_digits is not None:
        raise RuleError("content: '|' opens a hex block that is not closed")
    if escaped:
        raise RuleError("content: ends with a lone '\\'")
    if not pattern:
        raise RuleError("content: empty pattern")
    return bytes(pattern), negated


def _hex_block(digits: list[str]) -> bytes:
    if len(digits) % 2:
        raise RuleError(f"content: odd number of hex digits in |{''.join(digits)}|")
    return bytes.fromhex("".join(digits))


def pcre(text: str) -> tuple[regex.Pattern[bytes], bool, bool, str | None]:
    """``pcre:"/expr/flags"`` as a compiled ``regex`` pattern over bytes, with whether it is
    negated, relative (R) and the HTTP buffer its flags name (None: the current buffer)."""
    inner, negated = _negated_quoted("pcre", text)
    end = inner.rfind("/")
    if not inner.startswith("/") or end < 1:
        raise RuleError(f'pcre: expected "/expression/flags", got {inner!r}')
    expression, flag_text = inner[1:end], inner[end + 1 :]
    flags = 0
    relative = False
    buffer: str | None = None
    for flag in flag_text:
        if flag in PCRE_FLAGS:
            flags |= PCRE_FLAGS[flag]
        elif flag == "R":
            relative = True
        elif flag in PCRE_BUFFERS:
            if buffer is not None and buffer != PCRE_BUFFERS[flag]:
                raise RuleError(f"pcre: flag '{flag}' names a second buffer ({buffer} already)")
            buffer = PCRE_BUFFERS[flag]
        else:
            raise RuleError(f"pcre: unsupported flag '{flag}'")
    try:
        compiled = regex.compile(_python_syntax(expression).encode(*ENCODING), flags)
    except regex.error as exc:
        raise RuleError(f"pcre: {exc}") from None
    return compiled, negated, relative, buffer


def _python_syntax(expression: str) -> str:
    """The escapes that PCRE and the ``regex`` module read differently, rewritten (the others
    are the same, or ``regex`` rejects them and the rule with them)."""
    out: list[str] = []
    index = 0
    in_class = False
    while index < len(expression):
        char = expression[index]
        if char == "\\" and index + 1 < len(expression):
            escape = expression[index : index + 2]
            out.append((PCRE_IN_CLASS if in_class else PCRE_ESCAPES).get(escape, escape))
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            index += 1
            # A ']' right after '[' or '[^' is a literal member, not the end of the class.
            for prefix in ("^", "]"):
                if expression.startswith(prefix, index):
                    out.append(prefix)
                    index += 1
            continue
        if char == "]" and in_class:
            in_class = False
        out.append(char)
        index += 1
    return "".join(out)


def flow(text: str) -> FlowOption:
    settings: dict[str, tuple[bool, str]] = {}
    for word in (w.strip().lower() for w in text.split(",")):
        if word not in FLOW_OPTIONS:
            raise RuleError(f"flow: unknown option {word!r}")
        field, value = FLOW_OPTIONS[word]
        if field in settings and settings[field][0] != value:
            raise RuleError(f"flow: {settings[field][1]!r} and {word!r} contradict each other")
        settings[field] = (value, word)
    return FlowOption(**{field: value for field, (value, _) in settings.items()})


def tcp_flags(text: str) -> TcpFlags:
    """``flags``: ``[+*!]FSRPAUCE12[+*!][,ignored]``, or ``0`` for no flag at all."""
    wanted, _, ignored = text.strip().partition(",")
    wanted = wanted.strip()
    modifier = ""
    if len(wanted) > 1 and wanted[0] in FLAG_MODIFIERS:
        modifier, wanted = wanted[0], wanted[1:]
    if len(wanted) > 1 and wanted[-1] in FLAG_MODIFIERS:
        if modifier:
            raise RuleError(f"flags: more than one modifier in {text.strip()!r}")
        modifier, wanted = wanted[-1], wanted[:-1]
    bits = 0 if wanted == "0" else _flag_bits(wanted)
    return TcpFlags(bits, modifier, _flag_bits(ignored.strip()) if ignored.strip() else 0)


def _flag_bits(letters: str) -> int:
    if not letters:
        raise RuleError("flags: no flags given")
    bits = 0
    for letter in letters.upper():
        if letter not in TCP_FLAG_BITS:
            raise RuleError(f"flags: unknown flag {letter!r} (expected FSRPAUCE12, or 0)")
        bits |= TCP_FLAG_BITS[letter]
    return bits


def comparison(keyword: str, text: str) -> Comparison:
    """``N``, ``!N``, ``<N``, ``>N``, ``<=N``, ``>=N``, or ``N<>M`` (also ``N-M``): between,
    exclusive."""
    found = COMPARISON.fullmatch(text.strip())
    if found is None:
        raise RuleError(
            f"{keyword}: expected N, !N, <N, >N, <=N, >=N or N<>M, got {text.strip()!r}"
        )
    if found["low"] is not None:
        low, high = int(found["low"]), int(found["high"])
        if high - low < 2:
            raise RuleError(f"{keyword}: nothing lies strictly between {low} and {high}")
        return Comparison("<>", low, high)
    op = {None: "=", "!": "!="}.get(found["op"], found["op"])
    return Comparison(op, int(found["value"]))


def threshold(keyword: str, text: str) -> Threshold:
    """``threshold: type T, track by_X, count N, seconds S`` (in any order), or, for
    ``detection_filter``, the same without ``type``."""
    allowed = ("track", "count", "seconds") + (("type",) if keyword == "threshold" else ())
    settings: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        name, _, value = part.replace("\t", " ").partition(" ")
        if name not in allowed:
            raise RuleError(f"{keyword}: unknown setting {name!r} (expected {', '.join(allowed)})")
        if name in settings:
            raise RuleError(f"{keyword}: {name!r} given twice")
        settings[name] = value.strip()
    for name in allowed:
        if name not in settings:
            raise RuleError(f"{keyword}: missing {name!r}")
    kind = settings.get("type", "filter")
    if keyword == "threshold" and kind not in THRESHOLD_TYPES:
        raise RuleError(f"threshold: unknown type {kind!r} (expected limit, threshold or both)")
    if settings["track"] not in TRACKS:
        raise RuleError(f"{keyword}: unknown track {settings['track']!r} "
                        f"(expected {', '.join(TRACKS)})")  # fmt: skip
    count = integer(f"{keyword} count", settings["count"], least=1)
    seconds = integer(f"{keyword} seconds", settings["seconds"], least=1)
    return Threshold(kind, settings["track"], count, float(seconds))


def flowbit(text: str) -> Flowbit:
    """``flowbits: set|unset|toggle|isset|isnotset, name`` (``a|b``: any of them, ``a&b``:
    all of them), or ``flowbits: noalert``."""
    command, comma, names = (part.strip() for part in text.partition(","))
    command = command.lower()
    if command not in FLOWBIT_COMMANDS:
        raise RuleError(f"flowbits: unknown command {command!r} "
                        f"(expected {', '.join(FLOWBIT_COMMANDS)})")  # fmt: skip
    if command == "noalert":
        if comma:
            raise RuleError("flowbits: noalert takes no name")
        return Flowbit("noalert")
    if not names:
        raise RuleError(f"flowbits: {command} needs a name")
    if "|" in names and "&" in names:
        raise RuleError(f"flowbits: {names!r} mixes '|' and '&'")
    any_of = "|" in names
    if any_of and command not in ("isset", "isnotset"):
        raise RuleError("flowbits: 'a|b' (any of) only works with isset and isnotset")
    split = [n.strip() for n in re.split(r"[|&]", names)]
    for name in split:
        if not FLOWBIT_NAME.fullmatch(name):
            raise RuleError(f"flowbits: {name!r} is not a flowbit name")
    return Flowbit(command, tuple(split), any_of)


def isdataat(text: str) -> tuple[int, bool, bool]:
    """``isdataat: [!]N[, relative]``: the offset, whether relative, whether negated."""
    offset_text, comma, rest = (part.strip() for part in text.partition(","))
    negated = offset_text.startswith("!")
    offset = integer("isdataat", offset_text.removeprefix("!"), least=0)
    if comma and rest.lower() != "relative":
        raise RuleError(f"isdataat: unsupported option {rest!r} (only 'relative')")
    return offset, bool(comma), negated
