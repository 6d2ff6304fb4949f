"""uvicorn's httptools protocol with the response head and first body bytes sent in one write,
and request heads bounded in size.

uvicorn writes the status line + headers and then each body message with a write() of its
own. On loopback a write runs the receiver's TCP path inside the sender's syscall, so for the
proxy's typical small page the extra write was about a fifth of its CPU per request. Here the
head is held back until the next write (the body, usually in the same event-loop step) and
both go out together; if no body follows in that step, the head is flushed on the next one.

httptools collects a request line or header of any length before it hands it over, so one
client could make the proxy hold megabytes per connection. A head larger than `max_head_bytes`
(request line and header fields) is answered 431 and the connection closed, as nginx refuses
with its `large_client_header_buffers`. Measuring costs one call per read: the size is added up
only when a head spans reads or arrives in a read larger than the limit.

uvicorn has no timeout for a request head either: a connection that sends nothing, or trickles a
header a byte at a time (slowloris), is held for ever, and enough of them take every file
descriptor the proxy has. A head that has not arrived `head_timeout` seconds after the connection
opened, or after its first bytes came, is answered 408 (a silent connection is just closed), as
nginx's `client_header_timeout` does. A sweep every quarter of the timeout (5 s at most) looks at
the open connections; nothing is added to a request that arrives whole in one read.

Nor does uvicorn bound how many connections one client address holds. A browser opens at most
six to a host; one address with hundreds open is a slowloris run or a socket flood, and each
costs a file descriptor until its timeout. Past `max_connections_per_ip` open connections, a new
one from that address is closed at once, as nginx's `limit_conn` would refuse it. The addresses
that speak for many clients are exempt: the trusted proxies, or loopback when none is given.

A busy proxy reads many request heads in one turn of the event loop (about a dozen at a time under
the benchmark's load), and each request's task ran detection and then forwarded it. Between two
requests' detections the forwarding, the interpreter and the kernel's socket work took the CPU's
caches, so each detection found its code and tables cold: served it cost three to four times what
it costs in a loop. The requests of one turn are now decided together, in one call made before
their tasks run (DecidingAhead), with detection's code and tables warm from the first to the last.
The fast lane decides them in the order their tasks would have, as it would then; a request it
leaves to the Python path is decided as its task runs. Either way all of a turn's decisions are
made before any of its answers comes back.

uvicorn's graceful shutdown closes every connection without a response under way, which resets a
connection accepted a moment before whose request is still arriving. Such a connection gets
`SHUTDOWN_GRACE` seconds for its request, which is answered and closes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shieldware.facts import TrustedProxies, normalise_ip
from shieldware.proxy.settings import (
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_HEAD_BYTES,
    LOOPBACK,
)
from shieldware.signals.traffic_keys import ip_prefix

log = logging.getLogger("shieldware.proxy")

_RESPONSE_HEAD = b"HTTP/1.1 "
_INTERIM = b"HTTP/1.1 1"  # 100 Continue must go out at once: the client waits for it
# How often open connections are looked at for late heads: a quarter of the timeout, within these
# bounds (a head is refused at most that much after its time is up).
SWEEP_SECONDS = (0.25, 5.0)
# Connections refused over an address's cap are told in one log line per this many seconds: a
# flood opens thousands a second.
REFUSALS_LOGGED_EVERY = 10.0
# In a graceful shutdown, how long a connection accepted just before it may take to send its
# request: a client sends at once, and a browser's preconnect that never speaks is closed after it.
SHUTDOWN_GRACE = 1.0
_LATE_BODY = b"The request head took too long.\n"
_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
              b"connection: close\r\n\r\n%b" % (len(_LATE_BODY), _LATE_BODY))


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

    # What uvicorn calls per request or per connection (and the head sweep per connection), passed
    # on directly rather than found by way of __getattr__ after the normal lookup fails.
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:  # the rest (the websocket protocols'), rarely called
        return getattr(self._transport, name)


class HeadTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"request head of {size} bytes")
        self.size = size


class HeadLimitingParser:
    """Stands in for the protocol's httptools parser: feeds it, measures heads that span reads, and
    keeps the connection's head limits. They live here, not on the protocol: uvicorn's protocol
    already has close to the 30 attributes for which CPython 3.11 shares one key table among
    instances, and past it every attribute load of uvicorn's per-request code costs more (three
    more there cost some 3,400 instructions per request, counted by bench/proxy_instructions.py)."""

    def __init__(self, parser: Any, protocol: CoalescingHttpToolsProtocol, max_head_bytes: int,
                 head_timeout: float) -> None:
        self._parser = parser
        self._protocol = protocol
        self.max_head_bytes = max_head_bytes
        self.head_timeout = head_timeout
        self.connected_at = 0.0  # when the connection opened (the loop's clock)
        # The parser's methods uvicorn calls, bound once. No __getattr__ fallback: a class with one
        # keeps CPython from specialising its attribute loads, which cost thousands of instructions
        # per request here.
        self.get_http_version = parser.get_http_version
        self.get_method = parser.get_method
        self.should_upgrade = parser.should_upgrade
        self.should_keep_alive = parser.should_keep_alive
        self.set_dangerous_leniencies = parser.set_dangerous_leniencies
        self.big_read = False  # this read is larger than the limit: the head that ends in it is measured
        self.open_scope: Any = None  # the scope whose head an earlier read ended inside
        self.open_bytes = 0  # how much of that head has arrived so far
        self.open_since = 0.0  # when the read that left it open came (the loop's clock)
        self.addresses: AddressLimits | None = None  # the server's per-address cap (None: no cap)
        self.counted: str | None = None  # the address (or IPv6 /64) this connection counts against
        self.tls_hello: bytes | None = None  # over https: what the ClientHello said (proxy/https.py)

    def feed_data(self, data: bytes) -> None:
        protocol = self._protocol
        self.big_read = len(data) > self.max_head_bytes
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, HeadTooLarge):
                raise
            protocol.refuse_head(exc.__context__.size)
            return
        scope = protocol.scope
        if scope is not None and "method" not in scope:  # this read ended inside a request head
            if scope is self.open_scope:
                self.open_bytes += len(data)  # all of it belongs to the head
            else:
                self.open_scope, self.open_bytes = scope, protocol.head_size()
                self.open_since = protocol.loop.time()
            if self.open_bytes > self.max_head_bytes:
                protocol.refuse_head(self.open_bytes)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose response writes go through a HeadHoldingTransport, and whose request
    heads are bounded (431 beyond `max_head_bytes`)."""

    def __init__(self, *args: Any, max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
                 head_timeout: float = DEFAULT_HEAD_TIMEOUT,
                 max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP,
                 exempt_networks: Iterable[str] = LOOPBACK, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        parser = HeadLimitingParser(self.parser, self, max_head_bytes, head_timeout)
        if max_connections_per_ip > 0:
            parser.addresses = AddressLimits.of(self.server_state, self.loop, max_connections_per_ip,
                                                exempt_networks)
        self.parser = parser  # type: ignore[assignment]
        self.shutting_down = False
        self.ahead = DecidingAhead.of(self)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeadHoldingTransport(transport))  # type: ignore[arg-type]
        parser: HeadLimitingParser = self.parser  # type: ignore[assignment]
        parser.connected_at = self.loop.time()
        addresses = parser.addresses
        if addresses is not None and self.client and not addresses.exempt.trusts(self.client[0]):
            share = counted_as(self.client[0])
            if not addresses.admit(share):
                self.transport.close()
                return
            parser.counted = share
        HeadDeadlines.of(self).watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._uncount()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._uncount()  # a WebSocket is a request the engine decided, not a connection waiting for one
        super().handle_websocket_upgrade()

    def _uncount(self) -> None:
        parser: HeadLimitingParser | None = self.parser  # type: ignore[assignment]
        if parser is not None and parser.counted is not None:
            parser.addresses.release(parser.counted)  # type: ignore[union-attr]
            parser.counted = None

    def head_late(self, now: float) -> bool | None:
        """Whether the request head is overdue: None when none is awaited, False when it is on time,
        True when it is late (a head that has begun), or when the connection never sent a byte."""
        if self.transport.is_closing():
            return None
        parser: HeadLimitingParser = self.parser  # type: ignore[assignment]
        scope = self.scope
        if scope is None:  # nothing has arrived since the connection opened
            return now - parser.connected_at > parser.head_timeout or None
        if parser.open_scope is not scope or "method" in scope:
            return None  # the head came whole, or the request is past it (keep-alive has its own timer)
        return now - parser.open_since > parser.head_timeout

    def refuse_late_head(self, begun: bool) -> None:
        if begun:  # a connection that never sent a byte is not logged: browsers preconnect and stay quiet
            self.transport.write(_TIMED_OUT)
            self.log_refusal(408, len(_LATE_BODY))
        self.transport.close()

    def on_headers_complete(self) -> None:
        parser = self.parser
        if parser.big_read or parser.open_scope is self.scope:  # type: ignore[attr-defined]
            size = self.head_size()
            if size > parser.max_head_bytes:  # type: ignore[attr-defined]
                raise HeadTooLarge(size)  # the parser stops; HeadLimitingParser answers 431
        super().on_headers_complete()
        if self.shutting_down and self.cycle is not None:
            self.cycle.keep_alive = False  # a request let in after the shutdown began is the last

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        ahead = self.ahead
        if ahead is not None:
            pending = ahead.pending
            if not pending:  # the turn's first request: its decisions are due before its task runs
                self.loop.call_soon(ahead.decide)
            pending.append(cycle.scope)
        super()._start_asgi_task(cycle, app)

    def shutdown(self) -> None:
        """The server's graceful shutdown (SIGTERM, or SIGHUP replacing a worker). uvicorn closes
        every connection with no response under way. That is right for a keep-alive connection
        between requests (a client sends again on a new one), but a connection accepted a moment
        ago whose request is on its way, or half read, would have a request its client sent whole
        reset, and not retried. Those get SHUTDOWN_GRACE seconds for it, answered with the
        connection closed; a connection still silent then (a browser's preconnect) is closed."""
        self.shutting_down = True
        cycle, scope = self.cycle, self.scope
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False  # the request under way is answered, then the connection closes
        elif scope is not None and "method" in scope:
            self.transport.close()  # between requests
        else:
            self.loop.call_later(SHUTDOWN_GRACE, self._close_unless_answering)

    def _close_unless_answering(self) -> None:
        if self.transport.is_closing():
            return
        cycle, scope = self.cycle, self.scope
        if cycle is not None and not cycle.response_complete:
            return  # its request came: the answer closes the connection
        self.refuse_late_head(scope is not None and "method" not in scope)

    def head_size(self) -> int:
        """The request head parsed so far: request line and header fields, as sent."""
        return len(self.url) + 16 + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def refuse_head(self, size: int) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown client"
        log.warning("refused a request head of over %d bytes (%d so far) from %s: 431",
                    self.parser.max_head_bytes, size, client)  # type: ignore[attr-defined]
        body = b"Request header fields too large.\n"
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; "
                             b"charset=utf-8\r\ncontent-length: " + str(len(body)).encode() +
                             b"\r\nconnection: close\r\n\r\n" + body)
        self.transport.close()
        self.log_refusal(431, len(body))

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, also told to the access log, unless a
        request the app is still answering will be logged by the app (a broken body)."""
        cycle = self.cycle
        in_flight = cycle is not None and not cycle.response_complete and self.scope is not None \
            and "method" in self.scope
        super().send_400_response(msg)
        if not in_flight:
            self.log_refusal(400, len(msg))

    def log_refusal(self, status: int, sent: int) -> None:
        """Tell the app's access log (ProxyApp.log_refusal) of a request refused here, with what had
        arrived of its head: the request line so far ("-" if none) and the header fields so far."""
        log_refusal = getattr(self.app, "log_refusal", None)
        if log_refusal is None:
            return
        scope = self.scope
        request_line, headers = "-", []
        if scope is not None and "method" not in scope:  # a head was in progress: this is what it said
            headers = list(self.headers)
            if self.url:
                request_line = f"{self.parser.get_method().decode('latin-1')} {self.url.decode('latin-1')}"
                if headers:  # the request line is complete
                    request_line += f" HTTP/{self.parser.get_http_version()}"
        log_refusal(self.client, status, sent, request_line, headers)


class DecidingAhead:
    """One per server: the requests whose heads arrived in one turn of the event loop, decided
    together before their tasks run (the app's `decide_ahead`: the fast lane's, or None without
    one). Each task then finds its decision in its scope. See the module's docstring for why."""

    def __init__(self, loop: asyncio.AbstractEventLoop, app: Any) -> None:
        self.loop = loop
        self.app = app
        self.pending: list[dict[str, Any]] = []

    @classmethod
    def of(cls, protocol: CoalescingHttpToolsProtocol) -> DecidingAhead | None:
        state = protocol.server_state
        ahead = getattr(state, "deciding_ahead", False)
        if ahead is False:
            decides = getattr(protocol.app, "decide_ahead", None) is not None
            ahead = cls(protocol.loop, protocol.app) if decides else None
            state.deciding_ahead = ahead  # type: ignore[attr-defined]
        return ahead

    def decide(self) -> None:
        pending, self.pending = self.pending, []
        decide = self.app.decide_ahead
        if decide is None:
            return
        try:
            decide(pending)
        except Exception:  # what was not decided ahead is decided as its task runs, and fails there
            log.exception("deciding %d request(s) ahead failed", len(pending))


