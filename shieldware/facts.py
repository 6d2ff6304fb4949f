"""RequestFacts: the one frozen view of a request that every signal sees, and how front doors build it."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from shieldware.tls_hello import HEADER as TLS_HELLO_HEADER

# Limits that keep hostile input cheap: a 100 KB cookie header is parsed, but only this many
# cookies are kept, and the oversize is recorded as a note so a signal can weigh it.
MAX_COOKIES = 64
COOKIE_HEADER_SOFT_LIMIT = 8192
MAX_FORWARDED_HOPS = 32

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """Everything signals may know about one request, with `now` as the request's time.

    Header names are lowercase and kept in arrival order; `header_map` joins repeated
    headers the way HTTP says they combine (`cookie` with "; ", others with ", ").
    `notes` lists what was malformed about the request (for evidence, never for raising).
    """

    client_ip: str
    method: str
    path: str
    now: float
    headers: tuple[tuple[str, str], ...] = ()
    header_map: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    query: str = ""
    host: str = ""
    scheme: str = "http"
    http_version: str = "1.1"
    peer_ip: str = ""
    tls_fingerprint: str | None = None
    notes: tuple[str, ...] = ()
    status: int | None = None  # known only when replaying a log line
    source: str = "live"  # "live" or "log": signals that need live-only data check this
    # Selected body fields a front door extracted for signals, e.g. (("account", "alice"),) from a
    # login form (see shieldware.outcomes.capture_account). Never a password.
    form_fields: tuple[tuple[str, str], ...] = ()
    # The connection is the client's own: the server holding it is shieldware's proxy and the peer
    # is not a trusted proxy, so `http_version` is what the client itself spoke (behind an edge,
    # or a server that rewrote the client address, it is the edge's).
    own_connection: bool = False

    @property
    def user_agent(self) -> str:
        return self.header_map.get("user-agent", "")

    def header(self, name: str, default: str = "") -> str:
        return self.header_map.get(name, default)

    @property
    def header_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.headers)

    @property
    def url(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    @property
    def over_https(self) -> bool:
        """Whether the client reached the shop over https: this server's own scheme, or a proxy in
        front that terminated TLS saying so (`X-Forwarded-Proto`, or `proto=` in `Forwarded`).
        Read from anyone: it marks shieldware's cookies Secure, and a browser on plain http
        refuses to store those, so a forged claim costs its sender, never helps it."""
        if self.scheme in ("https", "wss"):
            return True
        header_map = self.header_map
        return (header_map.get("x-forwarded-proto", "").lower().startswith("https")
                or "proto=https" in header_map.get("forwarded", "").lower())


_FACT_FIELDS = tuple(RequestFacts.__slots__)
_FACT_NAMES = frozenset(_FACT_FIELDS)
_set = object.__setattr__


def with_client(facts: RequestFacts, client_ip: str, now: float, path: str | None = None,
                query: str | None = None) -> RequestFacts:
    """The same request from another address at another time, on another path if given (the
    fast lane drafts and judges a shape's requests from one model request). Field by field:
    `dataclasses.replace` would run every field through keyword arguments, several times the cost."""
    clone = object.__new__(RequestFacts)
    for name in _FACT_FIELDS:
        _set(clone, name, getattr(facts, name))
    _set(clone, "client_ip", client_ip)
    _set(clone, "now", now)
    if path is not None:
        _set(clone, "path", path)
        _set(clone, "query", query or "")
    return clone


def with_fields(facts: RequestFacts, **changes: Any) -> RequestFacts:
    """A copy of `facts` with these fields changed, copied field by field as `with_client` does
    (forward-auth rebuilds every check's facts as the client's request)."""
    if not changes.keys() <= _FACT_NAMES:
        raise TypeError(f"RequestFacts has no field {sorted(changes.keys() - _FACT_NAMES)}")
    clone = object.__new__(RequestFacts)
    for name in _FACT_FIELDS:
        _set(clone, name, changes[name] if name in changes else getattr(facts, name))
    return clone


# A path segment that URL parsers (browsers', servers') read as "." or "..", percent-encoded or not.
_DOT = frozenset((".", "%2e"))
_DOT_DOT = frozenset(("..", ".%2e", "%2e.", "%2e%2e"))


def remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path: "." and ".." segments (also spelled %2e) resolved,
    never above the root. "/a/../login" is "/login" to most shops, so it must be to us too."""
    if not path.startswith("/"):
        return path  # "*" (OPTIONS) and the like have no segments
    kept: list[str] = []
    segments = path.split("/")
    last = len(segments) - 1
    for i in range(1, last + 1):
        segment = segments[i]
        spelled = segment.lower() if "%" in segment else segment
        if spelled in _DOT_DOT:
            if kept:
                kept.pop()
        elif spelled not in _DOT:
            kept.append(segment)
            continue
        if i == last:  # "/a/b/.." names the directory "/a/"
            kept.append("")
    return "/" + "/".join(kept)


def route_path(path: str, notes: list[str]) -> str:
    """The path as routes are matched and signals read it, spelled as the shops that read it most
    loosely route it: backslashes as slashes (IIS and ASP.NET), path parameters dropped (Java
    servlet containers route "/login;jsessionid=1" and "/static/..;/login" to "/login"), repeated
    slashes merged (nginx's merge_slashes) and dot segments resolved. On a shop that routes
    strictly these spellings are 404s, which lose nothing by being grouped with their look-alike.
    Dot segments add a note: browsers resolve them (and turn backslashes into slashes) before
    sending, so a client that sends them is crafting its URLs. (The fast lane leaves any such
    path to Python.)"""
    if "/." not in path and "//" not in path and ";" not in path and "\\" not in path:
        return path  # nearly every request: nothing to resolve
    if "\\" in path:
        path = path.replace("\\", "/")
    if ";" in path:
        path = _PATH_PARAMETERS.sub("", path)
    while "//" in path:
        path = path.replace("//", "/")
    resolved = remove_dot_segments(path)
    if resolved != path:
        notes.append("path.dot_segments")
    return resolved


_PATH_PARAMETERS = re.compile(r";[^/]*")


def parse_cookies(raw: str) -> tuple[dict[str, str], list[str]]:
    """Parse a Cookie header leniently; return the cookies and notes about what was odd.

    Browsers send `a=1; b=2`. Anything else (no `=`, empty names, thousands of pairs) is
    skipped and noted rather than raised, because a broken cookie is a clue, not an error.
    """
    cookies: dict[str, str] = {}
    notes: list[str] = []
    if len(raw) > COOKIE_HEADER_SOFT_LIMIT:
        notes.append("cookie.oversized")
    for part in raw.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            if part.strip():
                notes.append("cookie.malformed")
            continue
        if len(cookies) >= MAX_COOKIES:
            notes.append("cookie.too_many")
            break
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        cookies.setdefault(name, value)
    return cookies, sorted(set(notes))


# Cached: a front door sees the same few peer addresses over and over, and parsing is not free.
@lru_cache(maxsize=65536)
def normalise_ip(text: str) -> str | None:
    """Return the canonical text of an IP address (IPv4-mapped IPv6 folded to IPv4), or None."""
    text = text.strip()
    if not text:
        return None
    if _is_canonical_ipv4(text):  # the usual case, already in the form ipaddress would print
        return text
    if text.startswith("["):  # "[2001:db8::1]:443"
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # "203.0.113.7:5555"
        text = text.split(":", 1)[0]
    text = text.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def _is_canonical_ipv4(text: str) -> bool:
    """True for dotted-quad IPv4 text exactly as `str(ipaddress.ip_address(text))` writes it
    (four decimal octets 0-255, no leading zeros), checked without building an address object."""
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not (part.isascii() and part.isdigit()) or len(part) > 3 or (len(part) > 1 and part[0] == "0"):
            return False
        if int(part) > 255:
            return False
    return True


# The headers a proxy may write the client's address into. A trusted proxy maintains one of them
# and passes the client's copies of the others on untouched, so only the one it maintains says
# anything: believing another (nginx appends to X-Forwarded-For and passes a client's own
# `Forwarded: for=66.249.66.1` through) would let any client name its own address.
CLIENT_IP_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def client_ip_header(name: str) -> str:
    """The header name, lowercase; ValueError naming the choices for anything else."""
    lowered = name.strip().lower() if isinstance(name, str) else ""
    if lowered not in CLIENT_IP_HEADERS:
        raise ValueError(f"client_ip_header {name!r}: the header your trusted proxies write the client's "
                         f"address into, one of {', '.join(CLIENT_IP_HEADERS)}")
    return lowered


class TrustedProxies:
    """Answers 'may this peer tell us who the client is?' with a small cache per address, and says
    which header such a peer tells it in (`header`, one of CLIENT_IP_HEADERS)."""

    __slots__ = ("_cache", "header", "networks")

    def __init__(self, cidrs: Iterable[str | IPNetwork] = (), header: str = "x-forwarded-for") -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(
            c if not isinstance(c, str) else ipaddress.ip_network(c, strict=False) for c in cidrs
        )
        self.header = client_ip_header(header)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, ip: str) -> bool:
        known = self._cache.get(ip)
        if known is not None:
            return known
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            trusted = False
        else:
            trusted = any(addr in net for net in self.networks if net.version == addr.version)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[ip] = trusted
        return trusted


