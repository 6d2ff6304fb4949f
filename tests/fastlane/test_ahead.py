"""Deciding ahead (the lane's decide_ahead, which the proxy's server calls once a loop turn with the
requests that arrived in it) decides exactly as the front door does when it is called for each of
those requests in turn before any of their apps runs, which is what a server does with requests
that arrive together: same decisions, same answers, same scopes for the app, same windows.
(test_equivalence.py holds the front door itself to the Python path.)
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from shieldware.fastlane.lane import native
from tests.fastlane.test_equivalence import comparable, protected
from tests.fastlane.traffic import stream
from tests.support import SimulatedClock

pytestmark = pytest.mark.skipif(native is None, reason="the fast lane's C extension is not compiled here")
AHEAD = "shieldware.decided_ahead"  # the scope key a decision made ahead waits under


async def run_in_turns(middleware, clock: SimulatedClock, requests, turn: int, ahead: bool) -> list:
    """The requests `turn` at a time, each turn's arriving together: its scopes are decided (ahead,
    in one call, or by calling the front door for each) before the first of their apps is awaited."""
    answers = []
    for first in range(0, len(requests), turn):
        together = requests[first:first + turn]
        clock.advance(sum(delay for delay, _ in together))
        scopes = [dict(scope) for _, scope in together]
        sent: list[list[dict]] = [[] for _ in together]

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        def sender(into: list[dict]):
            async def send(message):
                into.append(message)
            return send

        if ahead:
            middleware.lane.native.decide_ahead(scopes)
            assert all(AHEAD in scope for scope in scopes if scope["type"] == "http")
            for scope, into in zip(scopes, sent, strict=True):
                await middleware.handle(scope, receive, sender(into))
                assert AHEAD not in scope  # taken, not left for the app
        else:
            served = [middleware.handle(scope, receive, sender(into)) for scope, into in zip(scopes, sent, strict=True)]
            for answer in served:
                await answer
        for messages in sent:
            start = next(m for m in messages if m["type"] == "http.response.start")
            shield = {k.decode(): v.decode() for k, v in start.get("headers", []) if k.startswith(b"x-shield-")}
            shield.pop("x-shield-ref", None)
            answers.append((start["status"], shield))
    return answers


@pytest.mark.parametrize(("mode", "seed", "turn"), [("monitor", 21, 12), ("enforce", 22, 5), ("enforce", 23, 31)])
def test_deciding_ahead_decides_as_the_front_door_does_for_requests_that_arrive_together(mode, seed, turn):
    traffic = stream(seed, 2500)
    clocks = SimulatedClock(1_800_000_000.0), SimulatedClock(1_800_000_000.0)
    (ahead_app, ahead_seen), (front_app, front_seen) = (protected(mode, True, clock) for clock in clocks)
    ahead_answers = asyncio.run(run_in_turns(ahead_app, clocks[0], traffic, turn, ahead=True))
    front_answers = asyncio.run(run_in_turns(front_app, clocks[1], traffic, turn, ahead=False))
    assert ahead_answers == front_answers
    assert ahead_seen.scopes == front_seen.scopes  # no trace of deciding ahead in what the app is given
    assert [comparable(d) for d in ahead_seen.decisions] == [comparable(d) for d in front_seen.decisions]
    ahead_windows, front_windows = ahead_app.engine.store.windows, front_app.engine.store.windows
    assert np.array_equal(ahead_windows.state, front_windows.state)
    assert np.array_equal(ahead_windows.registers, front_windows.registers)
    counts = ahead_app.lane.counts()
    assert counts["hit"] + counts["made"] > 500 and counts["flagged"] > 0, counts  # the lane decided most ahead
    assert counts["ahead"] == sum(scope["type"] == "http" for _, scope in traffic)  # each served so
    assert front_app.lane.counts()["ahead"] == 0


def test_a_scope_decided_by_another_lane_is_decided_afresh():
    """After a policy reload the proxy's next turn may have been decided by the lane it replaced:
    the new front door decides such a request itself, and the app never sees the old answer."""
    clock = SimulatedClock(1_800_000_000.0)
    (old, _), (new, seen) = protected("monitor", True, clock), protected("monitor", True, clock)
    traffic = stream(24, 400)
    asyncio.run(run_in_turns(new, clock, traffic[:300], 1, ahead=False))  # the new lane plans these clients
    scopes = [dict(scope) for _, scope in traffic[300:]]
    old.lane.native.decide_ahead(scopes)
    before = new.lane.counts()

    async def serve() -> None:
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            pass

        for scope in scopes:
            await new.handle(scope, receive, send)

    asyncio.run(serve())
    after = new.lane.counts()
    # Each was decided by the new lane (a new client's request twice: before and after its plan).
    assert sum(after.values()) - sum(before.values()) >= len(scopes)
    assert after["ahead"] == 0 and old.lane.counts()["ahead"] == 0
    assert all(AHEAD not in scope for scope in seen.scopes)
    assert len(seen.decisions) == 300 + len(scopes)


def test_deciding_ahead_takes_a_list_and_leaves_what_it_does_not_decide():
    clock = SimulatedClock(1_800_000_000.0)
    middleware, _ = protected("monitor", True, clock)
    with pytest.raises(TypeError, match="list of scopes"):
        middleware.lane.native.decide_ahead(({"type": "http"},))
    lifespan, odd = {"type": "lifespan"}, {"no type": True}
    middleware.lane.native.decide_ahead([lifespan, odd, "not a scope"])
    assert AHEAD not in lifespan and AHEAD not in odd
