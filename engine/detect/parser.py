"""Suricata rule files into the rule model (engine/detect/rules.py).

A rule is ``action proto src sport dir dst dport (keyword:value; keyword; ...)``, on one line or
on several joined by a trailing backslash. Its options apply in order: some set a field of the
rule (msg, sid, flow, ...), some modify the content before them (nocase, depth, distance, ...),
and the sticky buffers (http.uri, ...) bind the contents after them to a buffer. The checks are
Suricata's; a rule that fails one becomes a Rejection with its file, line, sid and a reason that
names the keyword, and the other rules still load.

One file, though long: it is the grammar of one rule and Suricata's checks of it, in the order a
rule is read; the values of single options are parsed in engine/detect/options.py.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from engine import shipped
from engine.capture.protocols import TAGS
from engine.config import DetectConfig
from engine.detect import options
from engine.detect.classification import Classifications, shipped_classifications
from engine.detect.rules import (
    BUFFERS,
    Action,
    Content,
    Flowbit,
    Inspection,
    IsDataAt,
    Pcre,
    Rejection,
    Rule,
    RuleError,
)
from engine.detect.variables import Variables

ACTIONS = {action.value: action for action in Action}
PROTOCOLS = frozenset({"ip", "tcp", "udp", "icmp", "icmpv6", *TAGS,
                       "http", "ftp", "smtp", "dns", "tls", "ssh"})  # fmt: skip
TRANSPORTS = frozenset({"ip", "tcp", "udp", "icmp", "icmpv6"})

# Sticky buffers: the contents after them inspect that buffer. Older spellings included; the
# raw header is matched as the normalized one (as the pcre D flag is).
STICKY = {name: name for name in BUFFERS if name != "payload"} | {
    "http.header.raw": "http.header",
    "http_accept_enc": "http.accept_enc",
    "http_content_type": "http.content_type",
    "http_header_names": "http.header_names",
    "http_protocol": "http.protocol",
    "http_request_line": "http.request_line",
    "dns_query": "dns.query",
    "tls_sni": "tls.sni",
}
# Content modifiers of Snort and older Suricata: they move the content before them to a buffer.
MOVERS = {
    "http_uri": "http.uri",
    "http_raw_uri": "http.uri.raw",
    "http_method": "http.method",
    "http_user_agent": "http.user_agent",
    "http_host": "http.host",
    "http_header": "http.header",
    "http_raw_header": "http.header",
    "http_cookie": "http.cookie",
    "http_client_body": "http.request_body",
}
# The application protocols a buffer exists for: a rule for another one can never match it.
BUFFER_APPS = {"dns.query": ("dns", "mdns"), "tls.sni": ("tls",)} | {
    name: (name.split(".")[0],) for name in BUFFERS if name.startswith(("http.", "mqtt."))
}

# Options that give one field of the rule, each at most once, and how to read their value.
FIELDS: dict[str, Callable[[str], Any]] = {
    "msg": lambda value: options.text_value("msg", value),
    "sid": lambda value: options.integer("sid", value, least=1),
    "rev": lambda value: options.integer("rev", value, least=0),
    "gid": lambda value: options.integer("gid", value, least=0),
    "priority": lambda value: options.integer("priority", value, least=1),
    "flow": options.flow,
    "flags": options.tcp_flags,
    "dsize": lambda value: options.comparison("dsize", value),
    "itype": lambda value: options.comparison("itype", value),
    "icode": lambda value: options.comparison("icode", value),
    "threshold": lambda value: options.threshold("threshold", value),
    "detection_filter": lambda value: options.threshold("detection_filter", value),
}
# Options that take a value and are not content modifiers.
VALUED = {*FIELDS, "classtype", "urilen", "reference", "metadata", "target", "content", "pcre",
          "isdataat", "bsize", "flowbits"}  # fmt: skip
CONTENT_FLAGS = {"nocase", "startswith", "endswith"}
# Numeric content modifiers and their least value (distance may look back).
CONTENT_NUMBERS = {"depth": 1, "offset": 0, "distance": None, "within": 1}
ABSOLUTE = {"depth", "offset"}
RELATIVE = {"distance", "within"}

SID = re.compile(r"[(;]\s*sid\s*:\s*(\d+)")


def parse_rules(
    text: str, file: str, variables: Variables, *, classifications: Classifications | None = None
) -> tuple[list[Rule], list[Rejection]]:
    """The rules of one file's text, and the rules that did not parse with the reason."""
    loader = _Loader(variables, classifications)
    loader.parse(text, file)
    return loader.rules, loader.rejections


