"""A graceful shutdown of the proxy's server (SIGTERM, or SIGHUP replacing a worker) answers the
requests of connections it had already accepted, and closes the ones that stay silent.

uvicorn's own shutdown closes every connection with no response under way. A connection the
server accepted a moment earlier, whose request is still on its way or half read, was so reset:
its client saw "connection reset by peer" for a request it had sent whole, and does not retry
it, as it would a request on a keep-alive connection that had been idle."""

from __future__ import annotations

import functools
import socket
import time

from shieldware.proxy.serving import SHUTDOWN_GRACE, CoalescingHttpToolsProtocol
from tests.support import LiveServer, read_until_closed

REQUEST = b"GET /page HTTP/1.1\r\nHost: shop\r\nUser-Agent: test\r\n\r\n"


async def shop(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain"),
                                                                          (b"content-length", b"6")]})
    await send({"type": "http.response.body", "body": b"served"})


def serving() -> LiveServer:
    return LiveServer(shop, http=functools.partial(CoalescingHttpToolsProtocol, head_timeout=30),
                      timeout_graceful_shutdown=20)


def accepted(server: LiveServer, count: int) -> None:
    """Wait until the server has made `count` connections (a liveness bound, not a timing claim)."""
    deadline = time.monotonic() + 10
    while len(server.server.server_state.connections) < count:
        assert time.monotonic() < deadline, "the server never took the connection"
        time.sleep(0.01)


def shutting_down(server: LiveServer) -> None:
    """Ask the server to stop, and wait until it has told its connections (uvicorn checks the flag
    every 0.1 s, then closes its listening socket before it tells them)."""
    server.server.should_exit = True
    deadline = time.monotonic() + 10
    while server.server.servers and any(s.is_serving() for s in server.server.servers):
        assert time.monotonic() < deadline, "the server never began its shutdown"
        time.sleep(0.01)
    time.sleep(0.05)  # connection.shutdown() runs right after the listening socket closes


def test_a_request_sent_just_after_the_shutdown_began_is_answered_and_the_connection_closed():
    server = serving()
    with server, socket.create_connection(("127.0.0.1", server.port)) as client:
        accepted(server, 1)
        shutting_down(server)
        client.sendall(REQUEST)
        reply = read_until_closed(client)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in reply.lower()
    assert reply.endswith(b"served")


def test_a_request_head_half_read_when_the_shutdown_began_is_answered():
    server = serving()
    with server, socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(REQUEST[:20])
        accepted(server, 1)
        time.sleep(0.05)  # let the server read the first half
        shutting_down(server)
        client.sendall(REQUEST[20:])
        reply = read_until_closed(client)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"served")


def test_silent_and_idle_connections_are_closed_and_the_shutdown_ends():
    server = serving()
    with server:
        silent = socket.create_connection(("127.0.0.1", server.port))  # a browser's preconnect
        idle = socket.create_connection(("127.0.0.1", server.port))  # keep-alive, its request answered
        idle.sendall(REQUEST)
        idle.settimeout(10)
        assert idle.recv(65536).endswith(b"served")
        accepted(server, 2)
        shutting_down(server)
        # the idle keep-alive connection is closed at once, as uvicorn always did: its client retries
        assert read_until_closed(idle) == b""
        # the silent one after the grace, which bounds how long it can hold the shutdown up
        assert read_until_closed(silent) == b""
        server.thread.join(SHUTDOWN_GRACE + 15)
        assert not server.thread.is_alive()
        silent.close()
        idle.close()
