"""The store contract: every store (memory://, redis://...) must pass these, unchanged.

A new store adds itself to STORE_FACTORIES (or a fixture param) and runs this file. The
window answers are those of the reference semantics in shieldware/windows/reference.py.
"""

from __future__ import annotations

import random

import pytest

from shieldware.store import MemoryStore, Store, open_store
from shieldware.store.base import MAX_STEP, STATS_FIELDS, STEP_MEMORY, VISIT_GAP, Observation, WindowStats, parse_rate
from shieldware.windows.table import set_item_hash_key

STORE_FACTORIES = {
    "memory": lambda: MemoryStore("memory://?capacity=4096"),
    # Redis stores need a server: their URIs come from the fixtures below (real redis-server
    # processes on loopback), each test with a key prefix of its own.
    "redis": "redis_uri",
    "redis+cluster": "cluster_uri",
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request):
    factory = STORE_FACTORIES[request.param]
    if callable(factory):
        opened = factory()
    else:
        uri = request.getfixturevalue(factory)
        opened = open_store(f"{uri}?prefix=t{random.randrange(1 << 30)}&timeout=1")
    yield opened
    await opened.close()


async def test_is_a_store(store):
    assert isinstance(store, Store)


async def test_health_says_a_working_store_answers(store):
    health = await store.health()
    assert health["reachable"] is True and "error" not in health
    assert health["kind"] == store.uri.split("+")[0].split(":")[0]


async def test_observe_answers_one_row_per_observation_in_order(store):
    answers = await store.observe([Observation("ip", "a"), Observation("ip", "b", count=3),
                                   Observation("ip", "a")], 10.0)
    assert [type(a) for a in answers] == [WindowStats] * 3
    assert all(len(a) == len(STATS_FIELDS) for a in answers)
    assert [a.total for a in answers] == [1, 3, 2]
    assert await store.observe([], 11.0) == []


async def test_a_pure_lookup_of_an_unknown_key_creates_nothing(store):
    # A question about a key that has no windows answers an empty key's stats, and the key stays
    # unknown (a table slot is not spent on it).
    (empty,) = await store.observe([Observation("seen", "never", count=0)], 50.0)
    assert (empty.total, empty.count(0), empty.visit_start) == (0, 0, 50.0)
    (first,) = await store.observe([Observation("seen", "never")], 80.0)
    assert (first.total, first.visit_start) == (1, 80.0)  # its visit starts with its first real event
    (known,) = await store.observe([Observation("seen", "never", count=0)], 90.0)
    assert (known.total, known.visit_start) == (1, 80.0)


async def test_steps_answer_whether_the_previous_step_was_among_the_last_few(store):
    async def step(n: int, at: float) -> bool:
        (answer,) = await store.observe([Observation("ip", "walker", step=n)], at)
        return answer.follows

    assert [await step(n, 10.0 + n) for n in range(5, 10)] == [False, True, True, True, True]
    assert await step(20, 20.0) is False  # a jump
    assert await step(21, 20.5) is True  # 20 is among the last STEP_MEMORY steps
    assert await step(6, 21.0) is False  # 5 is too, but so is 6: a revisit, not a step forward
    assert await step(22, 21.5) is True
    for n in range(100, 100 + STEP_MEMORY):
        await step(n, 30.0)
    assert await step(10, 31.0) is False  # 9 has been pushed out of the ring
    assert await step(100 + STEP_MEMORY, 31.0) is True
    # A new visit forgets the steps; no step and out-of-range steps neither answer nor count.
    assert await step(100 + STEP_MEMORY + 1, 31.0 + VISIT_GAP + 1) is False
    (plain,) = await store.observe([Observation("ip", "walker")], 5000.0)
    assert plain.follows is False
    (huge,) = await store.observe([Observation("ip", "walker", step=MAX_STEP)], 5001.0)
    assert huge.follows is False
    assert await step(MAX_STEP - 1, 5002.0) is False
    assert await step(MAX_STEP - 1, 5003.0) is False  # a repeat is not a step forward


