"""The shop's answers to forward-auth requests, read back from the edge's access log.

With forward auth the edge asks shieldware before the request reaches the shop and never says
how the shop answered. The signals that learn from answers (404 probing, failed logins told by a
401 on the login route) would learn nothing. Every edge can log the status it sent next to the
`X-Shield-Ref` the check gave it, so `shieldware proxy --outcome-log FILE` reads that log as it
grows. The check remembers the decision of every request it let through (`AwaitingOutcomes`) and
a logged line with the decision's reference and status is fed to `Engine.feedback`, as the
proxy does with the statuses it forwards.

Lines are one of:

- `REF STATUS ["EVENT"]`: nginx `log_format shieldware_outcome '$shield_ref $status
  "$upstream_http_x_shield_event"';`. A third field is read as the shop's `X-Shield-Event` when it
  has an event's shape (nginx writes `-` for none); anything else after the status is ignored.
- a JSON object: Traefik's JSON access log (`request_X-Shield-Ref`, `DownstreamStatus`,
  `origin_X-Shield-Event`), Caddy's (`resp_headers["X-Shield-Ref"]` or `request.headers[...]`,
  `status`, `resp_headers["X-Shield-Event"]`), or any log naming `shield_ref`, `status` and,
  optionally, `shield_event`.

The shop's `X-Shield-Event` (`login_failed; account=alice`) is what the check cannot see by itself:
the account a login named is in the request's body, which never reaches the check. With it the
login signals count accounts per address as they do behind `shieldware proxy`.

A line without a reference (`-`, a request the check never saw) is passed over; a line that is
neither form is counted as malformed and logged (once a minute), never fatal. A reference this
process does not hold is counted too: with several workers each reads the whole log and feeds the
lines of its own decisions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from shieldware.outcomes import parse_event_header, tell_engine

log = logging.getLogger("shieldware.proxy.outcome_feed")

# How long a let-through decision waits for its line. nginx and Traefik log when the response has
# been sent, so a long download's line comes late; five minutes covers pages and most files.
DEFAULT_MAX_AGE = 300.0
# Decisions held at once (the oldest give way first): with the age above, 200 checks a second.
# A held decision takes about 1.5 KB, so some 100 MB when full.
DEFAULT_MAX_HELD = 65_536
POLL_SECONDS = 0.25
READ_BYTES = 1 << 20  # read at most this much of a log per poll, so one poll never stalls the loop
MAX_LINE_BYTES = 64 * 1024  # a longer run without a newline is not a log line of ours
COMPLAIN_EVERY = 60.0  # seconds between log messages about malformed lines

_REF_KEYS = ("request_X-Shield-Ref", "shield_ref", "x_shield_ref")  # Traefik's, then plain names
_STATUS_KEYS = ("DownstreamStatus", "status")  # Traefik's, then Caddy's and plain ones
# Traefik's header as the shop sent it, then as the client got it; then a plain name.
_EVENT_KEYS = ("origin_X-Shield-Event", "downstream_X-Shield-Event", "shield_event")
_NGINX_ESCAPE = re.compile(rb"\\x([0-9A-Fa-f]{2})")  # nginx's log escaping of '"', '\\' and non-ASCII bytes


class OutcomeLineError(ValueError):
    """A log line that names no reference and status in a form this feed reads."""


Event = tuple[str, dict[str, str]]


class LoggedOutcome(NamedTuple):
    """What one log line says of a let-through request."""

    ref: str
    status: int
    events: tuple[Event, ...] = ()  # the shop's X-Shield-Event headers, parsed
    unread_events: tuple[str, ...] = ()  # X-Shield-Event values not in the header's form


def _events(values: Iterable[str]) -> tuple[tuple[Event, ...], tuple[str, ...]]:
    events, unread = [], []
    for value in values:
        if value in ("", "-"):
            continue
        parsed = parse_event_header(value)
        if parsed is None:
            unread.append(value)
        else:
            events.append(parsed)
    return tuple(events), tuple(unread)


def _status(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    raise OutcomeLineError(f"status {value!r} is not an HTTP status code")


def _header_values(headers: Any, wanted: str) -> list[Any]:
    """A header's values from a JSON log's header object (Caddy's values are lists)."""
    found: list[Any] = []
    for name, value in headers.items() if isinstance(headers, dict) else ():
        if name.lower() == wanted:
            found.extend(value if isinstance(value, list) else [value])
    return found


def _header(headers: Any, wanted: str) -> Any:
    values = _header_values(headers, wanted)
    return values[0] if values else None


def _json_ref(entry: dict[str, Any]) -> Any:
    for key in _REF_KEYS:
        if key in entry:
            return entry[key]
    # Caddy logs the request as the client sent it; the README's site puts the reference on the response.
    request = entry.get("request")
    found = _header(entry.get("resp_headers"), "x-shield-ref")
    if found is None and isinstance(request, dict):
        found = _header(request.get("headers"), "x-shield-ref")
    return found


def _json_event_values(entry: dict[str, Any]) -> list[str]:
    for key in _EVENT_KEYS:
        if key in entry:
            value = entry[key]
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return [str(v) for v in _header_values(entry.get("resp_headers"), "x-shield-event")]  # Caddy's


def _from_json(line: str) -> LoggedOutcome | None:
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise OutcomeLineError(f"not JSON: {exc}") from None
    if not isinstance(entry, dict):
        raise OutcomeLineError("a JSON line must be an object")
    ref = _json_ref(entry)
    if ref in (None, "", "-"):
        return None
    status = next((entry[key] for key in _STATUS_KEYS if key in entry), None)
    if status is None:
        raise OutcomeLineError("no status field (DownstreamStatus or status)")
    return LoggedOutcome(str(ref), _status(status), *_events(_json_event_values(entry)))


def _unescaped(field: str) -> str:
    """A field as nginx's default log escaping wrote it, with its \\xHH bytes decoded."""
    if "\\x" not in field:
        return field
    raw = _NGINX_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), field.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", errors="replace")


