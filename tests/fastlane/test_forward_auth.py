"""Forward-auth checks are decided by the fast lane exactly as on the Python path.

nginx's auth_request (and Traefik's, Caddy's forward auth) asks `/.shieldware/check` about every
request of the shop. The endpoint rebuilds the client's request from the edge's headers and has
the lane decide it (forward_auth.original_scope). The mixed stream of the equivalence tests, sent
as checks the way the README's nginx site sends them, goes through two proxies' middlewares, one
with the lane and one without: every answer and every decision must match, and the windows too.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest
import yaml

from shieldware.engine import Engine
from shieldware.facts import TrustedProxies
from shieldware.fastlane.lane import native
from shieldware.middleware import ShieldMiddleware
from shieldware.policy import default_policy, default_policy_text
from shieldware.proxy.forward_auth import ForwardAuthEndpoint
from shieldware.store import MemoryStore, open_store
from tests.fastlane.test_equivalence import comparable, run
from tests.fastlane.test_remote import windows_in_redis
from tests.fastlane.traffic import stream
from tests.redis_support import RedisProcess
from tests.support import CHROME_NAVIGATION, SimulatedClock

pytestmark = pytest.mark.skipif(native is None, reason="the fast lane's C extension is not compiled here")
CHECK = "/.shieldware/check"


async def no_app(scope, receive, send):  # forward-auth never forwards
    raise AssertionError("the check endpoint answers itself")


def checking(mode: str, fast: bool, clock: SimulatedClock, store: Any) -> tuple[ShieldMiddleware, list]:
    """checking_with() the default policy in `mode`, findings assessed afresh on every request."""
    traffic = {**yaml.safe_load(default_policy_text())["traffic"], "hold_findings_s": 0.0}
    policy = default_policy(mode=mode, trusted_proxies=["127.0.0.1/32"], decision_log={"path": None},
                            traffic=traffic)
    return checking_with(policy, store, clock, fast)


def checking_with(policy: Any, store: Any, clock: SimulatedClock, fast: bool = True) -> tuple[ShieldMiddleware, list]:
    """A proxy's middleware with the check endpoint mounted as the proxy mounts it, and the decisions
    it answered with; `middleware.answered_quickly` counts the calls it read straight from the scope."""
    middleware = ShieldMiddleware(no_app, engine=Engine(policy, store), clock=clock, fast_lane=fast,
                                  headers_in_scope=False)
    middleware.own_connections = True  # as the proxy sets it
    endpoint = ForwardAuthEndpoint(middleware, TrustedProxies(["127.0.0.1/32"]))
    decided: list = []
    answer = endpoint.answer

    def recording(decision, *args):
        decided.append(decision)
        return answer(decision, *args)

    endpoint.answer = recording
    endpoint.mount(CHECK)  # as the proxy mounts it: plain calls read straight from the scope
    quickly = middleware.quick_endpoints[CHECK]

    async def counted(*args):
        answered = await quickly(*args)
        middleware.answered_quickly = getattr(middleware, "answered_quickly", 0) + answered
        return answered

    middleware.quick_endpoints[CHECK] = counted
    return middleware, decided


def as_check(scope: dict) -> dict:
    """The edge's call about a client's request (README's nginx site: X-Original-URI/-Method,
    X-Forwarded-Host/-Proto, the client's headers and X-Forwarded-For)."""
    uri = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
    headers = [*scope["headers"], (b"x-original-uri", uri.encode()), (b"x-original-method", b"GET"),
               (b"x-forwarded-host", b"127.0.0.1:8000"), (b"x-forwarded-proto", b"http")]
    return {**scope, "path": CHECK, "raw_path": CHECK.encode(), "query_string": b"style=nginx", "headers": headers}


def compare_checks(mode: str, seed: int, stores: tuple[Any, Any], requests: int = 2000) -> tuple:
    checks = [(delay, as_check(scope)) for delay, scope in stream(seed, requests)]
    clocks = SimulatedClock(1_800_000_000.0), SimulatedClock(1_800_000_000.0)
    (lane_app, lane_decided), (python_app, python_decided) = (
        checking(mode, fast, clock, store) for fast, clock, store in zip((True, False), clocks, stores, strict=True))
    assert lane_app.lane is not None and python_app.lane is None

    async def asked(middleware: ShieldMiddleware, clock: SimulatedClock) -> list:
        try:
            return await run(middleware, clock, checks)
        finally:
            await middleware.engine.store.close()

    assert asyncio.run(asked(lane_app, clocks[0])) == asyncio.run(asked(python_app, clocks[1]))  # statuses, X-Shield-*
    assert len(lane_decided) == len(python_decided) == requests
    # The lane's middleware read nearly every call straight from its scope; the other has no lane to ask.
    assert lane_app.answered_quickly > requests * 0.9 and getattr(python_app, "answered_quickly", 0) == 0
    for n, (mine, theirs) in enumerate(zip(lane_decided, python_decided, strict=True)):
        assert comparable(mine) == comparable(theirs), f"decision {n} differs"
    return lane_app, python_app


@pytest.mark.parametrize(("mode", "seed"), [("monitor", 1), ("enforce", 2)])
def test_checks_are_decided_by_the_lane_as_on_the_python_path(mode, seed):
    lane_app, python_app = compare_checks(mode, seed, (MemoryStore(capacity=4096), MemoryStore(capacity=4096)))
    counts = lane_app.lane.counts()
    # Most checks were answered from plans (some made for new clients from templates), some past a
    # trigger; or nothing was compared.
    assert counts["hit"] > 700 and counts["made"] > 50 and counts["flagged"] > 0 and counts["miss"] > 0, counts
    lane_windows, python_windows = lane_app.engine.store.windows, python_app.engine.store.windows
    assert np.array_equal(lane_windows.keys, python_windows.keys)
    assert np.array_equal(lane_windows.state, python_windows.state)


def test_checks_on_redis_are_decided_by_the_lane_as_on_the_python_path(redis_uri):
    tag = random.randrange(1 << 30)
    prefixes = f"lane{tag}", f"python{tag}"
    stores = tuple(open_store(f"{redis_uri}?prefix={prefix}&timeout=5") for prefix in prefixes)
    lane_app, _ = compare_checks("monitor", 3, stores, requests=1500)
    assert lane_app.lane.counts()["hit"] > 500
    assert windows_in_redis(redis_uri, prefixes[0]) == windows_in_redis(redis_uri, prefixes[1])


def test_a_check_about_an_unusual_request_is_decided_on_the_python_path():
    clock = SimulatedClock(1_800_000_000.0)
    middleware, decided = checking("monitor", True, clock, MemoryStore(capacity=1024))
    _, scope = stream(5, 1)[0]
    conflicting = {**scope, "headers": [*scope["headers"], (b"x-forwarded-method", b"POST")]}

    def asked_of_the_lane() -> dict[str, int]:  # the checks themselves pass its front door as "path"
        return {k: v for k, v in middleware.lane.counts().items() if k not in ("path", "off")}

    before = asked_of_the_lane()

    async def twice():
        await run(middleware, clock, [(1.0, as_check(conflicting))] * 2)

    asyncio.run(twice())
    assert asked_of_the_lane() == before  # the lane was never asked about the client's request
    assert len(decided) == 2


def browser_check(client: int, uri: str) -> dict:
    """nginx's call about one browser's request (README's site: X-Original-*, the client's address
    in X-Forwarded-For)."""
    headers = [(name.encode(), value.encode()) for name, value in CHROME_NAVIGATION if name != "host"]
    headers = [(b"host", b"127.0.0.1:9000"), *headers, (b"cookie", b"shop_session=s%d" % client),
               (b"x-forwarded-for", b"198.51.100.%d" % client), (b"x-original-uri", uri.encode()),
               (b"x-original-method", b"GET"), (b"x-forwarded-host", b"shop.example"),
               (b"x-forwarded-proto", b"https")]
    return {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": CHECK,
            "query_string": b"style=nginx", "headers": headers, "client": ("127.0.0.1", 41000)}


async def test_a_check_on_redis_follows_its_route_groups_store_failure_mode_while_redis_is_down(tmp_path):
    # The product pages fail closed (503, which nginx's auth_request cannot relay: 403 with
    # ?style=nginx), every other page open. The lane decides each check in remote mode; with Redis
    # gone the store raises, and the plain call's facts are made for the engine's answer.
    redis = RedisProcess(tmp_path / "redis").start()
    try:
        policy_text = yaml.safe_load(default_policy_text())
        for group in policy_text["groups"]:
            if group["name"] == "product":
                group["on_store_failure"] = "unavailable"
        clock = SimulatedClock(1_800_000_000.0)
        store = open_store(redis.uri + "?timeout=0.2&breaker_cooldown=0.5")
        policy = default_policy(mode="enforce", trusted_proxies=["127.0.0.1/32"], decision_log={"path": None},
                                groups=policy_text["groups"])
        middleware, decided = checking_with(policy, store, clock)

        async def asked(uri: str, clients: range) -> list[int]:
            checks = [(0.5, browser_check(client, uri)) for client in clients]
            return [status for status, _ in await run(middleware, clock, checks)]

        assert await asked("/product/7", range(1, 30)) == [200] * 29  # first sights: planned
        hits = middleware.lane.counts()["hit"]
        assert await asked("/product/8", range(1, 30)) == [200] * 29
        assert middleware.lane.counts()["hit"] >= hits + 25  # decided by the lane, on Redis
        quick = middleware.answered_quickly

        redis.stop()
        assert await asked("/product/9", range(1, 10)) == [403] * 9
        assert all("store.unavailable" in [r.code for r in d.reasons] for d in decided[-9:])
        assert await asked("/about", range(1, 10)) == [200] * 9
        assert middleware.answered_quickly == quick + 18  # every one a plain call

        redis.start()
        for _ in range(100):  # the breaker lets a trial through after 0.5 s; bounded
            if await asked("/product/10", range(1, 2)) == [200]:
                break
            await asyncio.sleep(0.05)
        assert await asked("/product/11", range(1, 10)) == [200] * 9
        await store.close()
    finally:
        redis.stop()
