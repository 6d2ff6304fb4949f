"""WebSocket passthrough: open the same socket upstream, then relay frames both ways until one side closes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import aiohttp

from shieldware.proxy.forwarding import refuse_loose_climbs
from shieldware.proxy.headers import MalformedRequest, client_headers_for_upstream
from shieldware.proxy.pages import render_error

if TYPE_CHECKING:
    from shieldware.proxy.forwarding import Forwarder

log = logging.getLogger("shieldware.proxy")

# aiohttp writes its own handshake; the client's copies of these would clash with it.
_HANDSHAKE_HEADERS = frozenset({
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol",
})
# 1011: the server hit an unexpected condition (here: the upstream went away or refused).
CLOSE_UPSTREAM_FAILED = 1011


async def relay_websocket(forwarder: Forwarder, scope: dict[str, Any], receive: Any, send: Any) -> None:
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    peer, client_ip, decision = forwarder.who_asked(scope)
    try:
        if forwarder.base_path:
            refuse_loose_climbs(scope)
        headers, _, _ = client_headers_for_upstream(scope, peer, client_ip, forwarder.trusted.trusts(peer),
                                                    forwarder.rewrite_host)
    except MalformedRequest as exc:
        forwarder.count_failure("client", "bad_request", "400")
        await refuse_handshake(scope, send, 400, "Bad request", str(exc))
        return
    headers = [(name, value) for name, value in headers if name not in _HANDSHAKE_HEADERS]
    if decision is not None and decision.header_lines is not None:  # ours to write (see Forwarder.request_head)
        headers += [(name.decode(), value.decode()) for name, value in decision.shield_headers()]
    session = forwarder.session or forwarder.open_session()
    url = forwarder.upstream_url(scope)
    url = url.with_scheme("wss" if url.scheme == "https" else "ws")
    try:
        upstream = await session.ws_connect(
            url, headers=headers, protocols=scope.get("subprotocols") or (), autoclose=False,
            max_msg_size=0, compress=0,
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("websocket to upstream %s failed: %s: %s", url, type(exc).__name__, exc)
        reason = ("timeout" if isinstance(exc, TimeoutError) else
                  "handshake_refused" if isinstance(exc, aiohttp.WSServerHandshakeError) else "unreachable")
        forwarder.count_failure("upstream", reason, "403")
        # Closing before accepting makes the ASGI server refuse the handshake (HTTP 403).
        await send({"type": "websocket.close", "code": CLOSE_UPSTREAM_FAILED})
        return
    await send({"type": "websocket.accept", "subprotocol": upstream.protocol})
    async with upstream:
        to_upstream = asyncio.ensure_future(_client_to_upstream(receive, upstream))
        to_client = asyncio.ensure_future(_upstream_to_client(upstream, send))
        done, pending = await asyncio.wait((to_upstream, to_client), return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning("websocket relay ended with %r", task.exception())


async def refuse_handshake(scope: dict[str, Any], send: Any, status: int, title: str, message: str) -> None:
    """Answer the handshake with an error page where the server can send one (the ASGI
    websocket.http.response extension); elsewhere closing before accepting makes it a 403."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008, "reason": title})
        return
    headers, body = render_error(status, title, message)
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


async def _client_to_upstream(receive: Any, upstream: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            if text is not None:
                await upstream.send_str(text)
            else:
                await upstream.send_bytes(message.get("bytes") or b"")
        elif kind == "websocket.disconnect":
            await upstream.close(code=message.get("code", 1000))
            return


async def _upstream_to_client(upstream: aiohttp.ClientWebSocketResponse, send: Any) -> None:
    async for message in upstream:
        if message.type is aiohttp.WSMsgType.TEXT:
            await send({"type": "websocket.send", "text": message.data})
        elif message.type is aiohttp.WSMsgType.BINARY:
            await send({"type": "websocket.send", "bytes": message.data})
        elif message.type is aiohttp.WSMsgType.CLOSE or message.type is aiohttp.WSMsgType.ERROR:
            break
    code = upstream.close_code or 1000
    with contextlib.suppress(Exception):  # the client may already be gone
        await send({"type": "websocket.close", "code": code if code != 1006 else CLOSE_UPSTREAM_FAILED})
