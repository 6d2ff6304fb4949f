"""Forwarder: the ASGI app that relays HTTP requests to the upstream over pooled keep-alive connections."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from yarl import URL

from shieldware.decision import Decision
from shieldware.facts import TrustedProxies, normalise_ip, remove_dot_segments
from shieldware.metrics import Metrics
from shieldware.proxy.headers import MalformedRequest, response_headers_for_client, upstream_request_headers
from shieldware.proxy.pages import error_page
from shieldware.proxy.settings import ProxySettings
from shieldware.proxy.upstream import UpstreamConnection, UpstreamError, UpstreamPool

log = logging.getLogger("shieldware.proxy")

# uvicorn silently drops writes to a closed connection, so a client that leaves is only noticed
# by a task waiting on `receive()`. Such a watcher starts when a response is big (or of unknown
# length) or when the upstream is slow to answer; fast small exchanges, the common case, finish
# before either happens and pay only for a timer, not for a task.
WATCH_DISCONNECT_ABOVE = 256 * 1024
WATCH_SLOW_UPSTREAM_AFTER = 0.25
# Parsed upstream URLs by request target: shops serve the same pages over and over, and
# building a yarl URL costs more than the dictionary lookup. Cleared when full.
URL_CACHE_SIZE = 4096


class BodyTooLarge(Exception):
    """The client's body passed max_body_bytes while it was being streamed."""


class ClientGone(Exception):
    """The client disconnected before the exchange finished."""


class BodyStalled(Exception):
    """The client's body stopped arriving for body_timeout seconds (a slow-body attack or a dead client)."""


def failure_of(exc: BaseException, exchange: _Exchange) -> tuple[str, str]:
    """(side, reason) of a forwarding that failed. The upstream may fail first when the client's body
    was cut short, so the exchange's flags say what really happened."""
    if isinstance(exc, BodyTooLarge):
        return "client", "body_too_large"
    if isinstance(exc, ClientGone) or exchange.client_gone:
        return "client", "gone"
    if exchange.too_large:
        return "client", "body_too_large"
    if isinstance(exc, BodyStalled) or exchange.stalled:
        return "client", "body_stalled"
    if isinstance(exc, TimeoutError):
        return "upstream", "timeout"
    return "upstream", exc.reason if isinstance(exc, UpstreamError) else "closed"


# The status each failure is answered with while the response has not started yet.
FAILURE_STATUS = {"body_too_large": 413, "body_stalled": 408, "timeout": 504,
                  "unreachable": 502, "closed": 502, "malformed": 502}


class _Exchange:
    """Per-request flags shared by the body streamer, the disconnect watcher and the relay."""

    __slots__ = ("body_done", "client_gone", "finished", "receive", "relay_task", "stalled", "started",
                 "too_large", "watcher")

    def __init__(self, receive: Any) -> None:
        self.receive = receive
        self.relay_task: asyncio.Task | None = None
        self.watcher: asyncio.Task | None = None
        self.started = False
        self.body_done = False
        self.client_gone = False
        self.too_large = False
        self.stalled = False
        self.finished = False


