"""Forward-auth endpoint: nginx auth_request, Traefik forwardAuth and Caddy forward_auth ask us per request.

The edge sends us a copy of the client's request headers plus the original method, URI and
host in `X-Original-*` (nginx convention) or `X-Forwarded-*` (Traefik, Caddy) headers. Those
are believed only from a trusted peer. The engine decides exactly as it does for proxied
requests; the answer is:

- 200 with X-Shield-Score / -Verdict / -Ref: let it through (monitor mode always answers 200);
- 401 with `Location: /.shieldware/challenge?return=<original URI>`: send the browser to the
  challenge (nginx: `error_page 401 = @challenge`; the body meta-refreshes for edges that
  relay it, like Traefik);
- 403: blocked (body: the block page with the reference id);
- 429 with Retry-After: throttled. nginx's auth_request only understands 401 and 403, so
  `?style=nginx` on the check URL turns 429 into 403 (X-Shield-Verdict still says throttle).

Nearly every call is plain (one family of original-request headers, a well-formed forwarding
chain and cookie, ASCII throughout): `plain_call` reads the client's request from its scope for
the fast lane, and facts are made only if the decision needs them. Any other call is read into
facts first (`original_request`), and one they note is decided on the Python path.

The edge never says how the shop answered a request it let through; with an outcome log
(proxy/outcome_feed.py) the status the edge logged comes back to the engine.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, MutableMapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from shieldware.actions.pages import decision_response, html_escape, wants_json
from shieldware.decision import Decision, Verdict
from shieldware.facts import (
    RequestFacts,
    TrustedProxies,
    cookie_notes,
    normalise_ip,
    resolve_client_ip,
    route_path,
    with_fields,
)
from shieldware.metrics import CounterKey, counter_key
from shieldware.middleware import ShieldMiddleware, send_simple
from shieldware.proxy.outcome_feed import AwaitingOutcomes

log = logging.getLogger("shieldware.proxy.forward_auth")

# Headers the edge adds for us; the signals must see the client's own headers, not these.
EDGE_HEADERS = frozenset({
    "x-original-uri", "x-original-url", "x-original-method", "x-original-host", "x-original-proto",
    "x-forwarded-uri", "x-forwarded-method", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
    "x-forwarded-for", "x-forwarded-server", "x-forwarded-prefix", "x-forwarded-tls-client-cert",
    "forwarded", "x-real-ip", "connection", "content-length",
})
EDGE_HEADER_NAMES = frozenset(name.encode() for name in EDGE_HEADERS)  # as an ASGI scope spells them
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
# Besides the edge's own headers, the ones plain_call() reads: repeats of any of them fold into one
# value in the facts, which the full path reads.
_READ_BY_PLAIN_CALL = EDGE_HEADER_NAMES | {b"host", b"cookie"}


# shieldware_forward_auth_checks_total{answer, read}: the status each check got, and whether the
# call was read straight from its scope ("plain") or into facts first ("full").
_CHECK_KEYS: dict[tuple[int, str], CounterKey] = {}


def _check_key(status: int, read: str) -> CounterKey:
    key = _CHECK_KEYS.get((status, read))
    if key is None:
        key = _CHECK_KEYS[status, read] = counter_key("forward_auth_checks", answer=str(status), read=read)
    return key


class ForwardAuthError(ValueError):
    """The edge's request lacks what forward-auth needs (a clear 400 for the operator)."""


def _origin_form(uri: str) -> str:
    """An absolute-form URI (the scheme in any case) as its path and query."""
    if uri[:8].lower().startswith(("http://", "https://")):
        parts = urlsplit(uri)
        return parts.path + ("?" + parts.query if parts.query else "")
    return uri


def _same_target(first: str, second: str) -> bool:
    """Whether two spellings of a request target name the same path and query (edges differ in
    what they percent-encode)."""
    path_a, _, query_a = _origin_form(first).partition("?")
    path_b, _, query_b = _origin_form(second).partition("?")
    return route_path(unquote(path_a) or "/", []) == route_path(unquote(path_b) or "/", []) and \
        unquote(query_a) == unquote(query_b)


