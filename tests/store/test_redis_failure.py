"""Redis going away never fails or hangs a request: StoreUnavailable, a circuit breaker, fail modes
per route group, and automatic recovery when Redis returns (real redis-server on loopback)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shieldware.engine import Engine
from shieldware.metrics import Metrics
from shieldware.middleware import ShieldMiddleware
from shieldware.policy import policy_from_text
from shieldware.store import StoreUnavailable, open_store
from shieldware.store.base import Observation
from tests.redis_support import RedisProcess, need_redis
from tests.support import CHROME_NAVIGATION, live_server


@pytest.fixture
def redis_process(tmp_path):
    need_redis()
    server = RedisProcess(tmp_path / "redis").start()
    yield server
    server.stop()


async def wait_until_working(store, deadline_s: float = 15.0) -> int:
    """Poll until the store answers again; returns the attempts it took (bounded, stops by itself)."""
    attempts = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while loop.time() < end:
        attempts += 1
        try:
            await store.observe([Observation("ip", "192.0.2.1")], 1.0)
            return attempts
        except StoreUnavailable:
            await asyncio.sleep(0.05)
    raise AssertionError("store did not recover")


async def test_killed_redis_raises_opens_breaker_and_recovers(redis_process):
    store = open_store(redis_process.uri + "?timeout=0.05&breaker_cooldown=0.2")
    assert (await store.observe([Observation("ip", "192.0.2.1")], 1.0))[0].total == 1
    redis_process.stop()
    for _ in range(3):
        with pytest.raises(StoreUnavailable, match="failed"):
            await store.observe([Observation("ip", "192.0.2.1")], 2.0)
    assert store.breaker.state == "open"
    with pytest.raises(StoreUnavailable, match="circuit open"):
        await store.get_record("ban", "x", 2.0)
    redis_process.start()
    await wait_until_working(store)
    assert store.breaker.state == "closed"
    await store.close()


async def test_health_tells_redis_is_gone_without_its_password_and_sees_it_return(tmp_path):
    need_redis()
    server = RedisProcess(tmp_path / "redis", None, "--requirepass", "s3cret").start()
    store = open_store(f"redis://:s3cret@127.0.0.1:{server.port}/0?timeout=0.05&breaker_cooldown=0.2")
    try:
        assert await store.health() == {"kind": "redis", "uri": f"redis://:***@127.0.0.1:{server.port}/0"
                                        "?timeout=0.05&breaker_cooldown=0.2", "reachable": True}
        server.stop()
        failures = [await store.health() for _ in range(3)]
        assert all(not health["reachable"] and "ping failed" in health["error"] for health in failures), failures
        # The breaker is open now: the health page sends nothing, and says why the calls stopped.
        shut = await store.health()
        assert shut["breaker"] == "open" and "circuit open" in shut["error"] and "(last: ping failed" in shut["error"]
        # What a request hears (and the decision log keeps as evidence) names the store, not its password.
        with pytest.raises(StoreUnavailable) as caught:
            await store.observe([Observation("ip", "192.0.2.1")], 1.0)
        said = [str(caught.value)] + [health["error"] for health in [*failures, shut]]
        assert all("s3cret" not in text and ":***@" in text for text in said), said
        server.start()
        for _ in range(300):  # the breaker lets a PING through after 0.2 s; a bounded loop
            if (await store.health())["reachable"]:
                break
            await asyncio.sleep(0.05)
        assert store.breaker.state == "closed"
        assert (await store.observe([Observation("ip", "192.0.2.1")], 2.0))[0].total == 1
    finally:
        await store.close()
        server.stop()


async def test_requests_sharing_a_call_all_hear_that_redis_is_gone_and_feedback_waits(redis_process):
    store = open_store(redis_process.uri + "?timeout=0.05&breaker_cooldown=0.2")
    store.flush_after = 60.0  # feedback rides with the next observe only, not a timed flush
    await store.observe([Observation("ip", "192.0.2.1")], 1.0)
    await store.record([Observation("ip", "192.0.2.1", count=0, hits=1)], 1.5)  # a 404, say
    redis_process.stop()
    failed = await asyncio.gather(*(store.observe([Observation("ip", "192.0.2.1")], 2.0) for _ in range(4)),
                                  return_exceptions=True)
    assert [type(result) for result in failed] == [StoreUnavailable] * 4
    assert len(store._pending) == 1  # the feedback the failed call carried is kept
    redis_process.start()
    await wait_until_working(store)
    assert store._pending == []  # ... and went with the first call that worked
    await store.close()


async def test_a_frozen_redis_times_out_instead_of_hanging(redis_process):
    store = open_store(redis_process.uri + "?timeout=0.05")
    await store.observe([Observation("ip", "192.0.2.1")], 1.0)
    os.kill(redis_process.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(StoreUnavailable, match="timed out"):
            await store.observe([Observation("ip", "192.0.2.1")], 2.0)
    finally:
        os.kill(redis_process.proc.pid, signal.SIGCONT)
    await wait_until_working(store)
    await store.close()


class CountingSignal:
    """Observes the client's IP window on every request, like the traffic signals do."""

    name = "counting"

    def inspect(self, facts, inspection):
        inspection.observations.append(Observation("ip", facts.client_ip))

    def assess(self, facts, inspection):
        inspection.attrs["seen"] = inspection.stats[0].total


FAIL_MODES = """
groups:
  - {name: login, paths: ["/login"], on_store_failure: unavailable}
  - {name: checkout, paths: ["/checkout"], on_store_failure: challenge}
  - {name: browse, paths: ["/*"]}
"""


def test_route_groups_fail_open_or_closed_as_configured(redis_process):
    async def ok(request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/{path:path}", ok, methods=["GET", "POST"])])
    store = open_store(redis_process.uri + "?timeout=0.05&breaker_cooldown=0.2")
    engine = Engine(policy_from_text(FAIL_MODES), store=store, signals=[CountingSignal()], metrics=Metrics())
    with live_server(ShieldMiddleware(app, engine=engine)) as server, \
            httpx.Client(base_url=server.url, headers=dict(CHROME_NAVIGATION)) as client:
        assert [client.get(p).status_code for p in ("/", "/login", "/checkout")] == [200, 200, 200]

        redis_process.stop()
        for _ in range(5):  # before and after the breaker opens
            assert client.get("/").status_code == 200
            down = client.post("/login")
            assert down.status_code == 503 and int(down.headers["retry-after"]) >= 1
            refused = client.get("/checkout", headers={"accept": "application/json"})
            assert refused.status_code == 403 and "store.unavailable" in refused.json()["reasons"]

        redis_process.start()
        statuses = []
        for _ in range(300):  # the breaker lets a trial through after 0.2 s; a bounded loop
            statuses = [client.get(p).status_code for p in ("/", "/login", "/checkout")]
            if statuses == [200, 200, 200]:
                break
            time.sleep(0.05)
        assert statuses == [200, 200, 200]