_NO_PROXIES = TrustedProxies()  # shared: an empty list trusts nobody and caches nothing


def _forwarded_for(value: str) -> list[str] | None:
    """Extract the `for=` chain of an RFC 7239 Forwarded header; None when it is malformed."""
    hops: list[str] = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, sep, val = pair.strip().partition("=")
            if not sep:
                if pair.strip():
                    return None
                continue
            if key.strip().lower() == "for":
                hops.append(val.strip().strip('"'))
    return hops


def resolve_client_ip(
    peer_ip: str, header_map: Mapping[str, str], trusted: TrustedProxies
) -> tuple[str, list[str]]:
    """Walk the trusted proxies' header (`trusted.header`) right to left, but only while the hop is a
    trusted proxy.

    The client is the first address (from the right) that is not one of our proxies: anything
    left of it was written by the client itself and could be spoofed. The other forwarding
    headers are the client's own, whoever passed them on, and are not read.
    """
    notes: list[str] = []
    if not trusted or not trusted.trusts(peer_ip):
        return peer_ip, notes
    value = header_map.get(trusted.header)
    if not value:
        return peer_ip, notes
    if trusted.header == "forwarded":
        chain = _forwarded_for(value)
        if chain is None:
            notes.append("forwarded.malformed")
            return peer_ip, notes
    else:
        chain = [hop for hop in value.split(",") if hop.strip()]
    client = peer_ip
    hops = chain[-MAX_FORWARDED_HOPS:]
    for left in range(len(hops) - 1, -1, -1):
        ip = normalise_ip(hops[left])
        if ip is None:
            notes.append("forwarded.bad_address")
            break
        client = ip
        # The leftmost hop is the client whoever it is: asking whether we trust it is wasted work.
        if left == 0 or not trusted.trusts(ip):
            break
    return client, notes


