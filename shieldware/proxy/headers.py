"""Which headers cross the proxy: hop-by-hop ones are dropped, forwarding ones are (re)written."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from shieldware.decision import SHIELD_HEADER_PREFIXES

# RFC 9110 §7.6.1 connection-specific fields, plus the pre-standard ones still seen in the wild.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection",
    b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
# Headers some stacks read as the request's target in place of its own: Zend Framework 1 (so
# Magento 1 and OpenMage) and older Symfony, Laminas and Yii took X-Original-URL or X-Rewrite-URL
# as the path. A client's copy would have the shop serve a page nobody judged (a stylesheet's
# request with "X-Rewrite-URL: /product/9"), so none passes, whoever sent it: a proxy in front
# passes a client's copy on as it came.
TARGET_OVERRIDE_HEADERS = frozenset({b"x-original-url", b"x-rewrite-url"})
# The client's Expect was already answered by the ASGI server (100 Continue) when we read the body.
REQUEST_HEADERS_DROPPED = HOP_BY_HOP | TARGET_OVERRIDE_HEADERS | {b"expect"}
# Headers that say who the client is: only a trusted peer may have set them; we always rewrite them.
FORWARDING_HEADERS = frozenset({
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-real-ip",
})
# What a Connection header may not take off a request (RFC 9110 §7.6.1 lets it name fields to drop):
# without its Content-Length the body would reach the shop as the next request on a pooled
# connection (request smuggling, past every decision), and without its Host the shop would route
# it to a host nobody judged. Such a request is refused (400).
NEVER_CONNECTION_SPECIFIC = frozenset({b"content-length", b"host"})


def _underscore_spellings(names: frozenset[bytes]) -> frozenset[bytes]:
    """Every spelling of these names with some of their dashes as underscores."""
    spellings: set[bytes] = set()
    for name in names:
        variants = [b""]
        for byte in name:
            char = bytes((byte,))
            variants = [v + c for v in variants for c in ((char, b"_") if char == b"-" else (char,))]
        spellings.update(variants)
    return frozenset(spellings - names)


# CGI-style servers (PHP, WSGI and Rack servers) read "X_Real_IP" as the X-Real-IP we set, since
# both become HTTP_X_REAL_IP, and Django would take whichever came last. nginx and Apache drop
# headers with underscores by default for this reason; we drop the spellings that could pose as
# the forwarding and target headers (the middleware does the same for X-Shield-*: decision.SHIELD_HEADER_PREFIXES).
POSING_HEADERS = _underscore_spellings(FORWARDING_HEADERS | TARGET_OVERRIDE_HEADERS)
# Every request header the loop below does more with than pass it on.
_LOOKED_AT = REQUEST_HEADERS_DROPPED | FORWARDING_HEADERS | POSING_HEADERS | {b"content-length", b"host"}


# RFC 3986 §3.2.2-3.2.3 host [":" port]: an IPv6 literal in brackets, or a name (or IPv4 address) of
# unreserved characters, sub-delims and %-escapes; an empty Host is lawful too (RFC 9110 §7.2).
_HOST_VALUE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?")


MAX_HOST_BYTES = 261  # a DNS name's 253 characters and ":65535", with room for brackets


@lru_cache(maxsize=1024)
def lawful_host(value: bytes) -> bool:
    """Whether a Host value is one RFC 9112 §3.2 lets through. Cached: a shop's clients name its
    few hosts again and again. Ask it only of values up to MAX_HOST_BYTES long, so what a client
    can make the cache hold stays small."""
    return _HOST_VALUE.fullmatch(value) is not None


class MalformedRequest(ValueError):
    """A request no server may pass on (RFC 9112 §3.2: its Host is missing, given twice or no host); the
    message says what was wrong, for the 400 page."""


def _forwarded_node(ip: str) -> str:
    """RFC 7239 node syntax: IPv6 addresses are bracketed and the whole value quoted."""
    return f'"[{ip}]"' if ":" in ip else ip


def _quoted(value: str) -> str:
    if value and all(ch.isalnum() or ch in "-._~!#$%&'*+^`|" for ch in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def client_headers_for_upstream(
    scope: dict[str, Any], peer_ip: str, client_ip: str, peer_trusted: bool, rewrite_host: str | None,
) -> tuple[list[tuple[str, str]], int | None, bool]:
    """The request headers to send upstream, the declared body length, and whether it is chunked.

    The forwarding headers from a trusted peer are extended with our hop; from anyone else
    they are discarded, because a client could use them to pose as another address.
    """
    raw, body_length, chunked = upstream_request_headers(scope, peer_ip, client_ip, peer_trusted, rewrite_host)
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw], body_length, chunked


def upstream_request_headers(
    scope: dict[str, Any], peer_ip: str, client_ip: str, peer_trusted: bool, rewrite_host: str | None,
) -> tuple[list[tuple[bytes, bytes]], int | None, bool]:
    """`client_headers_for_upstream` as raw bytes: what the forwarder writes, with nothing re-encoded.

    Raises MalformedRequest for a request with two Host headers, or an HTTP/1.1 one with none: the
    shop and whatever decided on the request could read different hosts from it. Likewise for one
    whose Host is no host (RFC 9112 §3.2), for one whose Connection header names its Host or
    Content-Length (NEVER_CONNECTION_SPECIFIC), and for an HTTP/1.0 one with Transfer-Encoding.
    """
    out: list[tuple[bytes, bytes]] = []
    earlier: dict[bytes, bytes] = {}
    host: bytes | None = None
    body_length: int | None = None
    chunked = False
    named_by_connection: list[bytes] = []
    for header in scope["headers"]:
        name, value = header
        if name not in _LOOKED_AT:  # most headers: passed on as they came, one set lookup each
            out.append(header)
            continue
        if name in REQUEST_HEADERS_DROPPED:
            if name == b"transfer-encoding":
                chunked = True
            elif name == b"connection":
                named_by_connection.extend(
                    token.strip().lower() for token in value.split(b",")
                    if token.strip().lower() not in (b"close", b"keep-alive", b"upgrade"))
            continue
        if name in POSING_HEADERS:
            continue
        if name in FORWARDING_HEADERS:
            if peer_trusted:
                earlier[name] = earlier[name] + b", " + value if name in earlier else value
            continue
        if name == b"content-length":
            try:
                body_length = int(value)
            except ValueError:
                body_length = None
        elif name == b"host":
            if host is not None:
                raise MalformedRequest("The request named its host more than once.")
            if len(value) > MAX_HOST_BYTES or not lawful_host(value):
                # "evil.example/x", "a@evil.example" or spaces: a shop that builds links from its
                # Host (password reset mails, caches keyed by it) must never see such a value.
                raise MalformedRequest("The request's Host is not a host name, address or port.")
            host = value
            if rewrite_host is not None:
                continue
        out.append(header)
    if host is None:
        if scope.get("http_version", "1.1") != "1.0":  # HTTP/1.0 clients may leave it out
            raise MalformedRequest("An HTTP/1.1 request must name its host.")
        host = b""
    if named_by_connection:
        dropped = set(named_by_connection)
        if not dropped.isdisjoint(NEVER_CONNECTION_SPECIFIC):
            raise MalformedRequest("The Connection header named a field that frames or routes the request.")
        # shieldware's own headers for the shop: a client cannot name them away
        out = [(name, value) for name, value in out if name not in dropped or name.startswith(SHIELD_HEADER_PREFIXES)]
    if chunked and scope.get("http_version") == "1.0":
        # HTTP/1.0 has no chunked framing: an edge in front of us may have framed this body by its
        # Content-Length, or by the connection's end, and a desync starts there (RFC 9112 §6.1).
        raise MalformedRequest("An HTTP/1.0 request cannot use Transfer-Encoding: its framing is in doubt.")
    if chunked and body_length is not None:
        # Both framings at once is how request smuggling starts: Transfer-Encoding wins (RFC 9112
        # §6.3) and the body is re-framed by us, so the client's Content-Length must not go on.
        out = [(name, value) for name, value in out if name != b"content-length"]
        body_length = None
    if rewrite_host is not None:
        out.append((b"host", rewrite_host.encode("latin-1")))
    scheme = scope.get("scheme", "http")
    if scheme == "ws":
        scheme = "http"
    elif scheme == "wss":
        scheme = "https"
    scheme_bytes = scheme.encode("latin-1")
    peer = peer_ip.encode("latin-1")
    xff = earlier.get(b"x-forwarded-for")
    out.append((b"x-forwarded-for", xff + b", " + peer if xff else peer))
    out.append((b"x-forwarded-proto", earlier.get(b"x-forwarded-proto") or scheme_bytes))
    forwarded_host = earlier.get(b"x-forwarded-host") or host
    if forwarded_host:
        out.append((b"x-forwarded-host", forwarded_host))
    hop = _forwarded_hop(peer_ip, scheme, host)
    previous = earlier.get(b"forwarded")
    out.append((b"forwarded", previous + b", " + hop if previous else hop))
    out.append((b"x-real-ip", client_ip.encode("latin-1")))
    return out, body_length, chunked


@lru_cache(maxsize=1024)
def _forwarded_hop(peer_ip: str, scheme: str, host: bytes) -> bytes:
    """Our RFC 7239 hop; cached because the same clients ask for the same hosts again and again."""
    hop = f"for={_forwarded_node(peer_ip)};proto={scheme}"
    if host:
        hop += f";host={_quoted(host.decode('latin-1'))}"
    return hop.encode("latin-1")


def response_headers_for_client(raw_headers: Any) -> tuple[list[tuple[bytes, bytes]], int | None]:
    """The upstream's response headers minus hop-by-hop ones, kept as raw bytes and in order.

    Repeated headers (several Set-Cookie) stay separate and untouched. Returns the declared
    Content-Length too (None when the body is chunked or ends with the connection).
    """
    kept: list[tuple[bytes, bytes]] = []
    length: int | None = None
    for name, value in raw_headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP:
            continue
        if lowered == b"content-length":
            try:
                length = int(value)
            except ValueError:
                continue  # a broken length would make the ASGI server fail mid-response
        kept.append((lowered, value))
    return kept, length