def _conflicts(get: Any, uri: str | None, method: str | None) -> list[str]:
    """Notes for an original request the two header families tell differently.

    An edge writes one family: nginx's auth_request the X-Original-* headers it is configured
    with, Traefik and Caddy X-Forwarded-Method and -Uri. Each passes the client's own copies of
    the other family on untouched. Had the other been read, a client could have its request
    judged as another: a POST to /login as a GET of a stylesheet.
    """
    notes = []
    forwarded_uri = get("x-forwarded-uri")
    if uri and forwarded_uri and uri != forwarded_uri and not _same_target(uri, forwarded_uri):
        notes.append("forward_auth.conflicting_uri")
    forwarded_method = get("x-forwarded-method")
    if method and forwarded_method and method.strip().upper() != forwarded_method.strip().upper():
        notes.append("forward_auth.conflicting_method")
    return notes


def original_request(facts: RequestFacts, trusted: TrustedProxies) -> tuple[RequestFacts, str]:
    """The facts of the client's request, rebuilt from the edge's headers, and its raw URI."""
    header_map = facts.header_map
    get = header_map.get
    original_uri = get("x-original-uri") or get("x-original-url")
    original_method = get("x-original-method")
    uri = original_uri or get("x-forwarded-uri")
    if not uri:
        raise ForwardAuthError("no X-Original-URI or X-Forwarded-Uri header: configure the edge to send the "
                               "original request URI")
    uri = _origin_form(uri)
    raw_path, _, query = uri.partition("?")
    method = (original_method or header_map.get("x-forwarded-method") or "GET").upper()
    notes = list(facts.notes)
    notes.extend(_conflicts(get, original_uri, original_method))
    if method not in METHODS:
        notes.append("forward_auth.bad_method")
        method = "GET"
    host = header_map.get("x-forwarded-host") or header_map.get("x-original-host") or facts.host
    scheme = (get("x-forwarded-proto") or get("x-original-proto") or facts.scheme).lower()
    client_ip, ip_notes = resolve_client_ip(facts.peer_ip, header_map, trusted)
    notes.extend(ip_notes)
    headers = tuple((name, value) for name, value in facts.headers if name not in EDGE_HEADERS)
    kept = {name: value for name, value in header_map.items() if name not in EDGE_HEADERS}
    if host:
        kept["host"] = host
        headers = tuple((name, host if name == "host" else value) for name, value in headers)
    path = route_path(unquote(raw_path) or "/", notes)
    rebuilt = with_fields(facts, client_ip=client_ip, method=method, path=path, query=query,
                      host=host, scheme=scheme if scheme in ("http", "https") else "http", headers=headers,
                      header_map=kept, notes=tuple(notes))
    return rebuilt, uri


def original_scope(scope: MutableMapping[str, Any], original: RequestFacts, raw_uri: str) -> dict[str, Any]:
    """The client's request as an ASGI scope, as the fast lane reads one: the edge's call without
    the edge's own headers, the host the client asked for, the original method and target, and the
    client's address as the peer (`original_request` made the facts the same way)."""
    headers = [(name, value) for name, value in scope["headers"] if name not in EDGE_HEADER_NAMES]
    if original.host:
        host = original.host.encode("latin-1")
        headers = [(name, host if name == b"host" else value) for name, value in headers]
    return {"type": "http", "method": original.method, "path": unquote(raw_uri.partition("?")[0]) or "/",
            "query_string": original.query.encode("latin-1"), "headers": headers,
            "client": (original.client_ip, 0), "scheme": original.scheme,
            "http_version": scope.get("http_version", "1.1")}