# Header names as text, by the tuple of their bytes: a client stack sends the same names in the
# same order on every request, so one lookup replaces a decode and a lower() per header.
# Bounded: past the bound, new name lists are decoded one by one and not kept.
_NAME_LISTS: dict[tuple[bytes, ...], tuple[str, ...]] = {}
_MAX_NAME_LISTS = 4096


def _header_names(raw_names: tuple[bytes, ...]) -> tuple[str, ...]:
    names = _NAME_LISTS.get(raw_names)
    if names is None:
        names = tuple([name.decode("latin-1").lower() for name in raw_names])
        if len(_NAME_LISTS) < _MAX_NAME_LISTS:
            _NAME_LISTS[raw_names] = names
    return names


def _decode_headers(
    raw_headers: list[tuple[bytes, bytes]] | tuple,
) -> tuple[tuple[tuple[str, str], ...], dict[str, str], bool]:
    """Decode ASGI header bytes (latin-1 never fails) and fold repeats into one map.

    Also says whether any value carried non-ASCII bytes (invalid in HTTP, never sent by
    browsers). Values are decoded in one piece and split again: HTTP forbids line breaks in a
    value, so a newline cannot be part of one (a value that has one anyway, from a hand-made
    scope, takes the one-by-one path). Repeated names take a slower path that joins them the
    way HTTP combines them.
    """
    if not raw_headers:
        return (), {}, True
    raw_names, raw_values = zip(*raw_headers, strict=True)
    names = _header_names(raw_names)
    joined = b"\n".join(raw_values)
    ascii_only = joined.isascii() and b"\x7f" not in joined  # printable ASCII only: nothing above 126
    values = joined.decode("latin-1").split("\n")
    if len(values) != len(names):
        values = [value.decode("latin-1") for value in raw_values]
    header_map = dict(zip(names, values, strict=True))
    if len(header_map) == len(names):
        return tuple(zip(names, values, strict=True)), header_map, ascii_only
    header_map = {}
    for name, value in zip(names, values, strict=True):
        previous = header_map.get(name)
        if previous is None:
            header_map[name] = value
        else:
            header_map[name] = previous + ("; " if name == "cookie" else ", ") + value
    return tuple(zip(names, values, strict=True)), header_map, ascii_only


def header_map_of(raw_headers: list[tuple[bytes, bytes]] | tuple) -> dict[str, str]:
    """The headers of an ASGI scope by name, repeats folded, as RequestFacts.header_map has them
    (for a refusal page, which reads a header or two and needs no other fact)."""
    return _decode_headers(raw_headers)[1]


_NO_COOKIES: Mapping[str, str] = MappingProxyType({})
_CACHED_COOKIE_HEADER = 1024  # longer Cookie headers are parsed every time, never kept


