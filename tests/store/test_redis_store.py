"""The Redis stores against the reference: the same random event streams give the same window
answers as memory:// (the Numba kernels), and records, nonces and Sentinel work on real servers."""

from __future__ import annotations

import asyncio
import math
import random
import subprocess

import pytest

from shieldware.store import open_store
from shieldware.store.base import STATS_FIELDS, Observation, Rate
from shieldware.store.memory import MemoryStore
from shieldware.windows.table import set_item_hash_key
from tests.redis_support import REDIS_SERVER, RedisProcess, need_redis, wait_until_ready
from tests.support import free_port


@pytest.fixture(params=["redis", "cluster"])
async def store(request):
    base = request.getfixturevalue("redis_uri" if request.param == "redis" else "cluster_uri")
    uri = f"{base}?prefix=t{random.randrange(1 << 30)}&timeout=1"
    opened = open_store(uri)
    yield opened
    await opened.close()


def random_stream(seed: int, events: int = 400) -> list[tuple[float, list[Observation]]]:
    """Requests of a few clients: out-of-order times, long gaps, limits, timing, ratios, distinct items,
    steps."""
    rng = random.Random(seed)
    now = 1_700_000_000.0
    stream = []
    for _ in range(events):
        roll = rng.random()
        if roll < 0.02:
            now += rng.uniform(2000, 5000)  # a gap longer than a visit
        elif roll < 0.1:
            now -= rng.uniform(0, 3)  # a late event
        else:
            now += rng.expovariate(2.0)
        ip = f"198.51.100.{rng.randrange(4)}"
        observations = [
            Observation("ip", ip, timing=True, distinct=(f"/p/{rng.randrange(30)}", None),
                        seen=0b11, hits=rng.randrange(4), limits=(Rate(5, 1.0), Rate(100, 60.0)),
                        step=rng.choice([None, rng.randrange(12)]),  # walks, repeats and a full ring
                        follow_hits=rng.choice([0, 0b10]),  # steps that follow, counted in the same call
                        step_gap=rng.choice([1, 1, 3])),  # ... some across a gap
            Observation("net", ip.rsplit(".", 1)[0], count=rng.choice([1.0, 2.0]),
                        distinct=(ip, f"ua{rng.randrange(3)}")),
        ]
        stream.append((now, observations))
    return stream


def close(a: float, b: float, field: str) -> bool:
    if field.startswith("distinct"):
        # Different HyperLogLogs: memory's 64 registers (~13 % standard error, keyed hashes, so
        # collisions vary per process) vs Redis's 16384; allow three standard errors.
        return abs(a - b) <= max(3.0, 0.4 * max(a, b))
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


@pytest.mark.parametrize("seed", [1, 2])
async def test_same_stream_same_answers_as_the_reference_store(store, seed):
    set_item_hash_key(b"fixed key: reproducible memory sketches")  # estimates equal on every run
    try:
        await compare_streams(store, seed)
    finally:
        set_item_hash_key(None)


async def compare_streams(store, seed: int) -> None:
    reference = MemoryStore("memory://?capacity=4096")
    for now, observations in random_stream(seed):
        expected = await reference.observe(observations, now)
        got = await store.observe(observations, now)
        assert len(got) == len(expected)
        for want_row, got_row in zip(expected, got, strict=True):
            for field, want, value in zip(STATS_FIELDS, want_row, got_row, strict=True):
                assert close(want, value, field), (field, want, value, now)


@pytest.mark.parametrize("at_once", [8, 3])
async def test_requests_asking_together_share_a_call_and_get_their_own_answers(store, at_once):
    """Requests that reach the store in one turn of the event loop are sent in one script call
    (one per slot on a cluster) and answered as if each had been sent alone, in that order."""
    set_item_hash_key(b"fixed key: reproducible memory sketches")
    try:
        reference = MemoryStore("memory://?capacity=4096")
        stream = random_stream(3, events=240)
        calls_before, turns = store.calls, 0
        for first in range(0, len(stream), at_once):
            turn = stream[first:first + at_once]
            answers = await asyncio.gather(*(store.observe(observations, now) for now, observations in turn))
            turns += 1
            for (now, observations), got in zip(turn, answers, strict=True):
                expected = await reference.observe(observations, now)
                assert len(got) == len(observations)
                for want_row, got_row in zip(expected, got, strict=True):
                    for field, want, value in zip(STATS_FIELDS, want_row, got_row, strict=True):
                        assert close(want, value, field), (field, want, value, now)
        if store.mode != "cluster":  # on a cluster: one call per slot a turn's keys fall in
            assert store.calls - calls_before == turns
    finally:
        set_item_hash_key(None)