def plain_call(scope: MutableMapping[str, Any], trusted: TrustedProxies) -> tuple[dict[str, Any], str] | None:
    """The client's request as `original_scope` makes it, and its raw URI, read straight from the
    edge's call, with no facts built: for nearly every call, what the fast lane is asked about.

    None when the call is anything but plain: a caller that is not a trusted proxy, no URI, or
    anything the full path would note (`original_request`'s notes, and facts_from_scope's for the
    headers: non-ASCII values, a malformed cookie or forwarding chain, repeats of a header read
    here). The full path takes those, and says why; a request it notes never reaches the lane."""
    client = scope.get("client")
    peer = normalise_ip(str(client[0])) if client else None
    raw = scope.get("headers")
    if peer is None or not raw or not trusted.trusts(peer):
        return None
    names, values = zip(*raw, strict=True)
    spelled = b"\n".join(names)
    joined = b"\n".join(values)
    # Names as the facts read them (lower case, ASCII) and values with no byte they would note.
    if not spelled.isascii() or not spelled.islower() or not joined.isascii() or b"\x7f" in joined:
        return None
    client_header = trusted.header.encode("latin-1")
    read: dict[str, str] = {}
    headers = []
    for name, value in raw:
        if name in _READ_BY_PLAIN_CALL or name == client_header:
            text = name.decode("latin-1")
            if text in read:
                return None
            read[text] = value.decode("latin-1")
            if name in EDGE_HEADER_NAMES:
                continue
        headers.append((name, value))
    get = read.get
    original_uri = get("x-original-uri") or get("x-original-url")
    original_method = get("x-original-method")
    uri = original_uri or get("x-forwarded-uri")
    if not uri or _conflicts(get, original_uri, original_method):
        return None
    method = (original_method or get("x-forwarded-method") or "GET").upper()
    if method not in METHODS:
        return None
    uri = _origin_form(uri)
    raw_path, _, query = uri.partition("?")
    path = unquote(raw_path) or "/"
    client_ip, notes = resolve_client_ip(peer, read, trusted)
    route_path(path, notes)
    cookie = get("cookie")
    if notes or (cookie and cookie_notes(cookie)):
        return None
    host = get("x-forwarded-host") or get("x-original-host") or get("host", "")
    if host:
        spelled_host = host.encode("latin-1")
        headers = [(name, spelled_host if name == b"host" else value) for name, value in headers]
    scheme = (get("x-forwarded-proto") or get("x-original-proto") or scope.get("scheme", "http")).lower()
    return {"type": "http", "method": method, "path": path, "query_string": query.encode("latin-1"),
            "headers": headers, "client": (client_ip, 0), "scheme": scheme if scheme in ("http", "https") else "http",
            "http_version": scope.get("http_version", "1.1")}, uri


