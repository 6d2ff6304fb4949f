"""Upstream HTTP/1.1 client: keep-alive connections on asyncio protocols, responses parsed by httptools.

aiohttp's client cost about two thirds of the bare forwarder's CPU per request (URL objects,
header multidicts, a writer and a payload per request). A reverse proxy needs far less: send
bytes it already has, parse a status line and headers, stream the body back. This module does
only that, with back-pressure both ways and a read timeout on every wait.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator

import httptools

from shieldware.proxy.settings import DEFAULT_MAX_HEAD_BYTES

log = logging.getLogger("shieldware.proxy")

# Pause reading from the upstream while this much of its body waits for the client to take it.
READ_BUFFER_HIGH = 256 * 1024
# Idle connections older than this are not reused: the upstream has probably closed them.
IDLE_SECONDS = 30.0


class UpstreamError(Exception):
    """The upstream could not be reached, or broke the exchange (answered with 502). `reason`, for
    the proxy's failure counter: "unreachable" (no connection), "closed" (it hung up before its
    answer was whole) or "malformed" (what it sent was not an HTTP response we forward)."""

    def __init__(self, message: str, reason: str = "closed") -> None:
        super().__init__(message)
        self.reason = reason


class _Unasked(Exception):
    """Another response began after the one that was asked for (raised to stop the parser)."""


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("the upstream did not answer within the read timeout"))


def _head_size(headers: list[tuple[bytes, bytes]]) -> int:
    """The bytes a response's header lines took ("name: value\\r\\n" each)."""
    return sum(len(name) + len(value) + 4 for name, value in headers)


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time and parses its response."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float,
                 max_head: int = DEFAULT_MAX_HEAD_BYTES) -> None:
        self.loop = loop
        self.read_timeout = read_timeout
        self.max_head = max_head
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self._reset()

    def _reset(self) -> None:
        self.in_use = False
        self.status = 0
        self.head_bytes = 0  # read while the response head is incomplete
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.informational = False
        self.complete = False
        self.keep_alive = True
        self.until_close = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.reading_paused = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None
        self.drain_waiter: asyncio.Future | None = None
        self.writing_paused = False
        self.request_sent = False

    # ---- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.in_use or self.complete:
            self._unasked()
            return
        if not self.headers_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the upstream switched protocols on a plain HTTP request", "malformed"))
        except httptools.HttpParserError as exc:
            if self.complete:  # stopped by _Unasked, or what followed the response was not HTTP at all
                self._unasked()
            else:
                self._fail(UpstreamError(f"the upstream sent a malformed response: {exc}", "malformed"))
        if not self.headers_done and self.head_bytes > self.max_head:
            # httptools keeps a header however long it grows: a head still open after max_head
            # bytes is refused, so the proxy holds at most that and one read of it.
            self._head_too_large()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.in_use and not self.complete:
            if self.headers_done and self.until_close:
                self.complete = True  # a body without length or chunking ends with the connection
                self.keep_alive = False
            elif self.error is None:
                self.error = UpstreamError(f"the upstream closed the connection ({exc or 'EOF'})")
        self._wake()
        drain = self.drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        drain = self.drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _unasked(self) -> None:
        """Bytes nobody asked for: on an idle connection, or after the response's end (a shop
        whose Content-Length is too small sends them). They are dropped and the connection with
        them: parsed, they would be the next request's answer, or part of this one's."""
        log.warning("the upstream sent bytes after its response (a Content-Length too small?) or while "
                    "idle: they were dropped and the connection closed")
        self.keep_alive = False
        self.close()

    # ---- httptools callbacks ------------------------------------------------------------------

    # A second response in the read that ended the first stops the parser at its first header or
    # at its head's end, before it can add to the first one's headers or body. (Checked here, not
    # in an on_message_begin: a callback of its own would cost every response some 700
    # instructions, counted by bench/proxy_instructions.py.)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            raise _Unasked()
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            raise _Unasked()
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            # 100 Continue / 103 Early Hints: not the response; the real one follows.
            self.informational = True
            self.headers = []
            return
        if self.head_bytes > self.max_head and _head_size(self.headers) > self.max_head:
            self._head_too_large()  # it came in one read: measured now that it is whole
            return
        self.status = status
        self.headers_done = True
        chunked = False
        has_length = False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                has_length = True
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        self.until_close = not chunked and not has_length and status not in (204, 304)
        self._wake()
        drain = self.drain_waiter  # a body still being sent stops here: the answer is in
        if drain is not None and not drain.done():
            drain.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > READ_BUFFER_HIGH and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # ---- the exchange -------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _head_too_large(self) -> None:
        self._fail(UpstreamError(f"the upstream sent a response head of over {self.max_head} bytes", "malformed"))

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.keep_alive = False
        self.close()
        self._wake()

    async def _wait(self) -> None:
        """Wait for the next parser event (or the read timeout, or the connection's end)."""
        waiter = self.waiter = self.loop.create_future()
        timer = self.loop.call_later(self.read_timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    async def _drain(self) -> None:
        if self.writing_paused and not self.closed:
            self.drain_waiter = self.loop.create_future()
            try:
                await self.drain_waiter
            finally:
                self.drain_waiter = None
        if self.closed and self.error is None and not self.headers_done:
            raise UpstreamError("the upstream closed the connection while the request was being sent")

    async def send_request(self, head: bytes, body: AsyncIterator[bytes] | None, chunked: bool) -> None:
        """Write the request: head and first body bytes in one write where possible, then the rest."""
        transport = self.transport
        assert transport is not None
        if body is None:
            transport.write(head)
            self.request_sent = True
            return
        pending = head
        async for chunk in body:
            if self.error is not None:
                raise self.error
            if self.headers_done or self.closed:
                # The upstream answered (or hung up) before taking the whole body, e.g. with its own
                # 413: stop sending. Its answer is relayed; the connection is not reused.
                return
            if chunked:
                chunk = b"%x\r\n%b\r\n" % (len(chunk), chunk)
            if pending:
                transport.write(pending + chunk)
                pending = b""
            else:
                transport.write(chunk)
            await self._drain()
        if chunked:
            pending += b"0\r\n\r\n"
        if pending:
            transport.write(pending)
        self.request_sent = True

    async def read_head(self) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            if self.closed:
                raise UpstreamError("the upstream closed the connection before answering")
            await self._wait()

    async def read_body(self) -> bytes:
        """The next piece of the body; b"" once it is complete."""
        while True:
            chunks = self.chunks
            if chunks:
                if len(chunks) == 1:
                    chunk = chunks.popleft()
                else:
                    chunk = b"".join(chunks)
                    chunks.clear()
                self.buffered = 0
                if self.reading_paused and self.transport is not None:
                    self.reading_paused = False
                    self.transport.resume_reading()
                return chunk
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            await self._wait()

    def finish_without_body(self) -> None:
        """HEAD (and the like): the parser would wait for a body that never comes, so don't reuse."""
        self.complete = True
        self.keep_alive = False

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and self.request_sent and not self.closed and not self.chunks


class UpstreamPool:
    """Keep-alive connections to one upstream host; the most recently used one is reused first."""

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None, connect_timeout: float,
                 read_timeout: float, max_idle: int, max_head: int = DEFAULT_MAX_HEAD_BYTES) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self.max_head = max_head
        self.idle: list[UpstreamConnection] = []

    async def connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(loop, self.read_timeout, self.max_head), self.host, self.port,
                    ssl=self.ssl_context)
        except TimeoutError:
            # A shop too busy to accept (its listen queue full) is a timeout, 504, as nginx answers
            # when proxy_connect_timeout runs out; TimeoutError is an OSError, so it goes first.
            raise TimeoutError(f"no connection to {self.host}:{self.port} within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc}", "unreachable") from exc
        return connection

    async def unreachable(self, within: float) -> str | None:
        """Why a new connection to the upstream does not open within `within` seconds, or None
        when it does (it is closed again at once: the health endpoint asks this, not a request)."""
        try:
            async with asyncio.timeout(within):
                connection = await self.connect()
        except TimeoutError:
            return f"no connection to {self.host}:{self.port} within {within:g} s"
        except UpstreamError as exc:
            return str(exc)
        connection.close()
        return None

    async def acquire(self) -> UpstreamConnection:
        idle = self.idle
        if idle:
            now = time.monotonic()
            while idle:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                    connection.reused = True
                    connection.in_use = True
                    return connection
                connection.close()
        connection = await self.connect()
        connection.in_use = True
        return connection

    def release(self, connection: UpstreamConnection) -> None:
        """Back to the pool if the exchange ended cleanly; otherwise closed (never reused mid-exchange)."""
        if connection.reusable() and len(self.idle) < self.max_idle:
            connection._reset()
            connection.idle_since = time.monotonic()
            self.idle.append(connection)
        else:
            connection.close()
            connection.in_use = False

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


__all__ = ["UpstreamConnection", "UpstreamError", "UpstreamPool"]