@lru_cache(maxsize=8192)
def _parsed_cookies(raw: str) -> tuple[Mapping[str, str], tuple[str, ...]]:
    cookies, notes = parse_cookies(raw)
    return cookies, tuple(notes)


def _cookies_of(raw: str) -> tuple[Mapping[str, str], Iterable[str]]:
    """Parsed cookies, cached by header text, as a client sends the same one on each request.

    The mapping is shared by every request that sent that header: read it, never change it
    (a plain dict rather than a read-only proxy, whose lookups cost more on the hot path).
    """
    if len(raw) > _CACHED_COOKIE_HEADER:
        return parse_cookies(raw)
    return _parsed_cookies(raw)


def cookie_notes(raw: str) -> Iterable[str]:
    """What reading a Cookie header notes (nothing for a well-formed one), as the facts would."""
    return _cookies_of(raw)[1]


def _tls_fingerprint(header_map: Mapping[str, str], peer_ip: str, trusted: TrustedProxies | None,
                     tls_header: str | None, own_tls: bool) -> str | None:
    if trusted is not None and trusted.trusts(peer_ip):
        return (header_map.get(tls_header) or None) if tls_header else None
    return header_map.get(TLS_HELLO_HEADER) if own_tls else None


def facts_from_scope(
    scope: Mapping[str, Any],
    now: float,
    trusted: TrustedProxies | None = None,
    tls_header: str | None = None,
    own_tls: bool = False,
    own_connections: bool = False,
) -> RequestFacts:
    """Build RequestFacts from an ASGI HTTP or websocket scope. Never raises on client input.

    The TLS fingerprint is a trusted edge's `tls_header`, or with `own_tls` (the proxy serves https
    and read the ClientHello itself) its `x-shieldware-tls` when the peer is the client: a trusted
    proxy's own handshake says nothing of the client behind it. With `own_connections` (the proxy
    holds the clients' connections itself) a peer that is not a trusted proxy is the client, and
    the facts say so (`own_connection`)."""
    headers, header_map, ascii_only = _decode_headers(scope.get("headers") or ())
    client = scope.get("client")
    peer_ip = normalise_ip(str(client[0])) if client else None
    peer_ip = peer_ip or "0.0.0.0"
    notes: list[str] = []
    client_ip, ip_notes = resolve_client_ip(peer_ip, header_map, trusted or _NO_PROXIES)
    notes.extend(ip_notes)
    cookies: Mapping[str, str] = _NO_COOKIES
    raw_cookie = header_map.get("cookie")
    if raw_cookie:
        cookies, cookie_notes = _cookies_of(raw_cookie)
        notes.extend(cookie_notes)
    if not ascii_only:
        notes.append("header.non_ascii")
    raw_query = scope.get("query_string") or b""
    path = route_path(scope.get("path", "/") or "/", notes)
    tls_fingerprint = None
    if tls_header or own_tls:
        tls_fingerprint = _tls_fingerprint(header_map, peer_ip, trusted, tls_header, own_tls)
    return RequestFacts(
        client_ip=client_ip,
        method=scope.get("method", "GET"),
        path=path,
        now=now,
        headers=headers,
        header_map=header_map,
        cookies=cookies,
        query=raw_query.decode("latin-1"),
        host=header_map.get("host", ""),
        scheme=scope.get("scheme", "http"),
        http_version=scope.get("http_version", "1.1"),
        peer_ip=peer_ip,
        tls_fingerprint=tls_fingerprint,
        notes=tuple(notes),
        own_connection=own_connections and not (trusted is not None and trusted.trusts(peer_ip)),
    )


def facts_from_headers(
    client_ip: str,
    method: str,
    path: str,
    now: float,
    headers: Iterable[tuple[str, str]] = (),
    **extra: Any,
) -> RequestFacts:
    """Build RequestFacts from already-decoded parts (log lines, tests, forward-auth)."""
    encoded = [(n.encode("latin-1", "replace"), v.encode("latin-1", "replace")) for n, v in headers]
    header_tuple, header_map, _ = _decode_headers(encoded)
    path, _, query = path.partition("?")
    cookies: dict[str, str] = {}
    notes: list[str] = []
    if "cookie" in header_map:
        cookies, notes = parse_cookies(header_map["cookie"])
    path = route_path(path or "/", notes)
    return RequestFacts(
        client_ip=normalise_ip(client_ip) or client_ip,
        method=method,
        path=path or "/",
        now=now,
        headers=header_tuple,
        header_map=header_map,
        cookies=cookies,
        query=extra.pop("query", query),
        host=header_map.get("host", ""),
        notes=tuple(notes) + tuple(extra.pop("notes", ())),
        **extra,
    )
