"""The proxy's own upstream client against real loopback servers that answer in awkward ways."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from shieldware.proxy.upstream import UpstreamError, UpstreamPool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server on 127.0.0.1 whose handler writes raw HTTP bytes; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> RawServer:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def pool(self, read_timeout: float = 5.0, max_head: int = 64 * 1024) -> UpstreamPool:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return UpstreamPool("127.0.0.1", port, ssl_context=None, connect_timeout=5.0,
                            read_timeout=read_timeout, max_idle=8, max_head=max_head)


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def exchange(pool: UpstreamPool, head: bytes = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n") -> tuple[int, bytes, bool]:
    """One request through the pool: status, whole body, and whether the connection went back."""
    connection = await pool.acquire()
    try:
        await connection.send_request(head, None, False)
        await connection.read_head()
        body = b""
        while chunk := await connection.read_body():
            body += chunk
        return connection.status, body, connection.reusable()
    finally:
        pool.release(connection)


async def test_keep_alive_connection_is_reused_for_the_next_request():
    async def handler(reader, writer):
        for _ in range(2):
            await read_request_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
            await writer.drain()

    async with RawServer(handler) as server:
        pool = server.pool()
        assert await exchange(pool) == (200, b"hello", True)
        assert await exchange(pool) == (200, b"hello", True)
        pool.close()
    assert server.connections == 1


async def test_chunked_response_is_reassembled():
    async def handler(reader, writer):
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"6\r\n world\r\n0\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as server:
        assert await exchange(server.pool()) == (200, b"hello world", True)


async def test_body_that_ends_with_the_connection_is_complete_and_not_reused():
    async def handler(reader, writer):
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async with RawServer(handler) as server:
        assert await exchange(server.pool()) == (200, b"until the end", False)


async def test_interim_responses_are_skipped():
    async def handler(reader, writer):
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n"
                     b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\nx-final: yes\r\n\r\nok")
        await writer.drain()

    async with RawServer(handler) as server:
        pool = server.pool()
        connection = await pool.acquire()
        await connection.send_request(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", None, False)
        await connection.read_head()
        assert connection.status == 201
        assert connection.headers == [(b"content-length", b"2"), (b"x-final", b"yes")]
        assert await connection.read_body() == b"ok"
        pool.release(connection)


@pytest.mark.parametrize("extra", [
    b"HTTP/1.1 200 OK\r\nset-cookie: session=planted\r\ncontent-length: 6\r\n\r\nPOISON",
    b"HTTP/1.1 200 OK\r\n\r\nPOISON",  # no header to stop at: stopped at the head's end
    b"<html>the rest of a page</html>",
])
async def test_bytes_after_the_response_are_dropped_with_the_connection(caplog, extra):
    """A shop whose Content-Length is too small sends more than its response; parsed, the rest
    would become part of this answer (a header, more body) or the next request's. In one read
    with the response, or in a read of their own, they are dropped and the connection closed."""

    async def handler(reader, writer):
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-first: 1\r\n\r\nok" + extra)
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError):
            await read_request_head(reader)  # the pool must not send a second request on it

    async with RawServer(handler) as server:
        pool = server.pool()
        connection = await pool.acquire()
        await connection.send_request(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", None, False)
        await connection.read_head()
        body = b""
        while chunk := await connection.read_body():
            body += chunk
        assert (connection.status, body) == (200, b"ok")
        assert connection.headers == [(b"content-length", b"2"), (b"x-first", b"1")]
        assert not connection.reusable()
        pool.release(connection)
        assert await exchange(pool) == (200, b"ok", False)  # a new connection, answered the same
        pool.close()
    assert server.connections == 2
    assert "sent bytes after its response" in caplog.text


async def test_malformed_response_is_an_upstream_error():
    async def handler(reader, writer):
        await read_request_head(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with RawServer(handler) as server:
        with pytest.raises(UpstreamError):
            await exchange(server.pool())


async def test_a_response_head_over_the_limit_is_an_upstream_error_as_soon_as_it_is():
    """A shop gone wrong that sends a header without end: refused once the limit has arrived, not
    held until the read timeout (nor for ever, while bytes keep coming)."""
    sent = []

    async def handler(reader, writer):
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nx-pad: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(200):
                writer.write(b"p" * 1024)
                await writer.drain()
                sent.append(1024)
                await asyncio.sleep(0.005)

    async with RawServer(handler) as server:
        with pytest.raises(UpstreamError, match="response head of over 8192 bytes"):
            await exchange(server.pool(read_timeout=30, max_head=8192))
    assert sum(sent) < 100 * 1024  # refused long before the upstream ran out of padding


async def test_the_head_limit_counts_only_the_head():
    head = b"HTTP/1.1 200 OK\r\nx-pad: " + b"p" * 7000 + b"\r\ncontent-length: 65536\r\n\r\n"

    async def handler(reader, writer):
        await read_request_head(reader)
        writer.write(head[:3000])  # split over reads, just under the limit
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(head[3000:] + b"b" * 65536)  # the head's end and a body larger than the limit, at once
        await writer.drain()

    async with RawServer(handler) as server:
        status, body, _ = await exchange(server.pool(max_head=8192))
    assert (status, len(body)) == (200, 65536)


async def test_silent_upstream_times_out_and_its_connection_is_dropped():
    async def handler(reader, writer):
        await read_request_head(reader)
        await asyncio.sleep(5)

    async with RawServer(handler) as server:
        pool = server.pool(read_timeout=0.3)
        with pytest.raises(TimeoutError):
            await exchange(pool)
        assert pool.idle == []


async def test_nothing_listening_is_an_upstream_error():
    async with RawServer(read_request_head) as server:
        pool = server.pool()
    with pytest.raises(UpstreamError):
        await pool.acquire()


async def test_chunked_request_body_is_framed_and_terminated():
    received: list[bytes] = []

    async def handler(reader, writer):
        head = await read_request_head(reader)
        received.append(head)
        received.append(await reader.readuntil(b"0\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async def body():
        yield b"abc"
        yield b"defgh"

    async with RawServer(handler) as server:
        pool = server.pool()
        connection = await pool.acquire()
        await connection.send_request(
            b"POST /up HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n", body(), True)
        await connection.read_head()
        assert connection.status == 204
        assert await connection.read_body() == b""
        assert connection.reusable()
        pool.release(connection)
    assert received[1] == b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"


async def test_an_early_answer_stops_the_upload_and_is_relayed():
    async def handler(reader, writer):
        await read_request_head(reader)
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\nconnection: close\r\n\r\ntoo big!")
        await writer.drain()

    sent: list[int] = []

    async def body():
        for number in range(50):
            sent.append(number)
            yield b"x" * 65536
            await asyncio.sleep(0.02)

    async with RawServer(handler) as server:
        pool = server.pool()
        connection = await pool.acquire()
        await connection.send_request(b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 3276800\r\n\r\n", body(),
                                      False)
        await connection.read_head()
        assert connection.status == 413
        assert await connection.read_body() == b"too big!"
        assert not connection.reusable()
        pool.release(connection)
    assert len(sent) < 50
