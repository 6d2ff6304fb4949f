"""What each window family means, checked through the store's Observation API."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from shieldware.store import MemoryStore, open_store
from shieldware.store.base import STATS_FIELDS, Observation, WindowStats, parse_rate
from shieldware.windows import WindowTable
from shieldware.windows.table import set_item_hash_key


def observe(table: WindowTable, now: float, *observations: Observation) -> list[WindowStats]:
    return table.observe(list(observations), now)


def test_lookups_of_unknown_keys_never_take_or_evict_a_slot():
    table = WindowTable(8)
    for i in range(8):
        observe(table, 1.0 + i, Observation("ip", f"k{i}"))
    keys_before, evictions_before = table.keys.copy(), table.evictions
    for i in range(100):
        (answer,) = observe(table, 100.0 + i, Observation("seen", f"x{i}", count=0))
        assert answer.total == 0 and answer.visit_start == 100.0 + i
    assert table.evictions == evictions_before and (table.keys == keys_before).all()
    # Anything more than a lookup does claim (here: evict) a slot.
    observe(table, 300.0, Observation("seen", "x0"))
    assert table.evictions == evictions_before + 1


def test_gcra_allows_the_burst_then_gives_the_exact_retry_after():
    table = WindowTable(64)
    ten_per_second = (parse_rate("10/s"),)
    for _ in range(10):
        (stats,) = observe(table, 100.0, Observation("ip", "a", limits=ten_per_second))
        assert stats.retry_after == 0.0
    (refused,) = observe(table, 100.0, Observation("ip", "a", limits=ten_per_second))
    assert refused.retry_after == pytest.approx(0.1)
    (still,) = observe(table, 100.04, Observation("ip", "a", limits=ten_per_second))
    assert still.retry_after == pytest.approx(0.06)
    (allowed,) = observe(table, 100.1, Observation("ip", "a", limits=ten_per_second))
    assert allowed.retry_after == 0.0


def test_gcra_checks_all_limits_and_charges_none_when_one_refuses():
    table = WindowTable(64)
    limits = (parse_rate("100/s"), parse_rate("3/min"))
    waits = [observe(table, 10.0 + i, Observation("ip", "b", limits=limits))[0].retry_after for i in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    # 3/min: one every 20 s after the burst; the 4th at t=13 waits until t=30.
    assert waits[3] == pytest.approx(17.0)
    assert waits[4] == pytest.approx(16.0)


def test_sliding_counters_cover_their_horizons():
    table = WindowTable(64)
    for i in range(1200):  # one event a second for 20 minutes
        (stats,) = observe(table, float(i), Observation("ip", "c"))
    assert stats.count(0) == pytest.approx(10, abs=1)     # 10 s
    assert stats.count(1) == pytest.approx(60, abs=1)     # 1 min
    assert stats.count(2) == pytest.approx(600, abs=1)    # 10 min
    assert stats.count(3) == 1200                         # 1 h: everything so far
    (later,) = observe(table, 1199.0 + 700, Observation("ip", "c", count=0))
    assert later.count(0) == 0 and later.count(1) == 0
    assert later.count(3) == 1200
    assert later.total == 1200


def test_weighted_bucket_estimate_stays_between_its_bounds():
    # The previous bucket is assumed uniform: after a sudden start the estimate undercounts,
    # but never below the current bucket nor above current + previous.
    table = WindowTable(8)
    for i in range(60):
        (stats,) = observe(table, 1000.0 + i, Observation("ip", "g"))
    assert 40 <= stats.count(1) <= 60


def test_regular_timing_has_low_cv_and_irregular_high():
    table = WindowTable(64)
    rng = random.Random(3)
    for i in range(40):
        (robot,) = observe(table, 50.0 + i * 0.5, Observation("ip", "robot", timing=True))
    clock = 50.0
    for _ in range(40):
        clock += rng.expovariate(1 / 8)
        (person,) = observe(table, clock, Observation("ip", "person", timing=True))
    assert robot.gaps == 39 and robot.gap_mean() == pytest.approx(0.5)
    assert robot.gap_cv() < 0.01
    assert person.gap_cv() > 0.4


@pytest.fixture
def reproducible_item_hash():
    set_item_hash_key(b"fixed key for a reproducible sketch")
    yield
    set_item_hash_key(None)


def test_hyperloglog_counts_distinct_items(reproducible_item_hash):
    table = WindowTable(64)
    for n, tolerance in ((1, 0.05), (10, 1.5), (40, 6), (5000, 5000 * 0.35)):
        key = f"k{n}"
        for i in range(n):
            for _ in range(2):  # repeats do not count
                (stats,) = observe(table, 7.0, Observation("fp", key, distinct=(f"/product/{i}", "same-ua")))
        assert stats.distinct(0) == pytest.approx(n, abs=tolerance)
        assert stats.distinct(1) == pytest.approx(1, abs=0.1)


def test_hyperloglog_error_over_many_process_keys():
    # With the default per-process key, the error over many sketches averages out near zero.
    table = WindowTable(256)
    errors = []
    for sketch in range(100):
        for i in range(200):
            (stats,) = observe(table, 9.0, Observation("fp", f"s{sketch}", distinct=(f"{sketch}-{i}",)))
        errors.append(stats.distinct(0) / 200 - 1)
    mean_error = sum(errors) / len(errors)
    spread = (sum(e * e for e in errors) / len(errors)) ** 0.5
    assert abs(mean_error) < 0.05 and spread < 0.2  # 1.04/sqrt(64) = 0.13 in theory


def test_decayed_ratio_and_feedback_hits():
    table = WindowTable(64)
    for i in range(20):
        observe(table, 300.0 + i, Observation("ip", "d", seen=0b11, hits=0b10 if i % 4 == 0 else 0))
        if i % 2 == 0:  # half of the answers were 404s, fed back after the response
            table.observe([Observation("ip", "d", count=0, hits=0b01)], 300.0 + i)
    (stats,) = observe(table, 320.0, Observation("ip", "d", count=0))
    assert stats.ratio(0) == pytest.approx(0.5, abs=0.08)
    assert stats.ratio(1) == pytest.approx(0.25, abs=0.08)
    assert stats.ratio_weight(0, 1) == pytest.approx(20, abs=0.5)
    # The short half-life (60 s) forgets after a long silence; the ratio itself stays a share.
    (quiet,) = observe(table, 920.0, Observation("ip", "d", count=0))
    assert quiet.ratio_weight(0, 0) < 0.05 and quiet.ratio(0, 0) == pytest.approx(0.5, abs=0.08)


def test_a_long_silence_starts_a_new_visit():
    table = WindowTable(64)
    for i in range(5):
        observe(table, 10.0 + i, Observation("account", "alice", timing=True, distinct=(f"10.0.0.{i}",)))
    back_again = Observation("account", "alice", timing=True, distinct=("10.0.0.9",))
    (back,) = observe(table, 10.0 + 4 + 3600, back_again)
    assert back.visit_start == 3614.0 and back.gaps == 0
    assert back.distinct(0) == pytest.approx(1, abs=0.1)


def test_stats_rows_have_every_field_named():
    (stats,) = observe(WindowTable(8), 1.0, Observation("ip", "e"))
    assert set(stats.as_dict()) == set(STATS_FIELDS) and len(stats) == len(STATS_FIELDS)


def test_more_observations_than_the_buffer_are_all_answered():
    table = WindowTable(256, max_batch=4)
    answers = table.observe([Observation("ip", str(i)) for i in range(10)], 5.0)
    assert len(answers) == 10 and all(a.total == 1 for a in answers)


def test_parse_rate_accepts_the_usual_forms_and_explains_mistakes():
    assert parse_rate("10/s").interval == pytest.approx(0.1)
    assert parse_rate("300/min").interval == pytest.approx(0.2)
    assert parse_rate("5000 / hour").period == 3600
    assert parse_rate("50/10s").period == 10
    for bad in ("ten/s", "10/fortnight", "0/s", "10"):
        with pytest.raises(ValueError, match=r"10/s|period|positive"):
            parse_rate(bad)


async def test_memory_store_observe_record_and_capacity_from_uri():
    store = open_store("memory://?capacity=32")
    assert isinstance(store, MemoryStore) and store.windows.capacity == 32
    (first,) = await store.observe([Observation("ip", "f", seen=1)], 1.0)
    await store.record([Observation("ip", "f", count=0, hits=1)], 1.0)
    (second,) = await store.observe([Observation("ip", "f", count=0)], 2.0)
    assert first.ratio(0) == 0.0 and second.ratio(0) == pytest.approx(1.0)
    assert await store.observe([], 3.0) == []
    with pytest.raises(ValueError, match="capacity"):
        open_store("memory://?capacity=lots")


def test_memory_store_is_safe_across_threads_and_tasks():
    store = MemoryStore(capacity=1024)

    async def hammer(worker: int) -> None:
        for i in range(500):
            own = Observation("ip", f"w{worker}-{i % 7}")
            await store.observe([Observation("ip", "shared"), own], float(i))

    def run(worker: int) -> None:
        async def many() -> None:
            await asyncio.gather(*(hammer(worker * 10 + t) for t in range(4)))
        asyncio.run(many())

    threads = [threading.Thread(target=run, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (shared,) = store.windows.observe([Observation("ip", "shared", count=0)], 500.0)
    assert shared.total == 4 * 4 * 500  # no lost update


def test_non_string_items_are_counted_like_their_text():
    # Same process, same hash key: ints and their text must land in the same registers exactly.
    # (Comparing with the true count would be flaky: a 64-register sketch with a per-process
    # hash key is ~13 % off at one standard error.)
    as_ints, as_text = WindowTable(16), WindowTable(16)
    for i in range(30):
        (from_ints,) = observe(as_ints, 1.0, Observation("ip", "k", distinct=(i,)))
        (from_text,) = observe(as_text, 1.0, Observation("ip", "k", distinct=(str(i),)))
    assert from_ints.distinct(0) == from_text.distinct(0)
    assert from_ints.distinct(0) == pytest.approx(30, rel=0.5)