class HeadDeadlines:
    """One per server: a few times per timeout, closes its connections whose request head is late,
    and says so in one log line however many there were (a slowloris attack opens thousands)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set[Any], head_timeout: float) -> None:
        self.loop = loop
        self.connections = connections
        low, high = SWEEP_SECONDS
        self.period = min(high, max(low, head_timeout / 4))
        self.handle: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, protocol: CoalescingHttpToolsProtocol) -> HeadDeadlines:
        state = protocol.server_state
        deadlines = getattr(state, "head_deadlines", None)
        if deadlines is None:
            deadlines = cls(protocol.loop, protocol.connections, protocol.parser.head_timeout)  # type: ignore[attr-defined]
            state.head_deadlines = deadlines  # type: ignore[attr-defined]
        return deadlines

    def watch(self) -> None:
        if self.handle is None:
            self.handle = self.loop.call_later(self.period, self.sweep)

    def sweep(self) -> None:
        self.handle = None
        now = self.loop.time()
        late = [(c, c.scope is not None) for c in self.connections
                if isinstance(c, CoalescingHttpToolsProtocol) and c.head_late(now)]
        for connection, begun in late:
            connection.refuse_late_head(begun)
        if late:
            clients = sorted({c.client[0] if c.client else "unknown" for c, _ in late})
            begun = sum(b for _, b in late)
            others = f" and {len(clients) - 5} other addresses" if len(clients) > 5 else ""
            log.warning("closed %d connection(s) with no request head after %g s (%d mid-head, answered 408) "
                        "from %s%s", len(late), late[0][0].parser.head_timeout, begun, ", ".join(clients[:5]), others)
        if self.connections:
            self.watch()


def counted_as(address: str) -> str:
    """Whose share of connections a peer address counts against: the address itself, or for IPv6
    its /64. One subscriber is given a /64, so a new address for every connection costs an
    attacker nothing. (An IPv4 address mapped into IPv6 counts as itself.)"""
    if ":" not in address:
        return address
    plain = normalise_ip(address) or address
    return plain if ":" not in plain else ip_prefix(plain)


class AddressLimits:
    """One per server: the connections each client address (IPv6: each /64) holds open, at most
    `limit` each; peers in the `exempt` networks are not counted. The first refusal is logged at
    once, the ones after it in one line per REFUSALS_LOGGED_EVERY seconds, with the addresses."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, exempt: Iterable[str]) -> None:
        self.loop = loop
        self.limit = limit
        self.exempt = TrustedProxies(exempt)
        self.open: dict[str, int] = {}
        self.refused: dict[str, int] = {}  # since the last log line
        self._report: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, server_state: Any, loop: asyncio.AbstractEventLoop, limit: int,
           exempt: Iterable[str]) -> AddressLimits:
        limits = getattr(server_state, "address_limits", None)
        if limits is None:
            limits = server_state.address_limits = cls(loop, limit, exempt)
        return limits

    def admit(self, address: str) -> bool:
        """Count a new connection against `address` (see counted_as); False (not counted) when it
        holds `limit` already."""
        held = self.open.get(address, 0)
        if held >= self.limit:
            self.refused[address] = self.refused.get(address, 0) + 1
            if self._report is None:  # told at once, then at most once a period
                self.report()
                self._report = self.loop.call_later(REFUSALS_LOGGED_EVERY, self._period_over)
            return False
        self.open[address] = held + 1
        return True

    def release(self, address: str) -> None:
        held = self.open.get(address, 0) - 1
        if held > 0:
            self.open[address] = held
        else:
            self.open.pop(address, None)

    def _period_over(self) -> None:
        self._report = None
        if self.report():  # refusals went on: the next period starts now
            self._report = self.loop.call_later(REFUSALS_LOGGED_EVERY, self._period_over)

    def report(self) -> bool:
        """Log the refusals since the last line, if any (True when there were)."""
        refused, self.refused = self.refused, {}
        if not refused:
            return False
        worst = sorted(refused.items(), key=lambda item: -item[1])
        shown = ", ".join(f"{address} ({count})" for address, count in worst[:5])
        others = f" and {len(worst) - 5} other addresses" if len(worst) > 5 else ""
        log.warning("closed %d new connection(s) at once from addresses holding %d open already "
                    "(--max-connections-per-ip): %s%s", sum(refused.values()), self.limit, shown, others)
        return True


__all__ = ["AddressLimits", "CoalescingHttpToolsProtocol", "DecidingAhead", "HeadDeadlines", "HeadHoldingTransport",
           "HeadTooLarge", "counted_as"]