def parse_outcome(line: str) -> LoggedOutcome | None:
    """What one log line says; None when it names no reference (a request the check never saw)."""
    line = line.strip()
    if not line:
        return None
    if line.startswith(("{", "[")):
        return _from_json(line)
    fields = line.split(None, 2)
    if len(fields) < 2:
        raise OutcomeLineError("expected 'REF STATUS' (nginx: log_format shieldware_outcome '$shield_ref $status')")
    ref, status = fields[0], fields[1]
    if ref == "-":
        return None
    status_code = _status(status)
    rest = fields[2].strip() if len(fields) > 2 else ""
    if rest.startswith('"'):  # the event, quoted as the README's log_format has it
        end = rest.find('"', 1)
        return LoggedOutcome(ref, status_code, *_events([_unescaped(rest[1:end if end > 0 else None])]))
    if rest and parse_event_header(rest) is not None:  # unquoted: the rest of the line, if an event
        return LoggedOutcome(ref, status_code, *_events([_unescaped(rest)]))
    return LoggedOutcome(ref, status_code)  # nothing more, or fields of some other log format


class AwaitingOutcomes:
    """Decisions of let-through checks by reference, until their line comes or they are too old."""

    def __init__(self, max_held: int = DEFAULT_MAX_HELD, max_age: float = DEFAULT_MAX_AGE) -> None:
        self.max_held = max_held
        self.max_age = max_age
        self._held: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self.given_up = 0  # decisions dropped before their line came (too old, or too many held)

    def __len__(self) -> int:
        return len(self._held)

    def remember(self, decision: Any, now: float) -> None:
        self._held[decision.ref] = (decision, now)
        self._expire(now)

    def take(self, ref: str, now: float) -> Any | None:
        """The decision with this reference, once (its line is fed once), or None."""
        self._expire(now)
        held = self._held.pop(ref, None)
        return None if held is None else held[0]

    def _expire(self, now: float) -> None:
        held = self._held
        while held:
            _, (_, since) = next(iter(held.items()))
            if len(held) <= self.max_held and now - since <= self.max_age:
                return
            held.popitem(last=False)
            self.given_up += 1