async def test_kinds_separate_keys(store):
    await store.observe([Observation("ip", "same"), Observation("ip", "same")], 1.0)
    (other,) = await store.observe([Observation("account", "same")], 1.0)
    assert other.total == 1


async def test_counters_slide_over_their_horizons(store):
    for second in range(0, 1200):
        await store.observe([Observation("ip", "steady")], float(second))
    (now,) = await store.observe([Observation("ip", "steady", count=0)], 1199.5)
    assert now.count(0) == pytest.approx(10, abs=1)
    assert now.count(1) == pytest.approx(60, abs=1)
    assert now.count(2) == pytest.approx(600, abs=1)
    assert now.count(3) == 1200


async def test_gcra_retry_after_is_exact_and_refusals_are_not_charged(store):
    limits = (parse_rate("5/s"),)
    waits = [(await store.observe([Observation("rate.ip", "x", limits=limits)], 50.0))[0].retry_after
             for _ in range(7)]
    assert waits[:5] == [0.0] * 5
    assert waits[5] == pytest.approx(0.2) and waits[6] == pytest.approx(0.2)
    (later,) = await store.observe([Observation("rate.ip", "x", limits=limits)], 50.2)
    assert later.retry_after == 0.0


async def test_timing_moments_and_visits(store):
    for i in range(30):
        (answer,) = await store.observe([Observation("ip", "metronome", timing=True)], 100.0 + 3.0 * i)
    assert answer.gaps == 29 and answer.gap_mean() == pytest.approx(3.0) and answer.gap_cv() < 1e-6
    (back,) = await store.observe([Observation("ip", "metronome", timing=True)], 100.0 + 87 + 7200)
    assert back.gaps == 0 and back.visit_start == 100.0 + 87 + 7200


@pytest.fixture
def reproducible_item_hash():
    # The memory sketch hashes items with a per-process key; a fixed one makes its estimate (64
    # registers, ~13 % error) the same on every run. Redis's HyperLogLog is unaffected.
    set_item_hash_key(b"fixed key for a reproducible sketch")
    yield
    set_item_hash_key(None)


async def test_distinct_counts_and_ratio_feedback(store, reproducible_item_hash):
    for i in range(30):
        ip = f"10.0.0.{i % 12}"
        await store.observe([Observation("account", "alice", distinct=(ip,), seen=1)], 5.0 + i)
        if i % 3 == 0:
            await store.record([Observation("account", "alice", count=0, hits=1)], 5.0 + i)
    (answer,) = await store.observe([Observation("account", "alice", count=0)], 35.0)
    assert answer.distinct(0) == pytest.approx(12, abs=2.5)
    assert answer.ratio(0, 1) == pytest.approx(1 / 3, abs=0.03)
    assert answer.ratio_weight(0, 1) == pytest.approx(30, abs=1)


async def test_late_events_count_at_the_latest_time(store):
    await store.observe([Observation("ip", "late")], 1000.0)
    (answer,) = await store.observe([Observation("ip", "late", timing=True)], 900.0)
    assert answer.total == 2 and answer.count(0) == 2


async def test_records_expire_and_claims_happen_once(store):
    await store.put_record("ban", "1.2.3.4", {"why": "test"}, ttl=10, now=0.0)
    assert await store.get_record("ban", "1.2.3.4", now=5.0) == {"why": "test"}
    assert await store.get_record("ban", "1.2.3.4", now=11.0) is None
    assert await store.claim_once("nonce", "n1", ttl=60, now=0.0) is True
    assert await store.claim_once("nonce", "n1", ttl=60, now=1.0) is False
    await store.put_record("allow", "a", {"x": 1}, ttl=None, now=0.0)
    assert await store.list_records("allow", now=1.0) == {"a": {"x": 1}}
    assert await store.delete_record("allow", "a") is True
    assert await store.delete_record("allow", "a") is False