def load_rules(
    paths: Iterable[str | os.PathLike[str]],
    variables: Variables,
    *,
    classifications: Classifications | None = None,
) -> tuple[list[Rule], list[Rejection]]:
    """The rules of files, directories (their ``*.rules``) and globs; a sid may appear once
    across all of them. A file that cannot be read is one Rejection at line 0."""
    loader = _Loader(variables, classifications)
    for entry in paths:
        files = _rule_files(str(entry))
        if not files:
            loader.rejections.append(Rejection(str(entry), 0, 0, "no rule files match"))
        for file in files:
            try:
                data = Path(file).read_bytes()
            except OSError as exc:
                reason = f"cannot read rule file: {exc.strerror or exc}"
                loader.rejections.append(Rejection(file, 0, 0, reason))
                continue
            # Bytes that are not UTF-8 are kept as they were, for contents and pcre.
            loader.parse(data.decode(*options.ENCODING), file)
    return loader.rules, loader.rejections


def configured_rule_files(detect: DetectConfig) -> list[str]:
    """The rule files in effect: the config's ``rule_files``, else the shipped pack
    (MissingContent when it has none)."""
    if detect.rule_files:
        return list(detect.rule_files)
    return shipped_rule_files()


def shipped_rule_files() -> list[str]:
    """The shipped pack's files (MissingContent when there are none)."""
    return [str(p) for p in shipped.files("packet/*.rules", "packet rules")]


def _rule_files(entry: str) -> list[str]:
    path = os.path.expanduser(entry)
    if any(char in path for char in "*?["):
        return sorted(glob.glob(path))
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(glob.escape(path), "*.rules")))
    return [path]


class _Loader:
    """Rules parsed so far across files, so that a sid is accepted only once."""

    def __init__(self, variables: Variables, classifications: Classifications | None) -> None:
        self.variables = variables
        self.classes = shipped_classifications() if classifications is None else classifications
        self.rules: list[Rule] = []
        self.rejections: list[Rejection] = []
        self.first: dict[tuple[int, int], tuple[str, int]] = {}

    def parse(self, text: str, file: str) -> None:
        for line, rule_text in _rule_texts(text):
            try:
                rule = _parse_rule(rule_text, self.variables, self.classes)
                key = (rule.gid, rule.sid)
                if key in self.first:
                    file_before, line_before = self.first[key]
                    raise RuleError(
                        f"duplicate sid {rule.sid} (first at {file_before}:{line_before})"
                    )
            except RuleError as exc:
                self.rejections.append(Rejection(file, line, _sid_in(rule_text), str(exc)))
                continue
            self.first[key] = (file, line)
            self.rules.append(dataclasses.replace(rule, file=file, line=line))


def _rule_texts(text: str) -> Iterator[tuple[int, str]]:
    """Each rule with the number of its first line. Blank lines and comments are skipped
    (a commented-out rule is not a rule); a trailing backslash continues a rule on the next
    line, joined as Suricata joins it, without a space."""
    pending: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), 1):
        line = line.rstrip()
        if not pending:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            first = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield first, "".join(pending).strip()
        pending = []
    if pending:
        yield first, "".join(pending).strip()


def _sid_in(text: str) -> int:
    """The sid of a rule that did not parse, if one can be seen, for the Rejection."""
    found = SID.search(text)
    return int(found[1]) if found else 0


def _parse_rule(text: str, variables: Variables, classes: Classifications) -> Rule:
    open_at = text.find("(")
    if open_at < 0:
        raise RuleError("no options: expected '(' after the header")
    if not text.endswith(")"):
        raise RuleError("the options must end with ')'")
    header = _header(text[:open_at], variables)
    builder = _Options(header["proto"], classes)
    for keyword, value in _split_options(text[open_at + 1 : -1]):
        builder.apply(keyword, value)
    return builder.build(header, text)