class GrowingFile:
    """The complete lines appended to a log since the last read, across logrotate's renames and
    copytruncate. A file present at start is read from its end (its lines are older than this
    process's decisions); one that appears later is read from its start."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: Any = None
        self._identity: tuple[int, int] | None = None
        self._partial = b""
        self.oversized = 0  # runs of MAX_LINE_BYTES without a newline, dropped
        try:
            self._open(at_end=True)
        except FileNotFoundError:
            pass

    def _open(self, at_end: bool) -> None:
        handle = open(self.path, "rb")  # noqa: SIM115 - held open between polls, closed in close()
        stat = os.fstat(handle.fileno())
        if at_end:
            handle.seek(0, os.SEEK_END)
        self._file, self._identity = handle, (stat.st_dev, stat.st_ino)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read_lines(self) -> list[bytes]:
        lines = self._drain() if self._file is not None else []
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return lines  # renamed away and not yet replaced: its tail was read above
        if self._file is None or (named.st_dev, named.st_ino) != self._identity:
            self.close()  # the old file's lines are in `lines`; the new one is read from its start
            self._partial = b""
            try:
                self._open(at_end=False)
            except FileNotFoundError:
                return lines
        elif named.st_size < self._file.tell():  # truncated in place (copytruncate)
            self._file.seek(0)
            self._partial = b""
        return lines + self._drain()

    def _drain(self) -> list[bytes]:
        data = self._partial + self._file.read(READ_BYTES)
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > MAX_LINE_BYTES:
            self._partial = b""
            self.oversized += 1
        return lines


class OutcomeFeed:
    """Follows the outcome logs and feeds each line of a held decision to the engine."""

    def __init__(self, engine: Any, awaiting: AwaitingOutcomes, paths: Iterable[str],
                 clock: Callable[[], float]) -> None:
        self.engine = engine
        self.awaiting = awaiting
        self.files = [GrowingFile(path) for path in paths]
        self.clock = clock
        self._complained_at = float("-inf")
        self._given_up_told = 0

    async def poll(self, now: float) -> dict[str, int]:
        """Read what the logs gained and feed it; answers how many lines went which way."""
        counts = {"fed": 0, "not_held": 0, "no_ref": 0, "malformed": 0}
        for growing in self.files:
            oversized = growing.oversized
            for raw in growing.read_lines():
                kind = await self._feed(raw, growing.path, now)
                counts[kind] += 1
            counts["malformed"] += growing.oversized - oversized
        metrics = self.engine.metrics
        for kind, n in counts.items():
            if n:
                metrics.add_count("outcome_lines", n, {"result": kind})
        given_up = self.awaiting.given_up - self._given_up_told
        if given_up:  # a steady count here: the edge logs later than max_age, or checks outrun max_held
            metrics.add_count("outcome_decisions_given_up", given_up, {})
            self._given_up_told += given_up
        return counts

    async def _feed(self, raw: bytes, path: str, now: float) -> str:
        try:
            parsed = parse_outcome(raw.decode("utf-8", errors="replace"))
        except OutcomeLineError as exc:
            self._complain(path, raw, exc, now)
            return "malformed"
        if parsed is None:
            return "no_ref"
        if parsed.unread_events:
            self._complain(path, raw, OutcomeLineError(
                f"X-Shield-Event {parsed.unread_events[0]!r} is not 'event; field=value' (fed without it)"), now)
        decision = self.awaiting.take(parsed.ref, now)
        if decision is None:
            return "not_held"
        await tell_engine(self.engine, decision, now, parsed.events, parsed.status)
        return "fed"

    def _complain(self, path: str, raw: bytes, error: Exception, now: float) -> None:
        if now - self._complained_at >= COMPLAIN_EVERY:
            self._complained_at = now
            log.warning("outcome log %s: a line was not read (%s): %.200r; for a minute further ones are "
                        "only counted, in shieldware_outcome_lines_total{result=\"malformed\"}", path, error, raw)

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll until `stopping` is set, then read once more (lines logged during shutdown)."""
        while not stopping.is_set():
            try:
                await self.poll(self.clock())
            except OSError as exc:  # e.g. the log's directory became unreadable: keep trying
                log.warning("outcome log: %s", exc)
            try:
                await asyncio.wait_for(stopping.wait(), POLL_SECONDS)
            except TimeoutError:
                pass
        await self.poll(self.clock())
        for growing in self.files:
            growing.close()
