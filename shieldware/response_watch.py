"""What the middleware hears of a response on its way to the client.

A `ResponseWatch` stands in for the ASGI `send` the app is given. From the response's start it
keeps the status (the engine learns from 404s and failed logins), takes out the app's
X-Shield-Event headers (they are for shieldware, never for the client) and copies the headers
the route group's outcome rules read. Every message then goes on to the real `send`, except a
start the engine must hear of when the watch was given `hear`: the app's events came with it, or
its status is one of `hear_on`. That start goes to `hear(watch, start)` instead, once, which
sends it and tells the engine (the middleware answers planned requests this way: its `handle()`
returns the app's own coroutine, with no frame of its own around it to listen afterwards).

It runs twice per request, so the compiled lane's extension (shieldware/fastlane/_lane.c) has
the same type in C and it is used when the extension is built. The C watch handles the usual
start (no event header, no watched header) itself and calls `notice_start` below for anything
else, so the two can differ only in speed. This class is the reference and the fallback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from shieldware.outcomes import take_event_headers

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


Hear = Callable[[Any, MutableMapping[str, Any]], Awaitable[None]]


class PyResponseWatch:
    """`send`, watched: `status` (of the first response start, None before one), `events` (the
    app's X-Shield-Event headers, parsed; None when it sent none) and `outcomes` (watched header
    name → value, lower-cased names; None when none came). `hear`, `hear_on` and `decision` are
    kept for the hearing (None when not given); `hear` is None again once it has been called."""

    __slots__ = ("decision", "events", "hear", "hear_on", "outcomes", "send", "status", "watched")

    def __init__(self, send: Send, watched: frozenset[str] | None, hear: Hear | None = None,
                 hear_on: frozenset[int] | None = None, decision: Any = None) -> None:
        if hear_on is not None and not isinstance(hear_on, (set, frozenset)):
            raise TypeError("hear_on must be a set or frozenset of statuses")
        self.send = send
        self.watched = watched or None
        self.hear = hear
        self.hear_on = hear_on
        self.decision = decision
        self.status: int | None = None
        self.events: list[tuple[str, dict[str, str]]] | None = None
        self.outcomes: dict[str, str] | None = None

    def __call__(self, message: MutableMapping[str, Any]) -> Awaitable[None]:
        # Not a coroutine itself: it hands back send's awaitable, a frame fewer per message.
        if message["type"] == "http.response.start":
            notice_start(self, message)
            hear = self.hear
            if hear is not None and (self.events or (self.hear_on is not None and self.status in self.hear_on)):
                self.hear = None
                return hear(self, message)
        return self.send(message)


def notice_start(watch: Any, message: MutableMapping[str, Any]) -> None:
    """Everything a watch does with a response start (the C watch calls this for the unusual ones)."""
    status = message["status"]
    if watch.status is None:
        watch.status = status
    events = take_event_headers(message)
    if events:
        watch.events = [*watch.events, *events] if watch.events else events
    watched = watch.watched
    if watched:
        for name, value in message.get("headers") or ():
            name = name.decode("latin-1").lower()
            if name in watched:
                if watch.outcomes is None:
                    watch.outcomes = {}
                watch.outcomes[name] = value.decode("latin-1")


def _compiled() -> Any:
    try:
        from shieldware.fastlane import _lane
    except ImportError:  # no compiler at install time: the fast lane says so in its own warning
        return None
    _lane.notice_responses_with(notice_start)
    return _lane.ResponseWatch


ResponseWatch: Any = _compiled() or PyResponseWatch

__all__ = ["PyResponseWatch", "ResponseWatch", "notice_start"]
