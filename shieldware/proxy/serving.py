"""uvicorn's httptools protocol with the response head and first body bytes sent in one write.

uvicorn writes the status line + headers and then each body message with a write() of its
own. On loopback a write runs the receiver's TCP path inside the sender's syscall, so for the
proxy's typical small page the extra write was about a fifth of its CPU per request. Here the
head is held back until the next write (the body, usually in the same event-loop step) and
both go out together; if no body follows in that step, the head is flushed on the next one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_RESPONSE_HEAD = b"HTTP/1.1 "
_INTERIM = b"HTTP/1.1 1"  # 100 Continue must go out at once: the client waits for it


class HeadHoldingTransport:
    """A transport wrapper that holds a response head back until the next write or loop step."""

    __slots__ = ("_flush_handle", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._loop = asyncio.get_running_loop()

    def write(self, payload: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if self._flush_handle is not None:
                self._flush_handle.cancel()
                self._flush_handle = None
            self._transport.write(held + payload)
        elif payload.startswith(_RESPONSE_HEAD) and not payload.startswith(_INTERIM):
            self._held = payload
            self._flush_handle = self._loop.call_soon(self.flush)
        else:
            self._transport.write(payload)

    def flush(self) -> None:
        self._flush_handle = None
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()  # a websocket upgrade takes the connection over: the 101 head must be out first
        self._transport.set_protocol(protocol)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose response writes go through a HeadHoldingTransport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeadHoldingTransport(transport))  # type: ignore[arg-type]


__all__ = ["CoalescingHttpToolsProtocol", "HeadHoldingTransport"]