def _header(text: str, variables: Variables) -> dict[str, Any]:
    fields = _header_fields(text)
    if len(fields) != 7:
        raise RuleError(f"header: expected 'action proto source sport -> destination dport', "
                        f"got {text.strip()!r}")  # fmt: skip
    action, proto, src, sport, direction, dst, dport = fields
    if action.lower() not in ACTIONS:
        raise RuleError(f"unknown action {action!r} (expected alert, drop, reject or pass)")
    if proto.lower() not in PROTOCOLS:
        raise RuleError(f"unknown protocol {proto!r}")
    if direction not in ("->", "<>"):
        raise RuleError(f"direction must be '->' or '<>', got {direction!r}")
    return {
        "action": ACTIONS[action.lower()],
        "proto": proto.lower(),
        "src": _field("source address", variables.addresses, src),
        "sport": _field("source port", variables.ports, sport),
        "dst": _field("destination address", variables.addresses, dst),
        "dport": _field("destination port", variables.ports, dport),
        "bidirectional": direction == "<>",
    }


def _header_fields(text: str) -> list[str]:
    """The header's words; a list may hold spaces (``[1.2.3.4, 5.6.7.8]``)."""
    fields: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char.isspace() and depth == 0:
            if current:
                fields.append("".join(current))
                current = []
            continue
        depth += {"[": 1, "]": -1}.get(char, 0)
        current.append(char)
    if depth:
        raise RuleError(f"header: unbalanced '[' and ']' in {text.strip()!r}")
    if current:
        fields.append("".join(current))
    return fields


def _field(label: str, parse: Callable[[str], Any], text: str) -> Any:
    try:
        return parse(text)
    except RuleError as exc:
        raise RuleError(f"{label}: {exc}") from None


def _split_options(body: str) -> list[tuple[str, str | None]]:
    """``keyword:value;`` and ``keyword;`` in order. As in Suricata, an option ends at a ``;``
    that no backslash escapes, even inside quotes."""
    found: list[tuple[str, str | None]] = []
    current: list[str] = []
    escaped = False
    for char in body:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ";":
            found.append(_option("".join(current)))
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        raise RuleError(f"the last option must end with ';': {''.join(current).strip()!r}")
    return found


def _option(text: str) -> tuple[str, str | None]:
    keyword, colon, value = text.partition(":")
    keyword = keyword.strip().lower()
    if not keyword:
        raise RuleError("empty option (two ';' in a row?)")
    return keyword, value.strip() if colon else None