class ForwardAuthEndpoint:
    """`ForwardAuthEndpoint(middleware, trusted).mount(path)`."""

    def __init__(self, middleware: ShieldMiddleware, trusted: TrustedProxies,
                 awaiting: AwaitingOutcomes | None = None) -> None:
        self.middleware = middleware
        self.awaiting = awaiting  # with an outcome log: let-through decisions wait here for the shop's status
        self.engine = middleware.engine
        self.trusted = trusted
        self.challenges = getattr(middleware, "challenges", None)
        self.challenge_path = middleware.prefix + "/challenge"
        self._warned: set[str] = set()
        # The call's own facts resolve its forwarding chain with the middleware's proxies: where
        # those are another list, their notes are not the ones plain_call() looks for.
        mine = middleware.trusted
        self._plain_calls = not mine or (mine.networks == trusted.networks and mine.header == trusted.header)

    def mount(self, path: str) -> None:
        """Serve the checks at `path`: plain calls (nearly all) straight from the scope, others
        with the call's facts."""
        self.middleware.add_endpoint(path, self, quick=self.quickly)

    async def quickly(self, scope: MutableMapping[str, Any], receive: Any, send: Any, now: float) -> bool:
        """Answer a plain call (plain_call()) with no facts made unless the decision needs them.
        False, having done nothing: the call is not plain, or there is no lane to ask."""
        if self.middleware.lane is None or not self._plain_calls or scope["type"] != "http":
            return False
        plain = plain_call(scope, self.trusted)
        if plain is None:
            return False
        client_scope, raw_uri = plain
        made: list[RequestFacts] = []

        def original_of() -> RequestFacts:  # the full path's facts of the client's request, made once
            if not made:
                made.append(original_request(self.middleware.facts_of(scope, now), self.trusted)[0])
            return made[0]

        decision = await self.middleware.lane_decision(client_scope, now, original_of)
        nginx_style = b"style=nginx" in scope.get("query_string", b"")
        await self._reply(decision, original_of, raw_uri, nginx_style, send, "plain")
        return True

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any, facts: RequestFacts) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        if not self.trusted.trusts(facts.peer_ip):
            if facts.peer_ip not in self._warned and len(self._warned) < 64:
                self._warned.add(facts.peer_ip)
                log.warning("forward-auth call from %s refused: not a trusted proxy "
                            "(add it with --trusted-proxy)", facts.peer_ip)
            self.engine.metrics.count_at(_check_key(403, "full"))
            await send_simple(send, 403, _TEXT, b"forward-auth: caller is not a trusted proxy\n")
            return
        try:
            original, raw_uri = original_request(facts, self.trusted)
        except ForwardAuthError as exc:
            self.engine.metrics.count_at(_check_key(400, "full"))
            await send_simple(send, 400, _TEXT, f"forward-auth: {exc}\n".encode())
            return
        decision = None
        if not original.notes:  # an unusual request (conflicting headers, odd path or forwarding) is Python's
            decision = await self.middleware.lane_decision(original_scope(scope, original, raw_uri), original.now,
                                                           lambda: original)
        await self._reply(decision, lambda: original, raw_uri, "style=nginx" in facts.query, send, "full")

    async def _reply(self, decision: Decision | None, original_of: Callable[[], RequestFacts], raw_uri: str,
                     nginx_style: bool, send: Any, read: str) -> None:
        """Answer the edge: with the lane's decision, or the engine's when the lane had none."""
        if decision is None:
            started = time.perf_counter()
            decision = await self.engine.decide(original_of())
            self.engine.metrics.record_latency(time.perf_counter() - started)
        if self.awaiting is not None and decision.action is Verdict.ALLOW:
            self.awaiting.remember(decision, decision.time)
        status, headers, body = self.answer(decision, original_of, raw_uri, nginx_style)
        self.engine.metrics.count_at(_check_key(status, read))
        await send_simple(send, status, headers, body)

    def answer(self, decision: Decision, original_of: Callable[[], RequestFacts], raw_uri: str,
               nginx_style: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The status, headers and body the edge gets; `original_of()` makes the client's request's
        facts, which only a refusal's answer reads."""
        shield_headers = [*decision.shield_headers(), (b"cache-control", b"no-store")]
        action = decision.action
        if action is Verdict.ALLOW:
            return 200, [*shield_headers, (b"content-length", b"0")], b""
        original = original_of()
        if action is Verdict.CHALLENGE:
            target = self.challenge_url(raw_uri)
            body = (f'<!doctype html><meta http-equiv="refresh" content="0;url={html_escape(target)}">'
                    f'<a href="{html_escape(target)}">Continue</a>\n').encode()
            return 401, [*shield_headers, (b"location", _on_original_host(original, target).encode()),
                         (b"x-shield-challenge", target.encode()),
                         (b"content-type", b"text/html; charset=utf-8"),
                         (b"content-length", b"%d" % len(body))], body
        status, page_headers, body = decision_response(decision, wants_json(original.header_map))
        if nginx_style and status not in (401, 403):
            status = 403
        page_headers = [h for h in page_headers if h[0] not in (b"x-shield-ref", b"x-shield-verdict",
                                                                b"cache-control")]
        return status, [*shield_headers, *page_headers], body

    def challenge_url(self, raw_uri: str) -> str:
        """Where a challenged browser goes; the challenge page sends it back to `return` once it passes."""
        if self.challenges is not None:
            return self.challenges.page_url(raw_uri)
        return f"{self.challenge_path}?return={quote(raw_uri, safe='/')}"


_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _on_original_host(original: RequestFacts, target: str) -> str:
    """`target` as an absolute URL on the host the client asked for. Traefik resolves a relative
    Location against the address it asked us on, which would send the browser to shieldware's
    internal address; an absolute one it passes on as it is. A host that is not plainly one stays
    out of it (the target is then left relative)."""
    if not _HOST.fullmatch(original.host):
        return target
    return f"{original.scheme}://{original.host}{target}"


_TEXT = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]