class Forwarder:
    """Relays each HTTP request (and websocket, see websocket.py) to `settings.upstream`.

    Bodies stream both ways with back-pressure, so memory stays flat whatever their size.
    HTTP goes over our own keep-alive pool (upstream.py); websockets over an aiohttp session,
    created inside the server's event loop on first use.
    """

    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.base = settings.upstream_base
        self.rewrite_host = None if settings.preserve_host else settings.upstream_netloc
        self.trusted = TrustedProxies(settings.trusted_proxies)
        self.max_body = settings.max_body_bytes
        self.body_timeout = settings.body_timeout
        self.session: aiohttp.ClientSession | None = None
        # Where failures are counted (shieldware_proxy_failures_total): the engine's metrics, set by
        # the proxy (proxy/app.py); None without detection, which has no metrics endpoint.
        self.metrics: Metrics | None = None
        self._urls: dict[tuple[bytes, bytes], URL] = {}
        parts = URL(self.base)
        self.base_path = (parts.raw_path.rstrip("/")).encode("latin-1")
        self.default_host = settings.upstream_netloc.encode("latin-1")
        self.pool = UpstreamPool(
            parts.host or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80),
            ssl_context=ssl.create_default_context() if parts.scheme == "https" else None,
            connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
            max_idle=settings.pool_size, max_head=settings.max_head_bytes)

    def open_session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            connector = aiohttp.TCPConnector(limit=self.settings.pool_size, limit_per_host=0,
                                             ttl_dns_cache=60, keepalive_timeout=30)
            self.session = aiohttp.ClientSession(
                connector=connector,
                # Cookies belong to the shop's customers, never to a jar shared by all of them.
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.settings.connect_timeout,
                                              sock_read=self.settings.read_timeout),
                auto_decompress=False,
                trust_env=False,
                # aiohttp must not invent headers the client did not send (the upstream may log them).
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self.session

    async def close(self) -> None:
        self.pool.close()
        if self.session is not None:
            await self.session.close()
            self.session = None

    def upstream_url(self, scope: dict[str, Any]) -> URL:
        key = (forward_path(scope), scope.get("query_string") or b"")
        url = self._urls.get(key)
        if url is None:
            raw_path, query = key
            target = self.base + raw_path.decode("latin-1")
            if query:
                target += "?" + query.decode("latin-1")
            # encoded=True: the client's bytes go out as they came, never re-quoted.
            url = URL(target, encoded=True)
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[key] = url
        return url

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.forward_http(scope, receive, send)
        elif kind == "websocket":
            from shieldware.proxy.websocket import relay_websocket

            await relay_websocket(self, scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.open_session()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def who_asked(self, scope: dict[str, Any]) -> tuple[str, str, Decision | None]:
        """The connected peer, the client address shieldware decided on (the peer without
        detection), and its decision (None without detection)."""
        client = scope.get("client")
        peer = (normalise_ip(client[0]) if client else None) or "0.0.0.0"
        state = scope.get("state")
        decision = state.get("shield") if state else None
        return peer, decision.client_ip if decision is not None else peer, decision

    async def forward_http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        peer, client_ip, decision = self.who_asked(scope)
        if scope["method"] == "TRACE":
            # Its answer echoes the request back: the X-Shield-* verdict and score we add, an oracle
            # for a bot tuning its disguise, and cookies a script may not read (cross-site tracing).
            # nginx refuses it too; the HTTP parser refuses methods it does not know (TRACK) itself.
            self.count_failure("client", "method_refused", "405")
            await error_page(send, 405, "Method not allowed",
                             "TRACE is not relayed: its answer would echo the request back.")
            return
        try:
            if self.base_path:
                refuse_loose_climbs(scope)
            headers, body_length, chunked = upstream_request_headers(
                scope, peer, client_ip, self.trusted.trusts(peer), self.rewrite_host)
        except MalformedRequest as exc:
            self.count_failure("client", "bad_request", "400")
            await error_page(send, 400, "Bad request", str(exc))
            return
        if body_length is not None and body_length > self.max_body:
            self.count_failure("client", "body_too_large", "413")
            await self.answer_failure(send, 413, None)
            return
        exchange = _Exchange(receive)
        body = None
        if chunked or body_length:
            body = self.stream_request_body(receive, exchange)
        else:
            exchange.body_done = True
        try:
            head = self.request_head(scope, headers, chunked, decision.header_lines if decision is not None else None)
            await self.relay(scope, send, head, body, chunked, exchange)
        except (BodyTooLarge, BodyStalled, ClientGone, TimeoutError, UpstreamError) as exc:
            side, reason = failure_of(exc, exchange)
            status = FAILURE_STATUS.get(reason) if not exchange.started else None
            self.count_failure(side, reason, str(status) if status else "none" if reason == "gone" else "cut")
            if status is not None:
                await self.answer_failure(send, status, exc)
            elif reason != "gone":
                # Too late for an error page: the status line is out. Leaving the response
                # incomplete makes the server close the connection, so the client sees a cut body.
                log.warning("upstream %s failed mid-response: %s: %s", self.base, type(exc).__name__, exc)

    def count_failure(self, side: str, reason: str, answered: str) -> None:
        """shieldware_proxy_failures_total{side, reason, answered}: `answered` is the status the client
        got instead of the shop's answer, "cut" (the shop's answer broke off) or "none" (it left)."""
        if self.metrics is not None:
            self.metrics.count("proxy_failures", side=side, reason=reason, answered=answered)

    async def answer_failure(self, send: Any, status: int, exc: BaseException | None) -> None:
        """The plain page for a failure before the response started (FAILURE_STATUS)."""
        if status == 413:
            await error_page(send, 413, "Request body too large",
                             f"This server accepts request bodies up to {self.max_body} bytes.")
        elif status == 408:
            await error_page(send, 408, "Request timeout",
                             f"The request body stopped arriving for {self.body_timeout:g} seconds.")
        elif status == 504:
            await error_page(send, 504, "Gateway timeout",
                             "The shop did not answer in time. Please try again.")
        else:
            log.warning("upstream %s failed: %s: %s", self.base, type(exc).__name__, exc)
            await error_page(send, 502, "Bad gateway",
                             "The shop could not be reached. Please try again shortly.")

    async def stream_request_body(self, receive: Any, exchange: _Exchange) -> AsyncIterator[bytes]:
        received = 0
        while True:
            try:
                # Each wait is bounded: a body trickled or stalled would hold the upstream connection too.
                async with asyncio.timeout(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                exchange.stalled = True
                raise BodyStalled() from None
            if message["type"] == "http.disconnect":
                exchange.client_gone = True
                raise ClientGone()
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body:
                exchange.too_large = True
                raise BodyTooLarge()
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                exchange.body_done = True
                return

    def request_head(self, scope: dict[str, Any], headers: list[tuple[bytes, bytes]], chunked: bool,
                     shield_lines: bytes | None = None) -> bytes:
        """Request line and headers as the bytes that go on the wire (the client's bytes, not re-quoted).

        `shield_lines`: the X-Shield-* headers as head lines, when the middleware left them out of
        the scope's headers for us to write (decision.header_lines; see proxy/app.py).
        """
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if b"/." in raw_path or b"/%2" in raw_path:  # as forward_path, without a call per request
            raw_path = without_dot_segments(raw_path)
        target = self.base_path + raw_path
        query = scope.get("query_string")
        if query:
            target += b"?" + query
        parts = [scope["method"].encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
        has_host = False
        for name, value in headers:
            if name == b"host":
                has_host = True
            parts += (name, b": ", value, b"\r\n")
        if not has_host:  # an HTTP/1.0 client may omit it; HTTP/1.1 upstreams require one
            parts += (b"host: ", self.default_host, b"\r\n")
        if chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        if shield_lines:
            parts.append(shield_lines)
        parts.append(b"\r\n")
        return b"".join(parts)

    async def exchange_with_upstream(self, head: bytes, body: AsyncIterator[bytes] | None,
                                     chunked: bool) -> UpstreamConnection:
        """Send the request and read the response head; the caller releases the connection."""
        pool = self.pool
        connection = await pool.acquire()
        try:
            await connection.send_request(head, body, chunked)
            await connection.read_head()
            return connection
        except UpstreamError:
            pool.release(connection)
            if not connection.reused or body is not None:
                raise
        except BaseException:  # cancelled (the client left), timed out, body too large: never reuse
            pool.release(connection)
            raise
        # A pooled connection the upstream closed just as we reused it: a bodyless request was
        # certainly not processed, so it is safe to send once more on a fresh connection.
        connection = await pool.connect()
        connection.in_use = True
        try:
            await connection.send_request(head, None, False)
            await connection.read_head()
        except BaseException:
            pool.release(connection)
            raise
        return connection

    async def relay(self, scope: dict[str, Any], send: Any, head: bytes, body: AsyncIterator[bytes] | None,
                    chunked: bool, exchange: _Exchange) -> None:
        method = scope["method"]
        task = asyncio.current_task()
        exchange.relay_task = task
        # The task's own loop: asking asyncio for the running loop again would cost a getpid()
        # system call (CPython checks the process id on every ask), about 0.2 µs a request here.
        loop = task.get_loop() if task is not None else asyncio.get_running_loop()
        timer = loop.call_later(WATCH_SLOW_UPSTREAM_AFTER, start_watching, exchange)
        connection: UpstreamConnection | None = None
        try:
            connection = await self.exchange_with_upstream(head, body, chunked)
            timer.cancel()
            if exchange.too_large:
                raise BodyTooLarge()
            status = connection.status
            response_headers, length = response_headers_for_client(connection.headers)
            if length and (status == 304 or status == 204) and method != "HEAD":
                # A 304 may name the length of what it does not send (RFC 9110 §8.6); uvicorn would
                # wait for that many bytes, fail, and cut the connection.
                response_headers = [header for header in response_headers if header[0] != b"content-length"]
            exchange.started = True
            await send({"type": "http.response.start", "status": status, "headers": response_headers})
            if method == "HEAD" or length == 0 or status in (204, 304):
                if method == "HEAD":
                    connection.finish_without_body()
                exchange.finished = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if length is None or length > WATCH_DISCONNECT_ABOVE:
                start_watching(exchange)
            await self.relay_body(connection, send, exchange)
        except asyncio.CancelledError:
            if not exchange.client_gone:
                raise
            # Our own watcher cancelled us: the client left. The upstream connection is closed
            # (never reused mid-exchange), which tells the upstream too; end quietly.
            if task is not None:
                task.uncancel()
            raise ClientGone() from None
        finally:
            timer.cancel()
            exchange.finished = True
            if exchange.watcher is not None:
                exchange.watcher.cancel()
            if connection is not None:
                self.pool.release(connection)

    async def relay_body(self, connection: UpstreamConnection, send: Any, exchange: _Exchange) -> None:
        while True:
            chunk = await connection.read_body()
            if not chunk:
                break
            if connection.complete and not connection.chunks:
                # The last bytes: end the response in the same message (one write fewer).
                exchange.finished = True
                await send({"type": "http.response.body", "body": chunk, "more_body": False})
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        exchange.finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def forward_path(scope: dict[str, Any]) -> bytes:
    """The path to ask the upstream for: the client's bytes, never re-quoted, with dot segments
    resolved (as shieldware decided on them), so no request reaches above the upstream URL's path."""
    raw = scope.get("raw_path") or scope["path"].encode()
    return without_dot_segments(raw) if b"/." in raw or b"/%2" in raw else raw  # "/../", "/%2e%2e/": rare


def without_dot_segments(raw_path: bytes) -> bytes:
    return remove_dot_segments(raw_path.decode("latin-1")).encode("latin-1")


_SEPARATOR = rb"(?:/|\\|%5[cC]|%2[fF])"
_DOT = rb"(?:\.|%2[eE])"
# A ".." that the standard resolution leaves alone but some servers climb with: "..;" (Java
# servlet containers drop path parameters), "..\\" and "..%5c" (IIS reads a backslash as a
# slash), "..%2f" (servers that decode encoded slashes before they resolve).
_LOOSE_CLIMB = re.compile(rb"(?:^|" + _SEPARATOR + rb")" + _DOT + _DOT + rb"(?:;|" + _SEPARATOR + rb"|$)")


def refuse_loose_climbs(scope: dict[str, Any]) -> None:
    """With a base path in --upstream (http://shop/base), no request may reach above it: the
    standard dot segments are resolved (forward_path); a path that climbs only as a looser server
    reads it is refused with MalformedRequest, since no browser sends one."""
    if _LOOSE_CLIMB.search(forward_path(scope)):
        raise MalformedRequest("The path climbs above its root in a way some servers read loosely "
                               "(\"..;\", a backslash or an encoded slash next to \"..\").")


def start_watching(exchange: _Exchange) -> None:
    """Start the disconnect watcher, once, and only when the request body has been read.

    Until then the body streamer is the one calling `receive()` (and it notices a disconnect
    itself); a second reader would steal its chunks. A slow upstream re-checks a bit later.
    """
    if exchange.watcher is not None or exchange.finished:
        return
    loop = asyncio.get_running_loop()
    if not exchange.body_done:
        loop.call_later(WATCH_SLOW_UPSTREAM_AFTER, start_watching, exchange)
        return
    exchange.watcher = loop.create_task(watch_disconnect(exchange))


async def watch_disconnect(exchange: _Exchange) -> None:
    """Cancel the relay when the client disconnects before the exchange finished."""
    while True:
        message = await exchange.receive()
        if message["type"] == "http.disconnect":
            break
    if not exchange.finished and exchange.relay_task is not None:
        exchange.client_gone = True
        exchange.relay_task.cancel()


__all__ = ["BodyTooLarge", "ClientGone", "Forwarder"]