class _Options:
    """The options of one rule, applied in order, then checked as a whole."""

    def __init__(self, proto: str, classes: Classifications) -> None:
        self.proto = proto
        self.classes = classes
        self.fields: dict[str, Any] = {}
        self.inspections: list[Inspection] = []
        self.modifiers: list[set[str]] = []  # per inspection: the content modifiers applied
        self.buffer = "payload"  # the sticky buffer in effect
        self.references: list[str] = []
        self.metadata: list[str] = []
        self.flowbits: list[Flowbit] = []
        self.bsize: list[tuple[str, Any]] = []

    def apply(self, keyword: str, value: str | None) -> None:
        if keyword in STICKY or keyword == "pkt_data":
            _no_value(keyword, value)
            self.buffer = STICKY.get(keyword, "payload")
        elif keyword in MOVERS:
            _no_value(keyword, value)
            self._move(keyword, MOVERS[keyword])
        elif keyword in CONTENT_FLAGS:
            _no_value(keyword, value)
            self._modify(keyword, **{keyword: True})
        elif keyword in CONTENT_NUMBERS:
            number = options.integer(keyword, _needs_value(keyword, value),
                                     least=CONTENT_NUMBERS[keyword])  # fmt: skip
            self._modify(keyword, **{keyword: number})
        elif keyword == "fast_pattern":
            self._fast_pattern(value)
        elif keyword == "noalert":
            _no_value(keyword, value)
            self.flowbits.append(Flowbit("noalert"))
        elif keyword in VALUED:
            self._with_value(keyword, _needs_value(keyword, value))
        else:
            raise RuleError(f"unsupported keyword {keyword!r}")

    def _with_value(self, keyword: str, value: str) -> None:
        if keyword in self.fields:  # each field is given once
            raise RuleError(f"'{keyword}' given twice")
        if keyword in FIELDS:
            self.fields[keyword] = FIELDS[keyword](value)
        elif keyword == "classtype":
            if value not in self.classes:
                raise RuleError(f"unknown classtype {value!r} (not in classification.config)")
            self.fields["classtype"] = value
        elif keyword == "urilen":
            self.fields["urilen"] = _urilen(value)
        elif keyword == "reference":
            self.references.append(value)
        elif keyword == "metadata":
            self.metadata.extend(item.strip() for item in value.split(",") if item.strip())
        elif keyword == "target":
            if value not in ("src_ip", "dest_ip"):
                raise RuleError(f"target: expected src_ip or dest_ip, got {value!r}")
            self.fields["target"] = value
        elif keyword == "content":
            pattern, negated = options.content(value)
            self._inspect(Content(pattern, buffer=self.buffer, negated=negated))
        elif keyword == "pcre":
            self._pcre(value)
        elif keyword == "isdataat":
            offset, relative, negated = options.isdataat(value)
            self._inspect(IsDataAt(offset, relative, negated, buffer=self.buffer))
        elif keyword == "bsize":
            if self.buffer == "payload":
                raise RuleError("'bsize' needs a sticky buffer (such as http.uri) before it")
            self.bsize.append((self.buffer, options.comparison("bsize", value)))
        else:
            self.flowbits.append(options.flowbit(value))

    def _inspect(self, item: Inspection) -> None:
        self.inspections.append(item)
        self.modifiers.append(set())

    def _pcre(self, value: str) -> None:
        regex, negated, relative, flag_buffer = options.pcre(value)
        if flag_buffer and self.buffer not in ("payload", flag_buffer):
            raise RuleError(f"pcre: its flags name {flag_buffer} but the sticky buffer is "
                            f"{self.buffer}")  # fmt: skip
        self._inspect(Pcre(regex, flag_buffer or self.buffer, negated, relative))

    def _last_content(self, keyword: str) -> int:
        """The index of the content a modifier applies to: the last one, which must be in
        the sticky buffer in effect."""
        for index in range(len(self.inspections) - 1, -1, -1):
            if isinstance(self.inspections[index], Content):
                break
        else:
            raise RuleError(f"'{keyword}' needs a content before it")
        if self.buffer != "payload" and self.inspections[index].buffer != self.buffer:
            raise RuleError(f"'{keyword}' needs a content in {self.buffer} before it")
        if keyword in self.modifiers[index]:
            raise RuleError(f"'{keyword}' given twice for one content")
        self.modifiers[index].add(keyword)
        return index

    def _modify(self, keyword: str, **changes: Any) -> None:
        self._modify_at(self._last_content(keyword), **changes)

    def _move(self, keyword: str, buffer: str) -> None:
        if self.buffer != "payload":
            raise RuleError(f"'{keyword}' cannot follow the sticky buffer {self.buffer} "
                            f"(pkt_data ends it)")  # fmt: skip
        index = self._last_content(keyword)
        current = self.inspections[index].buffer
        if current != "payload":
            raise RuleError(f"'{keyword}': the content before it is already in {current}")
        self._modify_at(index, buffer=buffer)

    def _modify_at(self, index: int, **changes: Any) -> None:
        self.inspections[index] = dataclasses.replace(self.inspections[index], **changes)

    def _fast_pattern(self, value: str | None) -> None:
        index = self._last_content("fast_pattern")
        content = self.inspections[index]
        assert isinstance(content, Content)
        if value == "only":
            self.modifiers[index].add("fast_pattern:only")
        elif value is not None:
            offset, comma, length = value.partition(",")
            start = options.integer("fast_pattern offset", offset, least=0)
            size = options.integer("fast_pattern length", length if comma else "", least=1)
            if start + size > len(content.pattern):
                raise RuleError(f"fast_pattern: {start},{size} goes past the content's "
                                f"{len(content.pattern)} bytes")  # fmt: skip
        self._modify_at(index, fast_pattern=True)

    def build(self, header: dict[str, Any], text: str) -> Rule:
        for required in ("sid", "msg"):
            if required not in self.fields:
                raise RuleError(f"missing '{required}'")
        if "threshold" in self.fields and "detection_filter" in self.fields:
            raise RuleError("'threshold' and 'detection_filter' cannot be in the same rule")
        self._check_contents()
        self._check_relative()
        self._check_buffers()
        return Rule(
            **header,
            **self.fields,
            references=tuple(self.references),
            metadata=tuple(self.metadata),
            inspections=tuple(self.inspections),
            flowbits=tuple(self.flowbits),
            bsize=tuple(self.bsize),
            text=text,
        )

    def _check_contents(self) -> None:
        fast = 0
        for item, applied in zip(self.inspections, self.modifiers, strict=True):
            if isinstance(item, Content):
                _check_content(item, applied)
                fast += item.fast_pattern
        if fast > 1:
            raise RuleError("'fast_pattern' is set on more than one content")

    def _check_relative(self) -> None:
        """A relative content, pcre (R) or isdataat needs a content or pcre before it in the
        same buffer to be relative to."""
        anchored: set[str] = set()
        for item, applied in zip(self.inspections, self.modifiers, strict=True):
            if isinstance(item, Content) and item.relative:
                keyword = "'distance'" if "distance" in applied else "'within'"
            elif isinstance(item, Pcre) and item.relative:
                keyword = "pcre flag 'R'"
            elif isinstance(item, IsDataAt) and item.relative:
                keyword = "isdataat 'relative'"
            else:
                keyword = ""
            if keyword and item.buffer not in anchored:
                raise RuleError(f"{keyword} needs an earlier content in the same buffer "
                                f"({item.buffer}) to be relative to")  # fmt: skip
            if isinstance(item, Content | Pcre):
                anchored.add(item.buffer)

    def _check_buffers(self) -> None:
        """A buffer of one application protocol in a rule for another can never match."""
        if self.proto in TRANSPORTS:
            return
        used = [item.buffer for item in self.inspections] + [name for name, _ in self.bsize]
        if "urilen" in self.fields:
            used.append("http.uri")
        for buffer in used:
            apps = BUFFER_APPS.get(buffer)
            if apps and self.proto not in apps:
                raise RuleError(f"{buffer} is a buffer of {apps[0]}, not of {self.proto}")


