"""Access log in the nginx/apache "combined" format, so `shieldware analyze` reads the proxy's own log."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from shieldware.facts import TrustedProxies, normalise_ip, resolve_client_ip
from shieldware.logfile import DEFAULT_KEEP, LogFile

# Lines are written in batches: one write() per batch keeps the hot path free of syscalls, and
# O_APPEND makes each batch land whole even when several workers share the file.
FLUSH_EVERY_LINES = 256
FLUSH_EVERY_SECONDS = 1.0

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def escape_field(text: str) -> str:
    """Escape like nginx does in log fields: quotes, backslashes and control bytes become \\xHH."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(ch if ch.isprintable() and ch not in '"\\' else f"\\x{ord(ch) & 0xFF:02X}" for ch in text)


class _TimeFormatter:
    """`[10/Oct/2026:13:55:36 +0000]`, formatted once per second, not once per request."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            local = time.localtime(second)
            offset = local.tm_gmtoff or 0
            sign = "+" if offset >= 0 else "-"
            offset = abs(offset)
            self._text = (f"{local.tm_mday:02d}/{_MONTHS[local.tm_mon - 1]}/{local.tm_year}:"
                          f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} "
                          f"{sign}{offset // 3600:02d}{offset % 3600 // 60:02d}")
            self._second = second
        return self._text


class AccessLogWriter:
    """Buffers formatted lines and writes them to a file (or stdout for "-") in batches. The file
    follows logrotate and, with `max_bytes`, rotates itself; a write the disk or a closed stdout
    refuses is counted, never raised into a request (shieldware/logfile.py)."""

    def __init__(self, path: str, max_bytes: int = 0, keep: int = DEFAULT_KEEP) -> None:
        self.path = path
        self._file = LogFile(path, max_bytes, keep)
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def append(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= FLUSH_EVERY_LINES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_EVERY_SECONDS, self.flush)
            except RuntimeError:  # no loop (a synchronous caller): write at once
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        payload = "".join(self._lines).encode("utf-8", "replace")
        self._lines.clear()
        self._file.write(payload)

    def close(self) -> None:
        self.flush()
        self._file.close()


class AccessLog:
    """ASGI wrapper that logs every HTTP exchange, including the ones shieldware refused.

    The client address is the peer, or — when the peer is a trusted proxy — the client its
    forwarding headers name, the same resolution the middleware uses.
    """

    def __init__(self, app: Any, writer: AccessLogWriter, trusted: TrustedProxies,
                 clock: Any = time.time) -> None:
        self.app = app
        self.writer = writer
        self.trusted = trusted
        self.clock = clock
        self.format_time = _TimeFormatter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        outcome = [0, 0]  # status, body bytes sent

        async def send_counting(message: dict) -> None:
            if message["type"] == "http.response.body":
                outcome[1] += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                outcome[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            # 499 is nginx's "client closed the request before a response": the same meaning here.
            self.writer.append(self.format_line(scope, outcome[0] or 499, outcome[1], started))

    def client_address(self, scope: dict[str, Any]) -> str:
        client = scope.get("client")
        peer = (normalise_ip(str(client[0])) if client else None) or "-"
        if self.trusted and self.trusted.trusts(peer):
            header_map: dict[str, str] = {}
            for name, value in scope["headers"]:
                if name in (b"x-forwarded-for", b"forwarded", b"x-real-ip"):
                    key = name.decode()
                    text = value.decode("latin-1")
                    header_map[key] = header_map[key] + ", " + text if key in header_map else text
            peer, _ = resolve_client_ip(peer, header_map, self.trusted)
        return peer

    def format_line(self, scope: dict[str, Any], status: int, sent: int, started: float) -> str:
        target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string")
        if query:
            target += "?" + query.decode("latin-1")
        request_line = f"{scope['method']} {target} HTTP/{scope.get('http_version', '1.1')}"
        return self._line(scope, request_line, status, sent, started)

    def log_refusal(self, client: Any, status: int, sent: int, request_line: str,
                    headers: list[tuple[bytes, bytes]]) -> None:
        """A request the serving layer answered before any app saw it (a head too large, too slow
        or unparsable): logged like the rest, with what had arrived of it ("-" for no request
        line), so an attack on the server itself shows in the log `shieldware analyze` reads."""
        scope = {"client": client, "headers": headers}
        self.writer.append(self._line(scope, request_line, status, sent, self.clock()))

    def _line(self, scope: dict[str, Any], request_line: str, status: int, sent: int, started: float) -> str:
        referer = user_agent = "-"
        for name, value in scope["headers"]:
            if name == b"referer":
                referer = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
        return (f'{self.client_address(scope)} - - [{self.format_time(started)}] '
                f'"{escape_field(request_line)}" {status} {sent} '
                f'"{escape_field(referer)}" "{escape_field(user_agent)}"\n')
