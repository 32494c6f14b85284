"""The rule parser: the Emerging Threats files in tests/data/rules, each keyword's edge cases,
variables, classtypes and severities, and ``iotsec rules check``."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import ConfigError
from engine.detect.classification import (
    ClassificationError,
    load_classifications,
    severity_of,
    shipped_classifications,
)
from engine.detect.parser import load_rules, parse_rules
from engine.detect.rules import (
    Action,
    Comparison,
    Content,
    Flowbit,
    FlowOption,
    IsDataAt,
    Pcre,
    Rule,
    TcpFlags,
    Threshold,
)
from engine.detect.variables import DEFAULT_VARS, load_variables
from engine.model import Severity
from tests.conftest import DATA, ROOT, write_config

RULES = DATA / "rules"
VARS = load_variables({})
HEADER = "alert tcp any any -> any any"


def et_files() -> list[Path]:
    return sorted(RULES.glob("*.rules"))


def et_rules() -> dict[int, Rule]:
    rules, _ = load_rules(et_files(), VARS)
    return {r.sid: r for r in rules}


def parse(options: str, header: str = HEADER, variables=VARS) -> Rule:
    """The rule ``header (msg; OPTIONS sid:1;)``, which must parse."""
    rules, rejected = parse_rules(f'{header} (msg:"test"; {options} sid:1;)', "t.rules", variables)
    assert not rejected, rejected
    return rules[0]


def reason(options: str, header: str = HEADER, variables=VARS) -> str:
    """Why the rule ``header (msg; OPTIONS sid:1;)`` is rejected."""
    rules, rejected = parse_rules(f'{header} (msg:"test"; {options} sid:1;)', "t.rules", variables)
    assert not rules, rules
    (rejection,) = rejected
    assert (rejection.file, rejection.line, rejection.sid) == ("t.rules", 1, 1)
    return rejection.reason


def net(*texts: str) -> tuple:
    return tuple(ipaddress.ip_network(t) for t in texts)


HOME = net("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


# -- the Emerging Threats files --------------------------------------------------------------


def test_every_enabled_et_rule_is_accepted_or_rejected_with_its_keyword() -> None:
    enabled = {}  # (file, line) -> sid, counted independently of the parser
    for path in et_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                enabled[(str(path), number)] = int(re.search(r"sid:(\d+);", line)[1])
    rules, rejected = load_rules(et_files(), VARS)
    seen = {(r.file, r.line): r.sid for r in rules} | {(r.file, r.line): r.sid for r in rejected}
    assert seen == enabled
    for rejection in rejected:
        assert re.fullmatch(r"unsupported keyword '[a-z_.]+'", rejection.reason), rejection
    share = len(rules) / len(enabled)
    assert share >= 0.9, f"only {share:.1%} of {len(enabled)} enabled ET rules accepted"
    unsupported = sorted({r.reason for r in rejected})
    assert unsupported == [
        "unsupported keyword 'byte_test'",
        "unsupported keyword 'file_data'",
        "unsupported keyword 'ssh_proto'",
    ], f"accepted {share:.1%}"


def test_et_content_with_offset_and_depth() -> None:
    rule = et_rules()[2008414]  # ET SCAN Cisco Torch TFTP Scan
    assert (rule.proto, rule.dport.include, rule.classtype) == (
        "udp",
        ((69, 69),),
        "attempted-recon",
    )
    assert rule.src.exclude == HOME and rule.dst.include == HOME
    assert rule.inspections == (Content(b"Rand0mSTRING\x00netascii", offset=2, depth=21),)
    assert rule.references == (
        "url,www.hackingexposedcisco.com/?link=tools",
        "url,www.securiteam.com/tools/5EP0F1FEUA.html",
    )


def test_et_flags_depth_within_and_threshold() -> None:
    rules = et_rules()
    amap = rules[2010371]  # ET SCAN Amap TCP Service Scan Detected
    assert amap.flow == FlowOption(to_server=True)
    assert amap.flags == TcpFlags(0x18)
    assert amap.inspections == (
        Content(b"service:thc://", depth=105),
        Content(b"service:thc", within=40),
    )
    ftp = rules[2010642]  # ET SCAN Multiple FTP Root Login Attempts ...
    assert ftp.inspections == (
        Content(b"USER ", nocase=True, depth=5),
        Content(b"root", nocase=True, within=15),
    )
    assert ftp.threshold == Threshold("threshold", "by_src", 5, 60.0)
    assert ftp.flow == FlowOption(established=True, to_server=True)


def test_et_distance_within_chain_with_fast_pattern() -> None:
    rule = et_rules()[2022579]  # ET SCAN MySQL Malicious Scanning 1
    assert rule.inspections == (
        Content(b"\x00\x03", offset=3, depth=2),
        Content(b"GRANT ALTER, ALTER ROUTINE", nocase=True, distance=0, within=30),
        Content(b"TO root@% WITH", fast_pattern=True),
    )


def test_et_http_user_agent_buffers() -> None:
    rules = et_rules()
    assert rules[2008187].inspections == (
        Content(b"Paros/", buffer="http.user_agent", startswith=True),
    )
    nessus = rules[2002664]  # spaces in threshold and flow
    assert nessus.threshold == Threshold("limit", "by_src", 1, 60.0)
    assert nessus.inspections == (
        Content(b"Nessus", buffer="http.user_agent", nocase=True, depth=40),
    )
    exabot = rules[2033165]  # the older modifier: content:"Exabot"; nocase; http_user_agent;
    assert exabot.inspections == (Content(b"Exabot", buffer="http.user_agent", nocase=True),)


def test_et_pcre_in_a_sticky_buffer_and_relative() -> None:
    rules = et_rules()
    mirai = rules[2029015]  # ET SCAN Mirai Variant User-Agent (Inbound)
    pcre, content = mirai.inspections
    assert isinstance(pcre, Pcre) and pcre.buffer == "http.user_agent" and not pcre.relative
    assert pcre.regex.flags & re.IGNORECASE
    assert pcre.regex.search(b"demons/1.0") and not pcre.regex.search(b"DEMONS/1.0x")
    assert content == Content(
        b"DEMONS", buffer="http.user_agent", fast_pattern=True, startswith=True
    )
    upnp = rules[2008093]  # pcre:"/^[a-z0-9]{8}-...\//Ri" after content:"/upnp/"
    pcre = upnp.inspections[-1]
    assert isinstance(pcre, Pcre) and pcre.relative and pcre.buffer == "payload"
    assert pcre.regex.match(b"ABCD1234-abcd-abcd-abcd1234abcd1234/")


def test_et_flowbits() -> None:
    rules = et_rules()
    assert rules[2018754].flowbits == (Flowbit("set", ("ET.XMLRPC.PHP",)), Flowbit("noalert"))
    assert rules[2018754].noalert
    telnet = rules[2023019]  # ET TELNET busybox MIRAI hackers
    assert telnet.flowbits == (Flowbit("isset", ("ET.telnet.busybox",)),)
    assert telnet.threshold == Threshold("limit", "by_src", 1, 30.0)
    assert telnet.dport.include == ((23, 23), (2323, 2323), (3323, 3323), (4323, 4323))


def test_et_rules_take_their_severity_from_the_classtype() -> None:
    rules = et_rules()
    assert severity_of(rules[2023019]) is Severity.HIGH  # attempted-admin, priority 1
    assert severity_of(rules[2010371]) is Severity.MEDIUM  # attempted-recon, 2
    assert severity_of(rules[2033165]) is Severity.LOW  # not-suspicious, 3


# -- content ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ('"|41 42|C|0d0a|"', b"ABC\r\n"),
        ('"|4142 43|"', b"ABC"),
        ('"a|00|b"', b"a\x00b"),
        (r'"a\"b\;c\\d\:e"', b'a"b;c\\d:e'),
        (r'"C:\\"', b"C:\\"),
        ('"caf\u00e9"', "caf\u00e9".encode()),
        ('"GET /"', b"GET /"),
    ],
)
def test_content_patterns(value: str, pattern: bytes) -> None:
    assert parse(f"content:{value};").inspections == (Content(pattern),)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ('"|41 4|"', "content: odd number of hex digits in |414|"),
        ('"|41 4G|"', "content: 'G' is not a hex digit (inside |...|)"),
        ('"|41"', "content: '|' opens a hex block that is not closed"),
        (r'"a\x41"', "content: unknown escape '\\x'"),
        ('""', "content: empty pattern"),
        ("abc", "content: expected a quoted string, got 'abc'"),
        ('"a"b"', "content: a '\"' inside the pattern must be escaped as \\\""),
    ],
)
def test_bad_content_is_rejected(value: str, why: str) -> None:
    assert reason(f"content:{value};") == why


def test_a_semicolon_in_content_must_be_escaped() -> None:
    assert reason('content:"a;b";').startswith("content: expected a quoted string")


def test_negated_content() -> None:
    assert parse('content:!"foo"; content: ! "bar";').inspections == (
        Content(b"foo", negated=True),
        Content(b"bar", negated=True),
    )


def test_content_modifiers() -> None:
    rule = parse(
        'content:"abc"; nocase; offset:2; depth:10; content:"x"; distance:-2; '
        'within:5; content:"end"; endswith; fast_pattern;'
    )
    assert rule.inspections == (
        Content(b"abc", nocase=True, offset=2, depth=10),
        Content(b"x", distance=-2, within=5),
        Content(b"end", endswith=True, fast_pattern=True),
    )


@pytest.mark.parametrize("form", ["fast_pattern;", "fast_pattern:only;", "fast_pattern:1,2;"])
def test_fast_pattern_forms(form: str) -> None:
    assert parse(f'content:"abcd"; {form}').inspections == (Content(b"abcd", fast_pattern=True),)


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (
            'content:"a"; distance:0;',
            "'distance' needs an earlier content in the same buffer (payload) to be relative to",
        ),
        (
            'content:"a"; within:4; distance:1;',
            "'distance' needs an earlier content in the same buffer (payload) to be relative to",
        ),
        (
            'content:"a"; http.uri; content:"b"; within:5;',
            "'within' needs an earlier content in the same buffer (http.uri) to be relative to",
        ),
        (
            'pcre:"/a/R";',
            "pcre flag 'R' needs an earlier content in the same buffer (payload) to be relative to",
        ),
        (
            "isdataat:1,relative;",
            "isdataat 'relative' needs an earlier content in the same buffer (payload) to be "
            "relative to",
        ),
        ('content:"abcd"; depth:3;', "depth 3 is shorter than the content before it (4 bytes)"),
        (
            'content:"a"; content:"abcd"; within:2;',
            "within 2 is shorter than the content before it (4 bytes)",
        ),
        (
            'content:"a"; content:"b"; depth:4; distance:0;',
            "'depth' and 'distance' cannot apply to one content (one is absolute, the other "
            "relative)",
        ),
        (
            'content:"ab"; startswith; depth:2;',
            "'startswith' cannot be combined with depth, distance or within",
        ),
        ("nocase;", "'nocase' needs a content before it"),
        ('content:"a"; http.uri; nocase;', "'nocase' needs a content in http.uri before it"),
        ('content:"a"; nocase; nocase;', "'nocase' given twice for one content"),
        ('content:"a"; depth:x;', "depth: expected a number, got 'x'"),
        ('content:"a"; depth:0;', "depth: must be at least 1, got 0"),
        ('content:"a"; depth;', "'depth' needs a value"),
        ('content:"a"; nocase:1;', "'nocase' takes no value"),
        ('content:"ab"; fast_pattern:1,2;', "fast_pattern: 1,2 goes past the content's 2 bytes"),
        ('content:"ab"; fast_pattern:x;', "fast_pattern offset: expected a number, got 'x'"),
        (
            'content:"a"; fast_pattern; content:"b"; fast_pattern;',
            "'fast_pattern' is set on more than one content",
        ),
        (
            'content:!"a"; fast_pattern:only;',
            "'fast_pattern:only' cannot apply to a negated content or one with depth, offset, "
            "distance or within",
        ),
    ],
)
def test_content_modifier_errors(options: str, why: str) -> None:
    assert reason(options) == why


def test_relative_content_chains_per_buffer() -> None:
    rule = parse(
        'http.uri; content:"/a"; content:"b"; distance:0; http.host; content:"h"; '
        'pkt_data; content:"p"; isdataat:2,relative; content:"q"; within:3;'
    )
    assert rule.inspections == (
        Content(b"/a", buffer="http.uri"),
        Content(b"b", buffer="http.uri", distance=0),
        Content(b"h", buffer="http.host"),
        Content(b"p"),
        IsDataAt(2, relative=True),
        Content(b"q", within=3),
    )


def test_older_modifiers_move_the_content_before_them() -> None:
    rule = parse(
        'content:"POST"; http_method; content:"/x"; http_uri; content:"y"; '
        'distance:0; http_uri; content:"k=v"; http_cookie; content:"b"; '
        "http_client_body;"
    )
    assert rule.inspections == (
        Content(b"POST", buffer="http.method"),
        Content(b"/x", buffer="http.uri"),
        Content(b"y", buffer="http.uri", distance=0),
        Content(b"k=v", buffer="http.cookie"),
        Content(b"b", buffer="http.request_body"),
    )
    assert reason('http.uri; content:"a"; http_header;') == (
        "'http_header' cannot follow the sticky buffer http.uri (pkt_data ends it)"
    )
    assert reason('content:"a"; http_uri; http_header;') == (
        "'http_header': the content before it is already in http.uri"
    )


def test_sticky_buffers_of_each_protocol() -> None:
    for buffer in (
        "http.method",
        "http.uri.raw",
        "http.header_names",
        "http.content_type",
        "http.request_line",
        "http.protocol",
        "http.request_body",
        "http.accept_enc",
    ):
        assert parse(f'{buffer}; content:"x";').inspections == (Content(b"x", buffer=buffer),)
    assert parse('dns.query; content:"evil"; bsize:>4;', "alert dns any any -> any any").bsize == (
        ("dns.query", Comparison(">", 4)),
    )
    assert (
        parse('tls.sni; content:"x";', "alert tls any any -> any any").inspections[0].buffer
        == "tls.sni"
    )
    mqtt = parse(
        'mqtt.connect.clientid; content:"bot"; mqtt.connect.username; content:"admin"; '
        'mqtt.publish.topic; content:"cmd";',
        "alert mqtt any any -> any any",
    )
    assert [c.buffer for c in mqtt.inspections] == [
        "mqtt.connect.clientid",
        "mqtt.connect.username",
        "mqtt.publish.topic",
    ]
    assert parse('dns_query; content:"x";').inspections[0].buffer == "dns.query"


def test_buffer_checks() -> None:
    header = "alert dns any any -> any any"
    assert reason('http.uri; content:"x";', header) == "http.uri is a buffer of http, not of dns"
    assert reason("bsize:3;") == "'bsize' needs a sticky buffer (such as http.uri) before it"
    assert reason('http.host; content:"Example.com";') == (
        "http.host is lower case: its content must be too (or use nocase)"
    )
    assert parse('http.host; content:"Example.com"; nocase;').inspections[0].nocase


# -- pcre ------------------------------------------------------------------------------------


def test_pcre_flags() -> None:
    (pcre,) = parse(r'pcre:"/^a.b$/smix";').inspections
    assert isinstance(pcre, Pcre)
    assert pcre.regex.flags & (re.S | re.M | re.I | re.X) == re.S | re.M | re.I | re.X
    assert pcre.regex.pattern == b"^a.b$"
    buffers = {
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
    for flag, buffer in buffers.items():
        assert parse(f'pcre:"/x/{flag}";').inspections[0].buffer == buffer
    negated = parse('content:"a"; pcre:!"/b/R";').inspections[1]
    assert negated == Pcre(negated.regex, "payload", negated=True, relative=True)


def test_pcre_translation_to_python() -> None:
    (pcre,) = parse(r'pcre:"/end\z/";').inspections
    assert pcre.regex.search(b"the end") and not pcre.regex.search(b"the end\n")
    (pcre,) = parse(r'pcre:"/end\Z/";').inspections
    assert pcre.regex.search(b"the end\n") and not pcre.regex.search(b"the end\nx")
    (pcre,) = parse(r'pcre:"/[\]z]\;\"/";').inspections
    assert pcre.regex.search(b'z;"')
    (pcre,) = parse(r'pcre:"/a\hb\vc[\h]d\Re/";').inspections  # PCRE's white space classes
    assert pcre.regex.search(b"a\xa0b\rc\td\r\ne") and not pcre.regex.search(b"a\nb\rc\td\ne")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ('"/a/O"', "pcre: unsupported flag 'O'"),
        ('"/a/G"', "pcre: unsupported flag 'G'"),
        ('"/a/UH"', "pcre: flag 'H' names a second buffer (http.uri already)"),
        ('"/(?C1)a/"', "pcre: unknown extension at position 2"),
        (r'"/a\eb/"', "pcre: bad escape \\e at position 3"),
        ('"/(a/"', "pcre: missing ) at position 2"),
        ('"a"', "pcre: expected \"/expression/flags\", got 'a'"),
    ],
)
def test_bad_pcre_is_rejected(value: str, why: str) -> None:
    assert reason(f"pcre:{value};") == why


def test_pcre_buffer_flag_must_agree_with_the_sticky_buffer() -> None:
    assert parse('http.uri; pcre:"/a/U";').inspections[0].buffer == "http.uri"
    assert reason('http.host; pcre:"/a/U";') == (
        "pcre: its flags name http.uri but the sticky buffer is http.host"
    )


# -- other options ---------------------------------------------------------------------------


def test_isdataat() -> None:
    rule = parse('isdataat:4; content:"a"; isdataat:!1,relative; isdataat: 2 , relative;')
    assert rule.inspections == (
        IsDataAt(4),
        Content(b"a"),
        IsDataAt(1, True, True),
        IsDataAt(2, True),
    )
    assert (
        reason("isdataat:1,rawbytes;")
        == "isdataat: unsupported option 'rawbytes' (only 'relative')"
    )


@pytest.mark.parametrize(
    ("value", "flow"),
    [
        ("established,to_server", FlowOption(established=True, to_server=True)),
        ("not_established", FlowOption(established=False)),
        ("from_client", FlowOption(to_server=True)),
        ("to_client, established", FlowOption(established=True, to_server=False)),
        ("from_server", FlowOption(to_server=False)),
        ("stateless", FlowOption(stateless=True)),
        ("to_server,only_stream", FlowOption(to_server=True, stream=True)),
        ("no_stream", FlowOption(stream=False)),
    ],
)
def test_flow(value: str, flow: FlowOption) -> None:
    assert parse(f"flow:{value};").flow == flow


def test_flow_errors() -> None:
    assert reason("flow:to_server,to_client;") == (
        "flow: 'to_server' and 'to_client' contradict each other"
    )
    assert reason("flow:established,not_established;") == (
        "flow: 'established' and 'not_established' contradict each other"
    )
    assert reason("flow:to_server,no_frag;") == "flow: unknown option 'no_frag'"
    assert reason("flow:to_server; flow:established;") == "'flow' given twice"


@pytest.mark.parametrize(
    ("value", "flags"),
    [
        ("S", TcpFlags(0x02)),
        ("SA", TcpFlags(0x12)),
        ("PA12", TcpFlags(0x18 | 0xC0)),
        ("S,12", TcpFlags(0x02, ignore=0xC0)),
        (" S,CE", TcpFlags(0x02, ignore=0xC0)),
        ("SA+", TcpFlags(0x12, "+")),
        ("+SA", TcpFlags(0x12, "+")),
        ("*SF", TcpFlags(0x03, "*")),
        ("!R", TcpFlags(0x04, "!")),
        ("0", TcpFlags(0)),
        ("0,12", TcpFlags(0, ignore=0xC0)),
        ("FSRPAUCE", TcpFlags(0xFF)),
    ],
)
def test_tcp_flags(value: str, flags: TcpFlags) -> None:
    assert parse(f"flags:{value};").flags == flags


def test_tcp_flag_errors() -> None:
    assert reason("flags:SX;") == "flags: unknown flag 'X' (expected FSRPAUCE12, or 0)"
    assert reason("flags:+S*;") == "flags: more than one modifier in '+S*'"


@pytest.mark.parametrize(
    ("value", "test"),
    [
        ("0", Comparison("=", 0)),
        ("!5", Comparison("!=", 5)),
        ("<135", Comparison("<", 135)),
        ("> 6", Comparison(">", 6)),
        ("<=10", Comparison("<=", 10)),
        (">=10", Comparison(">=", 10)),
        ("10<>20", Comparison("<>", 10, 20)),
        ("10-20", Comparison("<>", 10, 20)),
    ],
)
def test_size_comparisons(value: str, test: Comparison) -> None:
    for keyword in ("dsize", "itype", "icode"):
        assert getattr(parse(f"{keyword}:{value};"), keyword) == test
    assert parse(f"urilen:{value};", "alert http any any -> any any").urilen == test
    assert parse(f'http.uri; content:"a"; bsize:{value};').bsize == (("http.uri", test),)


def test_size_comparison_errors() -> None:
    assert reason("dsize:>x;") == "dsize: expected N, !N, <N, >N, <=N, >=N or N<>M, got '>x'"
    assert reason("dsize:5<>6;") == "dsize: nothing lies strictly between 5 and 6"
    assert reason("urilen:5,raw;") == "urilen: unsupported option 'raw' (only 'norm')"
    assert parse("urilen:5,norm;").urilen == Comparison("=", 5)


@pytest.mark.parametrize(
    ("value", "threshold"),
    [
        ("type limit, track by_src, count 1, seconds 60", Threshold("limit", "by_src", 1, 60.0)),
        (
            "type threshold,track\tby_dst,count 5,seconds 10",
            Threshold("threshold", "by_dst", 5, 10.0),
        ),
        ("count 3, seconds 30, type both, track by_rule", Threshold("both", "by_rule", 3, 30.0)),
        ("type both, track by_both, count 1, seconds 1", Threshold("both", "by_both", 1, 1.0)),
    ],
)
def test_threshold(value: str, threshold: Threshold) -> None:
    assert parse(f"threshold: {value};").threshold == threshold


def test_detection_filter() -> None:
    rule = parse("detection_filter:track by_dst, count 4, seconds 20;")
    assert rule.detection_filter == Threshold("filter", "by_dst", 4, 20.0)
    assert rule.threshold is None


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ("threshold:type limit, track by_src, count 1;", "threshold: missing 'seconds'"),
        (
            "threshold:type often, track by_src, count 1, seconds 1;",
            "threshold: unknown type 'often' (expected limit, threshold or both)",
        ),
        (
            "threshold:type limit, track by_flow, count 1, seconds 1;",
            "threshold: unknown track 'by_flow' (expected by_src, by_dst, by_rule, by_both)",
        ),
        (
            "threshold:type limit, track by_src, count 0, seconds 1;",
            "threshold count: must be at least 1, got 0",
        ),
        (
            "threshold:type limit, type both, track by_src, count 1, seconds 1;",
            "threshold: 'type' given twice",
        ),
        (
            "detection_filter:type limit, track by_src, count 1, seconds 1;",
            "detection_filter: unknown setting 'type' (expected track, count, seconds)",
        ),
        (
            "threshold:type limit, track by_src, count 1, seconds 1; "
            "detection_filter:track by_src, count 1, seconds 1;",
            "'threshold' and 'detection_filter' cannot be in the same rule",
        ),
    ],
)
def test_threshold_errors(options: str, why: str) -> None:
    assert reason(options) == why


def test_flowbits() -> None:
    rule = parse(
        "flowbits:set,a.b; flowbits:unset,c; flowbits:toggle,d&e; "
        "flowbits:isset,f|g; flowbits:isnotset,h&i; flowbits:noalert; noalert;"
    )
    assert rule.flowbits == (
        Flowbit("set", ("a.b",)),
        Flowbit("unset", ("c",)),
        Flowbit("toggle", ("d", "e")),
        Flowbit("isset", ("f", "g"), any_of=True),
        Flowbit("isnotset", ("h", "i")),
        Flowbit("noalert"),
        Flowbit("noalert"),
    )
    assert rule.noalert


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (
            "check,a",
            "flowbits: unknown command 'check' (expected set, unset, toggle, isset, "
            "isnotset, noalert)",
        ),
        ("set", "flowbits: set needs a name"),
        ("set,a|b", "flowbits: 'a|b' (any of) only works with isset and isnotset"),
        ("isset,a|b&c", "flowbits: 'a|b&c' mixes '|' and '&'"),
        ("noalert,a", "flowbits: noalert takes no name"),
        ("set,a b", "flowbits: 'a b' is not a flowbit name"),
    ],
)
def test_flowbit_errors(value: str, why: str) -> None:
    assert reason(f"flowbits:{value};") == why


def test_informational_options() -> None:
    rule = parse(
        "rev:3; gid:5; classtype:trojan-activity; priority:2; reference:cve,2016-1; "
        "metadata:created_at 2020_01_01, tag Mirai; target:dest_ip;"
    )
    assert (rule.rev, rule.gid, rule.classtype, rule.priority) == (3, 5, "trojan-activity", 2)
    assert rule.references == ("cve,2016-1",)
    assert rule.metadata == ("created_at 2020_01_01", "tag Mirai")
    assert rule.msg == "test"
    assert parse("").msg == "test" and parse("").rev == 1


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ("byte_test:4,>,1,0;", "unsupported keyword 'byte_test'"),
        ("file_data;", "unsupported keyword 'file_data'"),
        ("classtype:made-up;", "unknown classtype 'made-up' (not in classification.config)"),
        ("priority:0;", "priority: must be at least 1, got 0"),
        ("rev:x;", "rev: expected a number, got 'x'"),
        ("target:both;", "target: expected src_ip or dest_ip, got 'both'"),
        ('msg:"again";', "'msg' given twice"),
        ('content:"a";;', "empty option (two ';' in a row?)"),
    ],
)
def test_option_errors(options: str, why: str) -> None:
    assert reason(options) == why


# -- the header ------------------------------------------------------------------------------


def test_header() -> None:
    rule = parse("", "drop udp 10.0.0.1 1024: <> [192.168.1.0/24,10.1.1.1] [53,5353]")
    assert (rule.action, rule.proto, rule.bidirectional) == (Action.DROP, "udp", True)
    assert rule.src.include == net("10.0.0.1/32")
    assert rule.sport.include == ((1024, 65535),)
    assert rule.dst.include == net("10.1.1.1/32", "192.168.1.0/24")
    assert rule.dport.include == ((53, 53), (5353, 5353))
    for action in ("alert", "drop", "reject", "pass"):
        assert parse("", f"{action} ip any any -> any any").action is Action(action)
    for proto in (
        "icmp",
        "http",
        "dns",
        "tls",
        "mqtt",
        "modbus",
        "telnet",
        "ssh",
        "coap",
        "ssdp",
        "mdns",
        "snmp",
        "dhcp",
        "ftp",
        "smtp",
        "ntp",
    ):
        assert parse("", f"alert {proto} any any -> any any").proto == proto


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (
            "alert tcp any any any any",
            "header: expected 'action proto source sport -> "
            "destination dport', got 'alert tcp any any any any'",
        ),
        (
            "log tcp any any -> any any",
            "unknown action 'log' (expected alert, drop, reject or pass)",
        ),
        ("alert smb any any -> any any", "unknown protocol 'smb'"),
        ("alert tcp any any <- any any", "direction must be '->' or '<>', got '<-'"),
        (
            "alert tcp 10.0.0.300 any -> any any",
            "source address: '10.0.0.300' is not an IP address, network or range",
        ),
        ("alert tcp any 80:70 -> any any", "source port: port range '80:70' is reversed"),
        (
            "alert tcp any any -> any 70000",
            "destination port: port '70000' is out of range (0-65535)",
        ),
        (
            "alert tcp any any -> any http",
            "destination port: 'http' is not a port, a range N:M or any",
        ),
        ("alert tcp any any -> !any any", "destination address: '!any' matches no address"),
        ("alert tcp any any -> any !any", "destination port: '!any' matches no port"),
        (
            "alert tcp any any -> any [80,!80]",
            "destination port: '[80,!80]' matches no port (everything it lists is negated)",
        ),
        (
            "alert tcp [10.0.0.0/8,!10.0.0.0/8] any -> any any",
            "source address: '[10.0.0.0/8,!10.0.0.0/8]' matches no address (everything it lists "
            "is negated)",
        ),
        (
            "alert tcp [1.2.3.4 any -> any any",
            "header: unbalanced '[' and ']' in 'alert tcp [1.2.3.4 any -> any any'",
        ),
        (
            "alert tcp [1.2.3.4]] any -> any any",
            "header: unbalanced '[' and ']' in 'alert tcp [1.2.3.4]] any -> any any'",
        ),
        (
            "alert tcp [1.2.3.4]x any -> any any",
            "source address: unexpected text after ']' in '[1.2.3.4]x'",
        ),
        (
            "alert tcp [1.2.3.4,] any -> any any",
            "source address: empty address (a list with a stray ',' or '[]'?)",
        ),
        ("alert tcp $NOPE any -> any any", "source address: undefined variable $NOPE"),
        (
            "alert tcp $HTTP_PORTS any -> any any",
            "source address: $HTTP_PORTS is a port variable, not an address",
        ),
        (
            "alert tcp any $HOME_NET -> any any",
            "source port: $HOME_NET is an address variable, not a port",
        ),
    ],
)
def test_header_errors(header: str, why: str) -> None:
    assert reason("", header) == why


@pytest.mark.parametrize(
    ("text", "include", "exclude"),
    [
        ("any", (), ()),
        ("!80", (), ((80, 80),)),
        (":1023", ((0, 1023),), ()),
        ("[80,443,8000:8080]", ((80, 80), (443, 443), (8000, 8080)), ()),
        ("[1:100,!50]", ((1, 100),), ((50, 50),)),
        ("[!80,!443]", (), ((80, 80), (443, 443))),
        ("![80,[!443,8080]]", ((443, 443),), ((80, 80), (8080, 8080))),
        ("[1:10,5:20,21]", ((1, 21),), ()),
        ("$FILE_DATA_PORTS", ((80, 80), (110, 110), (143, 143)), ()),
        ("$SHELLCODE_PORTS", (), ((80, 80),)),
    ],
)
def test_ports(text: str, include: tuple, exclude: tuple) -> None:
    ports = parse("", f"alert tcp any any -> any {text}").dport
    assert (ports.include, ports.exclude) == (include, exclude)


@pytest.mark.parametrize(
    ("text", "include", "exclude"),
    [
        ("any", (), ()),
        ("192.168.1.5/24", net("192.168.1.0/24"), ()),
        ("[10.0.0.1, 10.0.0.2]", net("10.0.0.1/32", "10.0.0.2/32"), ()),
        ("[10.0.0.0/8,!10.1.0.0/16]", net("10.0.0.0/8"), net("10.1.0.0/16")),
        # Suricata's reading: a '!' before a list negates each element.
        ("![10.0.0.0/8,[!192.168.0.0/16]]", net("192.168.0.0/16"), net("10.0.0.0/8")),
        ("10.0.0.0-10.0.0.3", net("10.0.0.0/30"), ()),
        ("[fe80::/10,::1]", net("::1/128", "fe80::/10"), ()),
        ("$HOME_NET", HOME, ()),
        ("$EXTERNAL_NET", (), HOME),
        ("!$EXTERNAL_NET", HOME, ()),
        ("[$HOME_NET,!192.168.7.7]", HOME, net("192.168.7.7/32")),
        ("[any,!10.0.0.1]", (), net("10.0.0.1/32")),
    ],
)
def test_addresses(text: str, include: tuple, exclude: tuple) -> None:
    addresses = parse("", f"alert tcp any any -> {text} any").dst
    assert (addresses.include, addresses.exclude) == (include, exclude)


# -- variables -------------------------------------------------------------------------------


def test_variables_from_the_config_override_and_extend_the_defaults() -> None:
    variables = load_variables(
        {
            "HOME_NET": "[10.9.0.0/16]",
            "PLCS": "[$IOT_NET,!10.9.9.9]",
            "$IOT_NET": "$HOME_NET",
            "WEB_PORTS": "[$HTTP_PORTS,8080]",
        }
    )
    rule = parse("", "alert tcp $EXTERNAL_NET any -> $PLCS $WEB_PORTS", variables)
    assert rule.src.exclude == net("10.9.0.0/16") and rule.src.include == ()
    assert (rule.dst.include, rule.dst.exclude) == (net("10.9.0.0/16"), net("10.9.9.9/32"))
    assert rule.dport.include == ((80, 80), (8080, 8080))
    assert set(DEFAULT_VARS) <= set(load_variables({}).values)


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        (
            {"HOME_NET": "[10.0.0.0/8"},
            "where: detect.vars.HOME_NET: unbalanced '[' in '[10.0.0.0/8'",
        ),
        ({"HOME_NET": "$NOPE"}, "where: detect.vars.HOME_NET: undefined variable $NOPE"),
        ({"A": "$B", "B": "$A"}, "where: detect.vars.A: variable $A refers to itself"),
        (
            {"MQTT_PORTS": "[1883,mqtt]"},
            "where: detect.vars.MQTT_PORTS: 'mqtt' is not a port, a range N:M or any",
        ),
        ({"LAN": "80"}, "where: detect.vars.LAN: '80' is not an IP address, network or range"),
        (
            {"BAD NAME": "any"},
            "where: detect.vars: 'BAD NAME' is not a variable name (letters, digits, _)",
        ),
    ],
)
def test_bad_variables_are_config_errors(overrides: dict[str, str], why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_variables(overrides, "where")
    assert str(caught.value) == why


# -- files -----------------------------------------------------------------------------------


def test_lines_comments_and_multi_line_rules() -> None:
    text = "\n".join(
        [
            "# a comment",
            "",
            '#alert tcp any any -> any any (msg:"disabled"; sid:1;)',
            'alert tcp any any -> any any (msg:"two lines"; \\',
            '  content:"ab\\',
            'cd"; sid:2;)',
            '   alert tcp any any -> any 80 (msg:"indented"; sid:3;)',
            'alert tcp any any -> any any (msg:"broken"; \\',
            "  byte_test:1,>,2,0; sid:4;)",
            'alert tcp any any -> any any (msg:"after"; sid:5;)',
        ]
    )
    rules, rejected = parse_rules(text, "f.rules", VARS)
    assert [(r.sid, r.line) for r in rules] == [(2, 4), (3, 7), (5, 10)]
    assert rules[0].inspections == (Content(b"abcd"),)
    assert rules[0].file == "f.rules" and rules[0].text.startswith("alert tcp")
    assert [(r.line, r.sid, r.reason) for r in rejected] == [
        (8, 4, "unsupported keyword 'byte_test'")
    ]


def test_rules_without_sid_or_msg_or_structure_are_rejected() -> None:
    cases = {
        'alert tcp any any -> any any (msg:"x";)': (0, "missing 'sid'"),
        "alert tcp any any -> any any (sid:7;)": (7, "missing 'msg'"),
        "alert tcp any any -> any any": (0, "no options: expected '(' after the header"),
        'alert tcp any any -> any any (msg:"x"; sid:8;': (8, "the options must end with ')'"),
        'alert tcp any any -> any any (msg:"x"; sid:9)': (
            9,
            "the last option must end with ';': 'sid:9'",
        ),
    }
    for text, (sid, why) in cases.items():
        rules, rejected = parse_rules(text, "f", VARS)
        assert not rules
        assert [(r.sid, r.reason) for r in rejected] == [(sid, why)], text


def test_duplicate_sids_keep_the_first() -> None:
    text = (
        'alert tcp any any -> any any (msg:"one"; sid:5;)\n'
        'alert tcp any any -> any any (msg:"two"; sid:5;)\n'
        'alert tcp any any -> any any (msg:"other gid"; sid:5; gid:3;)\n'
    )
    rules, rejected = parse_rules(text, "f.rules", VARS)
    assert [r.msg for r in rules] == ["one", "other gid"]
    assert [str(r) for r in rejected] == ["f.rules:2: sid 5: duplicate sid 5 (first at f.rules:1)"]


def test_load_rules_from_files_directories_and_globs(tmp_path: Path) -> None:
    (tmp_path / "a.rules").write_text('alert tcp any any -> any any (msg:"a"; sid:1;)\n')
    (tmp_path / "b.rules").write_text(
        'alert tcp any any -> any any (msg:"b"; sid:1;)\n'
        'alert tcp any any -> any any (msg:"c"; sid:2;)\n'
    )
    (tmp_path / "latin1.rules").write_bytes(
        b'alert tcp any any -> any any (msg:"\xff"; content:"\xfe|00|"; sid:3;)\n'
    )
    rules, rejected = load_rules(
        [
            tmp_path / "a.rules",
            str(tmp_path / "b*.rules"),
            tmp_path / "missing.rules",
            str(tmp_path / "z*.rules"),
        ],
        VARS,
    )
    assert [(r.file, r.sid) for r in rules] == [
        (str(tmp_path / "a.rules"), 1),
        (str(tmp_path / "b.rules"), 2),
    ]
    assert [str(r) for r in rejected] == [
        f"{tmp_path / 'b.rules'}:1: sid 1: duplicate sid 1 (first at {tmp_path / 'a.rules'}:1)",
        f"{tmp_path / 'missing.rules'}:0: cannot read rule file: No such file or directory",
        f"{tmp_path / 'z*.rules'}:0: no rule files match",
    ]
    rules, rejected = load_rules([tmp_path], VARS)
    assert rejected[0].reason.startswith("duplicate sid 1")
    (bad,) = [r for r in rules if r.sid == 3]
    assert bad.inspections == (Content(b"\xfe\x00"),)  # bytes that are not UTF-8 kept as is


# -- classification and severity --------------------------------------------------------------


def test_shipped_classifications() -> None:
    classes = shipped_classifications()
    assert classes["attempted-admin"].priority == 1
    assert classes["attempted-recon"].priority == 2
    assert classes["misc-activity"].priority == 3
    assert classes["tcp-connection"].priority == 4
    for path in et_files():
        used = set(re.findall(r"classtype:\s*([\w-]+)", path.read_text()))
        assert used <= set(classes), used - set(classes)


def test_severity_from_priority_or_classtype() -> None:
    assert severity_of(parse("classtype:trojan-activity;")) is Severity.HIGH
    assert severity_of(parse("classtype:bad-unknown;")) is Severity.MEDIUM
    assert severity_of(parse("classtype:network-scan;")) is Severity.LOW
    assert severity_of(parse("classtype:tcp-connection;")) is Severity.INFO
    assert severity_of(parse("classtype:tcp-connection; priority:1;")) is Severity.HIGH
    assert severity_of(parse("classtype:trojan-activity; priority:3;")) is Severity.LOW
    assert severity_of(parse("priority:9;")) is Severity.INFO
    assert severity_of(parse("")) is Severity.LOW  # Suricata's default priority, 3


def test_bad_classification_file(tmp_path: Path) -> None:
    path = tmp_path / "classification.config"
    path.write_text(
        "# ok\nconfig classification: a,A thing, with a comma,2\nconfig classification: b\n"
    )
    with pytest.raises(ClassificationError, match=r"classification.config:3: expected"):
        load_classifications(path)
    path.write_text("config classification: a,A,1\nconfig classification: a,B,2\n")
    with pytest.raises(ClassificationError, match=r":2: classtype 'a' defined twice"):
        load_classifications(path)
    path.write_text("config classification: a,A thing, with a comma,2\n")
    assert load_classifications(path)["a"].description == "A thing, with a comma"


# -- iotsec rules check ----------------------------------------------------------------------


def iotsec(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", "rules", "check", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_cli_check_json_and_exit_codes(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = iotsec(config, "--json", *map(str, et_files()))
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"accepted", "rejected"}
    assert report["accepted"] == 288
    assert len(report["rejected"]) == 5
    for item in report["rejected"]:
        assert set(item) == {"file", "line", "sid", "reason"}
        assert item["line"] > 0 and item["sid"] > 2000000
    assert iotsec(config, "--json", "--allow-rejects", *map(str, et_files())).returncode == 0


def test_cli_check_text_output_and_config_variables(tmp_path: Path) -> None:
    rules = tmp_path / "local.rules"
    rules.write_text(
        'alert tcp $PLC_NET any -> any 502 (msg:"write"; content:"|06|"; sid:1;)\n'
        'alert tcp any any -> any any (msg:"x"; byte_jump:1,0; sid:2;)\n'
    )
    config = write_config(tmp_path, '[detect.vars]\nPLC_NET = "[10.20.0.0/16]"\n')
    done = iotsec(config, str(rules))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{rules}:2: sid 2: unsupported keyword 'byte_jump'",
        "1 rules accepted, 1 rejected",
    ]
    without = iotsec(write_config(tmp_path / "plain"), "--json", str(rules))
    assert json.loads(without.stdout)["rejected"][0]["reason"] == (
        "source address: undefined variable $PLC_NET"
    )


def test_cli_check_reports_a_bad_variable(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[detect.vars]\nHOME_NET = "[10.0.0.0/8"\n')
    done = iotsec(config, str(tmp_path))
    assert done.returncode == 1
    assert f"{config}: detect.vars.HOME_NET: unbalanced '['" in done.stderr


def test_cli_check_without_paths_uses_the_configured_files(tmp_path: Path) -> None:
    rules = tmp_path / "mine.rules"
    rules.write_text('alert tcp any any -> any any (msg:"x"; sid:1;)\n')
    config = write_config(tmp_path, f'[detect]\nrule_files = ["{tmp_path}/*.rules"]\n')
    done = iotsec(config, "--json")
    assert (done.returncode, json.loads(done.stdout)) == (0, {"accepted": 1, "rejected": []})
    shipped = iotsec(write_config(tmp_path / "shipped"), "--json")
    assert shipped.returncode == 0, shipped.stdout  # the shipped pack (if any) loads cleanly


def test_target_names_the_attacked_side() -> None:
    # Suricata's keyword: the side named is the target, so the other one is the attacker.
    assert parse("target:dest_ip;").target == "dest_ip"
    assert parse("target:src_ip;").target == "src_ip"
    assert parse("").target == "", "without it the engine decides from the flow"
    assert reason("target:src_ip; target:dest_ip;") == "'target' given twice"
    # An ET rule as ET writes it (ET OPEN's emerging-telnet.rules, with target added).
    et = (
        'alert tcp $EXTERNAL_NET any -> $HOME_NET 23 (msg:"ET TELNET busybox MIRAI hackers -'
        ' Possible Brute Force Attack"; flow:to_server,established; content:"MIRAI";'
        " fast_pattern; target:dest_ip; classtype:attempted-admin; sid:2023019; rev:2;"
        " metadata:created_at 2016_08_08;)"
    )
    (rule,), rejected = parse_rules(et, "emerging-telnet.rules", VARS)
    assert rejected == [] and rule.target == "dest_ip"


def test_the_shipped_rules_on_a_servers_answer_target_the_server() -> None:
    rules, rejected = load_rules([ROOT / "rules" / "packet" / "iot.rules"], VARS)
    assert rejected == []
    answers = [r for r in rules if r.flow is not None and r.flow.to_server is False]
    assert answers and all(r.target == "src_ip" for r in answers if "TELNET" in r.msg)
    by_sid = {r.sid: r for r in rules}
    assert [by_sid[s].target for s in (9100001, 9100002, 9100003)] == ["src_ip"] * 3
    assert by_sid[9100004].target == "dest_ip", "the brute force's source is the attacker"