def _check_content(item: Content, applied: set[str]) -> None:
    absolute = sorted(applied & ABSOLUTE)
    relative = sorted(applied & RELATIVE)
    if absolute and relative:
        raise RuleError(f"'{absolute[0]}' and '{relative[0]}' cannot apply to one content "
                        f"(one is absolute, the other relative)")  # fmt: skip
    if "startswith" in applied and applied & {"depth", "distance", "within"}:
        raise RuleError("'startswith' cannot be combined with depth, distance or within")
    for keyword in ("depth", "within"):
        limit = getattr(item, keyword)
        if limit is not None and limit < len(item.pattern):
            raise RuleError(f"{keyword} {limit} is shorter than the content before it "
                            f"({len(item.pattern)} bytes)")  # fmt: skip
    if "fast_pattern:only" in applied and (item.negated or absolute or relative):
        raise RuleError("'fast_pattern:only' cannot apply to a negated content or one with "
                        "depth, offset, distance or within")  # fmt: skip
    if item.buffer == "http.host" and not item.nocase and item.pattern != item.pattern.lower():
        raise RuleError("http.host is lower case: its content must be too (or use nocase)")


def _urilen(value: str) -> Any:
    """``urilen: N[, norm]``; the raw URI's length is not supported."""
    test, comma, kind = (part.strip() for part in value.partition(","))
    if comma and kind != "norm":
        raise RuleError(f"urilen: unsupported option {kind!r} (only 'norm')")
    return options.comparison("urilen", test)


def _no_value(keyword: str, value: str | None) -> None:
    if value is not None:
        raise RuleError(f"'{keyword}' takes no value")


def _needs_value(keyword: str, value: str | None) -> str:
    if not value:
        raise RuleError(f"'{keyword}' needs a value")
    return value
