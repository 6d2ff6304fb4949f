"""Held assessments: a flagged client's decision stands while the same findings fire, and no longer.

The field-for-field agreement with the Python path under holds is in test_equivalence.py; the
soundness of holding at all (the fired trigger bits name the findings) in test_pieces.py.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
import yaml

from shieldware.commands.explain import render
from shieldware.decision import Decision, Verdict
from shieldware.evidence import Evidence
from shieldware.fastlane.holds import MAX_HOLDS, FindingHolds
from shieldware.fastlane.lane import native
from shieldware.middleware import ShieldMiddleware
from shieldware.policy import PolicyError, default_policy, default_policy_text, policy_from_mapping
from shieldware.store import MemoryStore
from tests.support import CHROME_NAVIGATION, SimulatedClock

pytestmark = pytest.mark.skipif(native is None, reason="the fast lane's C extension is not compiled here")

T0 = 1_800_000_000.0


def assessed(at: float = T0) -> Decision:
    return Decision(ref="abc-0000001", verdict=Verdict.BLOCK, bot_score=90.0,
                    reasons=(Evidence("rate.ip.burst", 25.0, {"requests_10s": 40.0}),), route_group="product",
                    time=at, client_ip="198.18.0.1", method="GET", path="/product/1", mode="enforce",
                    retry_after=2.0, user_agent="Chrome", extra={"fingerprint": "fp"})


def test_a_held_assessment_answers_the_same_client_seed_and_findings_until_it_runs_out():
    holds, seed = FindingHolds(1.0), object()
    holds.keep(seed, "198.18.0.1", 0b101, assessed())
    again = holds.find(seed, "198.18.0.1", 0b101, T0 + 0.4, "/product/2")
    assert again is not None
    assert (again.verdict, again.bot_score, again.reasons, again.rule, again.retry_after) == (
        Verdict.BLOCK, 90.0, assessed().reasons, None, 2.0)
    assert (again.time, again.path, again.client_ip, again.method) == (T0 + 0.4, "/product/2", "198.18.0.1", "GET")
    assert again.ref != "abc-0000001" and again.extra == {"fingerprint": "fp", "held_from": "abc-0000001"}
    assert holds.find(seed, "198.18.0.1", 0b101, T0 + 1.0, "/p") is None  # ran out
    assert holds.find(seed, "198.18.0.1", 0b100, T0 + 0.1, "/p") is None  # one finding fewer: assess
    assert holds.find(seed, "198.18.0.1", 0b111, T0 + 0.1, "/p") is None  # one more
    assert holds.find(seed, "198.18.0.2", 0b101, T0 + 0.1, "/p") is None  # another client
    assert holds.find(object(), "198.18.0.1", 0b101, T0 + 0.1, "/p") is None  # another plan seed
    assert holds.find(seed, "198.18.0.1", 0b101, T0 - 0.1, "/p") is None  # a clock that went back


def test_holds_off_keep_nothing_and_a_full_table_drops_what_ran_out():
    off, seed = FindingHolds(0.0), object()
    off.keep(seed, "198.18.0.1", 1, assessed())
    assert len(off) == 0 and off.find(seed, "198.18.0.1", 1, T0, "/p") is None
    holds = FindingHolds(1.0)
    for n in range(MAX_HOLDS):  # a half that has run out by T0 + 2, and a half that has not
        holds.keep(seed, f"10.{n >> 16}.{n >> 8 & 255}.{n & 255}", 1, assessed(T0 + (n % 2) * 1.5))
    assert len(holds) == MAX_HOLDS
    holds.keep(seed, "198.18.0.1", 1, assessed(T0 + 2))
    assert len(holds) == MAX_HOLDS // 2 + 1  # the ones run out dropped, the rest kept
    assert holds.find(seed, "198.18.0.1", 1, T0 + 2, "/p") is not None
    assert holds.find(seed, "10.0.0.1", 1, T0 + 2, "/p") is not None
    busy = FindingHolds(1.0)
    for n in range(MAX_HOLDS):  # none run out: all dropped, so a full table costs no scan per keep
        busy.keep(seed, f"10.1.{n >> 8 & 255}.{n & 255}", 2, assessed(T0 + 2))
    busy.keep(seed, "198.18.0.2", 1, assessed(T0 + 2.5))
    assert len(busy) == 1


def flood_middleware(hold: float | None, mode: str = "monitor") -> tuple[ShieldMiddleware, SimulatedClock, list]:
    traffic = yaml.safe_load(default_policy_text())["traffic"]
    if hold is not None:
        traffic["hold_findings_s"] = hold
    policy = default_policy(mode=mode, traffic=traffic, decision_log={"path": None})
    decisions: list[Decision] = []

    async def shop(scope, receive, send):
        decisions.append(scope["state"]["shield"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    clock = SimulatedClock(T0)
    middleware = ShieldMiddleware(shop, policy=policy, store=MemoryStore(capacity=4096), clock=clock)
    assert middleware.lane is not None
    return middleware, clock, decisions


async def flood(middleware: ShieldMiddleware, clock: SimulatedClock, requests: int, gap: float) -> None:
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    for n in range(requests):
        clock.advance(gap)
        path = f"/product/{n % 500 + 1}"
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
                 "client": ("198.18.0.9", 40000), "server": ("127.0.0.1", 8000)}
        await middleware(scope, receive, send)


def test_a_flood_is_assessed_when_its_findings_change_and_held_in_between():
    middleware, clock, decisions = flood_middleware(None)  # the shipped hold
    assert middleware.lane.holds.seconds == 1.0
    asyncio.run(flood(middleware, clock, 600, 0.01))  # 100 pages a second, in id order
    flagged = [d for d in decisions if d.reasons and any(e.code.startswith(("rate.", "behav.")) for e in d.reasons)]
    held = [d for d in flagged if "held_from" in d.extra]
    fresh = [d for d in flagged if "held_from" not in d.extra]
    assert len(held) > 400 and len(fresh) >= 5, (len(held), len(fresh))
    by_ref = {d.ref: d for d in fresh}
    for decision in held:
        source = by_ref[decision.extra["held_from"]]
        assert source.reason_codes == decision.reason_codes and source.verdict is decision.verdict
        assert 0 < decision.time - source.time < 1.0
    # Each new finding was assessed on the request that crossed it: the codes only grow here, and
    # every set of them was first seen on a fresh assessment.
    first_seen: dict[tuple, Decision] = {}
    for decision in flagged:
        first_seen.setdefault(frozenset(decision.reason_codes), decision)
    assert all("held_from" not in d.extra for d in first_seen.values())
    assert len(first_seen) >= 3  # burst, then timing, enumeration, ... joined one by one
    # A hold runs out after a second: the first request after it is assessed afresh.
    times = [d.time for d in fresh]
    assert max(b - a for a, b in itertools.pairwise(times)) <= 1.0 + 0.01 + 1e-6


def lane_outcomes(middleware: ShieldMiddleware) -> dict[str, float]:
    """The process's shieldware_fast_lane_requests_total by outcome (every lane's so far)."""
    counts = {}
    for line in middleware.engine.metrics.exposition().decode().splitlines():
        if line.startswith("shieldware_fast_lane_requests_total{"):
            counts[line.split('outcome="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
    return counts


def test_the_metrics_count_held_requests_apart_from_assessed_ones():
    middleware, clock, decisions = flood_middleware(None)
    before = lane_outcomes(middleware)
    asyncio.run(flood(middleware, clock, 300, 0.01))
    after = lane_outcomes(middleware)

    def added(outcome: str) -> float:
        return after.get(outcome, 0.0) - before.get(outcome, 0.0)

    held = sum("held_from" in d.extra for d in decisions)
    assert held > 100 and added("held") == held
    assert added("flagged") + added("held") == middleware.lane.counts()["flagged"]


def test_with_holds_off_every_flagged_request_is_assessed():
    middleware, clock, decisions = flood_middleware(0.0)
    asyncio.run(flood(middleware, clock, 300, 0.01))
    assert middleware.lane.counts()["flagged"] > 200
    assert not any("held_from" in d.extra for d in decisions)


def test_an_enforced_flood_is_refused_from_its_hold_and_logged_with_the_decision_it_holds():
    middleware, clock, _ = flood_middleware(None, mode="enforce")
    logged: list[Decision] = []
    middleware.engine.decision_log.write = logged.append
    asyncio.run(flood(middleware, clock, 400, 0.01))
    refused = [d for d in logged if d.verdict is not Verdict.ALLOW]
    held = [d for d in refused if "held_from" in d.extra]
    assert len(held) > 100, len(held)
    refs = {d.ref for d in logged}
    assert all(d.extra["held_from"] in refs for d in held)  # the log has the numbers each one holds


def test_explain_says_whose_numbers_a_held_decision_carries():
    held = FindingHolds(1.0)
    seed = object()
    held.keep(seed, "198.18.0.1", 1, assessed())
    text = render(held.find(seed, "198.18.0.1", 1, T0 + 0.5, "/product/9").as_log_record())
    assert "GET /product/9 from 198.18.0.1" in text
    assert "held:     the findings of decision abc-0000001, still firing" in text
    assert "(requests_10s=40.0)" in text
    assert "held:" not in render(assessed().as_log_record())


def test_forgetting_plans_drops_the_holds():
    middleware, clock, _ = flood_middleware(None)
    asyncio.run(flood(middleware, clock, 200, 0.01))
    assert len(middleware.lane.holds) > 0
    middleware.engine.forget_plans()
    assert len(middleware.lane.holds) == 0


@pytest.mark.parametrize("value", [-1, "1s", True])
def test_a_bad_hold_is_a_clear_policy_error(value):
    raw = yaml.safe_load(default_policy_text())
    raw["traffic"]["hold_findings_s"] = value
    with pytest.raises(PolicyError, match=r"traffic\.hold_findings_s"):
        policy_from_mapping(raw)