async def test_gather_off_sends_each_request_alone(redis_uri):
    alone = open_store(f"{redis_uri}?prefix=t{random.randrange(1 << 30)}&gather=off")
    try:
        answers = await asyncio.gather(*(alone.observe([Observation("ip", "192.0.2.9")], 1_000.0 + n)
                                         for n in range(4)))
        assert sorted(stats.total for [stats] in answers) == [1, 2, 3, 4] and alone.calls == 4
    finally:
        await alone.close()
    with pytest.raises(ValueError, match="gather must be on or off"):
        open_store(f"{redis_uri}?gather=maybe")


async def test_a_request_cancelled_while_waiting_does_not_cancel_the_others(store):
    waiting = [asyncio.create_task(store.observe([Observation("ip", f"192.0.2.{n}", seen=1)], 1_000.0))
               for n in range(3)]
    await asyncio.sleep(0)  # each has joined the turn's gathering
    waiting[1].cancel()
    first, _, third = await asyncio.gather(*waiting, return_exceptions=True)
    assert first[0].total == 1 and third[0].total == 1
    [again] = await store.observe([Observation("ip", "192.0.2.1", seen=1)], 1_001.0)
    assert again.total == 2  # the cancelled request's observation was sent with the others


async def test_feedback_is_applied_before_the_next_answer(store):
    now = 1_000.0
    await store.observe([Observation("ip", "203.0.113.9", seen=1)], now)
    await store.record([Observation("ip", "203.0.113.9", count=0, hits=1)], now + 1)
    [stats] = await store.observe([Observation("ip", "203.0.113.9", seen=1)], now + 2)
    assert stats.ratio(0) == pytest.approx(1 / 2, rel=0.05)
    assert stats.total == 2


async def test_gcra_limit_and_exact_retry_after(store):
    rate = Rate(10, 1.0)
    answers = [await store.observe([Observation("rate.ip", "192.0.2.1", limits=(rate,))], 50.0) for _ in range(11)]
    # Ten at once is the burst; the eleventh must wait one emission interval (floats: within 1e-9).
    assert all(a[0].retry_after < 1e-9 for a in answers[:10])
    assert answers[10][0].retry_after == pytest.approx(0.1)
    [later] = await store.observe([Observation("rate.ip", "192.0.2.1", limits=(rate,))], 50.2)
    assert later.retry_after < 1e-9


async def test_records_ttl_list_delete(store):
    await store.put_record("ban", "192.0.2.7", {"reason": "ticket 1"}, 60, now=100.0)
    await store.put_record("ban", "192.0.2.8", {"reason": "forever"}, None, now=100.0)
    assert await store.get_record("ban", "192.0.2.7", now=101.0) == {"reason": "ticket 1"}
    listed = await store.list_records("ban", now=101.0)
    assert listed == {"192.0.2.7": {"reason": "ticket 1"}, "192.0.2.8": {"reason": "forever"}}
    assert await store.delete_record("ban", "192.0.2.7") is True
    assert await store.delete_record("ban", "192.0.2.7") is False
    assert await store.get_record("ban", "192.0.2.7", now=101.0) is None
    assert await store.get_record("ban", "nobody", now=101.0) is None


async def test_claim_once_is_single_use(store):
    assert await store.claim_once("nonce", "abc", 30, now=10.0) is True
    assert await store.claim_once("nonce", "abc", 30, now=11.0) is False
    assert await store.claim_once("nonce", "abd", 30, now=11.0) is True


async def test_sentinel_uri_finds_the_primary(tmp_path):
    """redis+sentinel:// asks a real Sentinel (redis-server --sentinel) for the primary's address."""
    need_redis()
    primary = RedisProcess(tmp_path / "primary").start()
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor shop 127.0.0.1 {primary.port} 1\n")
    proc = subprocess.Popen([REDIS_SERVER, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until_ready(sentinel_port)
        store = open_store(f"redis+sentinel://127.0.0.1:{sentinel_port}/shop/0?timeout=1")
        [stats] = await store.observe([Observation("ip", "192.0.2.50")], 10.0)
        assert stats.total == 1
        assert await store.claim_once("nonce", "s1", 30, 10.0) is True
        await store.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)
        primary.stop()
