"""Access-log formats: nginx log_format / Apache LogFormat strings compiled to field layouts; detection.

A text format is a sequence of literals and fields ("split" layout): the fast scanner walks a
line matching each literal and cutting the field up to the next literal's first byte (or the
closing quote of a quoted field). JSON-lines logs (nginx `escape=json`, Caddy, shieldware's
own logs) share one key-mapping extractor instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import IntEnum


class Field(IntEnum):
    """What a field of a text log holds. Values are shared with the Numba scanner."""

    IGNORE = 0
    ADDR = 1
    TIME_LOCAL = 2
    TIME_ISO = 3
    MSEC = 4
    REQUEST = 5
    METHOD = 6
    URI = 7
    STATUS = 8
    SIZE = 9
    REFERER = 10
    USER_AGENT = 11
    XFF = 12


# nginx variables the analyzer understands; any other `$variable` is a field that is skipped.
NGINX_VARIABLES = {
    "remote_addr": Field.ADDR,
    "binary_remote_addr": Field.IGNORE,
    "time_local": Field.TIME_LOCAL,
    "time_iso8601": Field.TIME_ISO,
    "msec": Field.MSEC,
    "request": Field.REQUEST,
    "request_method": Field.METHOD,
    "request_uri": Field.URI,
    "uri": Field.URI,
    "status": Field.STATUS,
    "body_bytes_sent": Field.SIZE,
    "bytes_sent": Field.SIZE,
    "http_referer": Field.REFERER,
    "http_user_agent": Field.USER_AGENT,
    "http_x_forwarded_for": Field.XFF,
}

# Apache LogFormat directives, translated to the nginx spelling (Apache's %t carries its brackets).
APACHE_DIRECTIVES = {
    "%h": "$remote_addr",
    "%a": "$remote_addr",
    "%l": "$remote_ident",
    "%u": "$remote_user",
    "%t": "[$time_local]",
    "%r": "$request",
    "%>s": "$status",
    "%s": "$status",
    "%b": "$body_bytes_sent",
    "%B": "$body_bytes_sent",
    "%O": "$bytes_sent",
    "%m": "$request_method",
    "%U": "$uri",
    "%{Referer}i": "$http_referer",
    "%{User-Agent}i": "$http_user_agent",
    "%{User-agent}i": "$http_user_agent",
    "%{X-Forwarded-For}i": "$http_x_forwarded_for",
    "%D": "$request_time_us",
    "%T": "$request_time",
    "%v": "$server_name",
    "%V": "$host",
}

COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
COMMON = '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent'
# The widespread "combined plus X-Forwarded-For" layout of nginx behind a load balancer.
COMBINED_XFF = COMBINED + ' "$http_x_forwarded_for"'

PRESETS = {"combined": COMBINED, "common": COMMON, "combined-xff": COMBINED_XFF}


class FormatError(ValueError):
    """A --format string the analyzer cannot use; the message says what is wrong and where."""


@dataclass(frozen=True)
class SplitLayout:
    """A compiled text format: literals[i] precedes fields[i]; literals[-1] trails the last field."""

    name: str
    source: str
    literals: tuple[bytes, ...]
    fields: tuple[Field, ...]

    @property
    def kind(self) -> str:
        return "split"

    def has(self, field: Field) -> bool:
        return field in self.fields


@dataclass(frozen=True)
class JsonLayout:
    """JSON lines: fields found by key (nginx escape=json, Caddy, shieldware's proxy/decision logs)."""

    name: str = "json"

    @property
    def kind(self) -> str:
        return "json"


LogLayout = SplitLayout | JsonLayout

_VARIABLE = re.compile(r"\$(\{\w+\}|\w+)")


def apache_to_nginx(fmt: str) -> str:
    """Translate an Apache LogFormat string to nginx variables (unknown directives become ignored fields)."""
    out = fmt
    for directive in sorted(APACHE_DIRECTIVES, key=len, reverse=True):
        out = out.replace(directive, APACHE_DIRECTIVES[directive])
    return re.sub(r"%(?:\{[^}]*\}[a-zA-Z]|[<>]?[a-zA-Z])", "$apache_unknown", out)


def compile_format(text: str, name: str | None = None) -> SplitLayout:
    """Compile a preset name, an nginx log_format string or an Apache LogFormat string."""
    source = PRESETS.get(text, text)
    if "%" in source and "$" not in source:
        source = apache_to_nginx(source)
    literals: list[bytes] = []
    fields: list[Field] = []
    pos = 0
    for match in _VARIABLE.finditer(source):
        literal = source[pos : match.start()]
        if fields and not literal:
            raise FormatError(
                f"format {text!r}: ${match.group(1)} follows another variable with nothing "
                "between them, so the two fields cannot be told apart"
            )
        literals.append(literal.encode("utf-8"))
        fields.append(NGINX_VARIABLES.get(match.group(1).strip("{}"), Field.IGNORE))
        pos = match.end()
    if not fields:
        raise FormatError(
            f"format {text!r}: no $variables found (expected e.g. '$remote_addr ... \"$request\"')"
        )
    literals.append(source[pos:].encode("utf-8"))
    has_addr = Field.ADDR in fields
    has_time = any(f in fields for f in (Field.TIME_LOCAL, Field.TIME_ISO, Field.MSEC))
    has_request = Field.REQUEST in fields or Field.URI in fields
    if not (has_addr and has_time and has_request):
        raise FormatError(
            f"format {text!r}: needs $remote_addr, a time ($time_local, $time_iso8601 or $msec) "
            "and $request (or $request_uri) to analyse traffic"
        )
    return SplitLayout(
        name or (text if text in PRESETS else "custom"), source, tuple(literals), tuple(fields)
    )


# ---- detection ----------------------------------------------------------------------------------

_CANDIDATES = ("combined-xff", "combined", "common")


def _split_matches(layout: SplitLayout, line: str) -> bool:
    """Cheap Python check that a line starts the way a layout says (detection only; parsing uses the scanner).

    A prefix match, because servers often append fields (request time, upstream) after the
    standard ones, and the scanner ignores what follows the last field it knows.
    """
    return _layout_regex(layout).match(line) is not None


_REGEX_CACHE: dict[str, re.Pattern] = {}


def _layout_regex(layout: SplitLayout) -> re.Pattern:
    cached = _REGEX_CACHE.get(layout.source)
    if cached is not None:
        return cached
    parts = []
    for literal, field in zip(layout.literals, layout.fields, strict=False):
        text = literal.decode("utf-8")
        parts.append(re.escape(text))
        if text.endswith('"'):
            parts.append(r'(?:[^"\\]|\\.)*')
        elif field is Field.STATUS:
            parts.append(r"\d{3}")
        elif field is Field.TIME_LOCAL:
            parts.append(r"\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}")
        else:
            parts.append(r"\S*")
    parts.append(re.escape(layout.literals[-1].decode("utf-8")))
    compiled = re.compile("".join(parts))
    _REGEX_CACHE[layout.source] = compiled
    return compiled


def detect_format(sample: list[str]) -> LogLayout | None:
    """Pick the layout most sample lines follow; None when nothing fits half of them."""
    lines = [line for line in (s.strip("\r\n") for s in sample) if line.strip()]
    if not lines:
        return None
    json_lines = 0
    for line in lines:
        if line.lstrip().startswith("{"):
            try:
                if isinstance(json.loads(line), dict):
                    json_lines += 1
            except ValueError:
                pass
    if json_lines * 2 > len(lines):
        return JsonLayout()
    best, best_hits = None, 0
    for name in _CANDIDATES:
        layout = compile_format(name)
        hits = sum(1 for line in lines if _split_matches(layout, line))
        # The candidates are tried longest first, so a plain combined log is not read as common.
        if hits > best_hits:
            best, best_hits = layout, hits
    if best is None or best_hits * 2 <= len(lines):
        return None
    return best
