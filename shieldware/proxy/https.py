"""https served by the proxy itself, reading each client's ClientHello on the way.

uvicorn would hand its certificate to `loop.create_server(ssl=...)`, and asyncio's TLS layer
keeps the handshake's bytes to itself. Here the proxy's protocol factory makes the TLS layer
(asyncio's own `SSLProtocol`, the one `create_server` would make) with a look at the bytes it
reads until the ClientHello is whole (`shieldware.tls_hello`). What it says of the client's TLS
stack reaches the engine as the `x-shieldware-tls` request header of every request on that
connection, in place of any a client sent. Everything else (handshake, its 60 s bound, the
certificate, what a client that does not speak TLS gets) is asyncio's, as before. The certificate
is the one `CertificateWatch` holds for the process, so a renewal is served without a restart.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from asyncio.sslproto import SSLProtocol
from typing import Any

from shieldware.proxy.serving import CoalescingHttpToolsProtocol
from shieldware.proxy.settings import DEFAULT_TLS_RECHECK
from shieldware.proxy.tls import served_certificate
from shieldware.tls_hello import HEADER_BYTES, MAX_HELLO_BYTES, bytes_wanted, read_hello

HANDSHAKE_TIMEOUT = 60.0  # asyncio's default for a server's TLS handshake


class HelloReadingTLS(SSLProtocol):
    """asyncio's server-side TLS layer, telling the HTTP protocol above it what the ClientHello said."""

    def __init__(self, loop: asyncio.AbstractEventLoop, http: HttpsProtocol, context: ssl.SSLContext) -> None:
        super().__init__(loop, http, context, None, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        self._http = http
        self._hello: bytearray | None = bytearray()  # the bytes so far, until the hello is whole
        self._wanted = 5  # read them again once there are this many (a record's end)
        self._buffer: Any = None

    def get_buffer(self, n: int) -> Any:
        self._buffer = super().get_buffer(n)
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        hello = self._hello
        if hello is not None:
            hello += self._buffer[:nbytes]
            # Parsed only when a record is whole: a hello trickled in a byte at a time is not
            # parsed a byte at a time.
            if len(hello) >= self._wanted:
                self._wanted = bytes_wanted(hello)
                if self._wanted == len(hello):
                    self._read_hello(bytes(hello))
            if hello[0] != 22 or len(hello) > MAX_HELLO_BYTES:
                self._hello = None  # not a TLS handshake: TLS itself says what happens next
        super().buffer_updated(nbytes)

    def _read_hello(self, seen: bytes) -> None:
        found = read_hello(seen)
        if found is None:
            self._wanted = len(seen) + 5  # the hello goes on in the next record
            return
        self._http.parser.tls_hello = found.header_value().encode()
        self._hello = None


class HttpsProtocol(CoalescingHttpToolsProtocol):
    """The proxy's HTTP protocol over TLS: each request head gets the connection's x-shieldware-tls."""

    def on_headers_complete(self) -> None:
        headers = self.headers
        for index in range(len(headers) - 1, -1, -1):
            if headers[index][0] == HEADER_BYTES:  # a client's own: only ours is believed
                del headers[index]
        value = self.parser.tls_hello  # type: ignore[attr-defined]
        if value is not None:
            headers.append((HEADER_BYTES, value))
        super().on_headers_complete()


class HttpsProtocolFactory:
    """uvicorn's `http=` for https: an HttpsProtocol (CoalescingHttpToolsProtocol's `options`) behind
    TLS. Picklable, for worker processes: each loads the certificate when it first serves, and
    looks at its files again every `recheck` seconds (0: on SIGHUP only) for a renewal."""

    def __init__(self, cert: str, key: str | None, recheck: float = DEFAULT_TLS_RECHECK, **options: Any) -> None:
        self.cert, self.key, self.recheck, self.options = cert, key, recheck, options

    def __call__(self, **uvicorn_arguments: Any) -> HelloReadingTLS:
        context = served_certificate(self.cert, self.key, self.recheck).current(time.time())
        http = HttpsProtocol(**uvicorn_arguments, **self.options)
        return HelloReadingTLS(http.loop, http, context)
