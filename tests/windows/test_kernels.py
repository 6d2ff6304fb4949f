"""The Numba kernels against their plain-Python reference, on random event streams."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldware.store.base import MAX_STEP, MAX_STEP_GAP, gap_bits, step_marker
from shieldware.windows.layout import (
    EV_FLOAT_WIDTH,
    EV_INT_WIDTH,
    MAX_LIMITS,
    OUT_WIDTH,
)
from shieldware.windows.reference import Event, ReferenceTable, flatten
from shieldware.windows.table import WindowTable

# A few fixed 64-bit key hashes, including negative ones and ones that collide modulo small capacities.
KEY_POOL = [1, 2, 3, 17, 33, -5, -(2**63) + 7, 2**62 + 1, 123456789123, 987654321987654321, 1 << 40, 65, 129]
ITEM_POOL = [0, 1, -1, 2**63 - 1, -(2**63), 0x0400000000000000, 0x7C00000000000001, 42, 4242, -99999999999]
LIMIT_CHOICES = [(), ((0.1, 10.0),), ((0.5, 1.0), (2.0, 30.0)), ((1.0, 3.0),)]
# Small steps so that walks, repeats and a full ring happen; the largest ones straddle MAX_STEP.
STEPS = st.one_of(st.none(), st.integers(0, 12), st.sampled_from([-3, MAX_STEP - 2, MAX_STEP - 1, MAX_STEP]))


@st.composite
def event_streams(draw):
    n = draw(st.integers(1, 120))
    clock = draw(st.floats(0, 1e9, allow_nan=False))
    events = []
    for _ in range(n):
        step = draw(st.one_of(
            st.floats(0, 2, allow_nan=False),               # a burst
            st.floats(0, 120, allow_nan=False),             # a browsing pause
            st.floats(1e3, 1e6, allow_nan=False),           # a huge gap (new visit, buckets expire)
            st.floats(-50, 0, allow_nan=False),             # out of order: earlier than the last event
            st.just(0.0),
        ))
        clock = max(0.0, clock + step)
        events.append(Event(
            key_hash=draw(st.sampled_from(KEY_POOL)),
            time=clock,
            count=draw(st.sampled_from([0.0, 1.0, 1.0, 2.5])),
            items=(draw(st.sampled_from(ITEM_POOL)), draw(st.sampled_from(ITEM_POOL))),
            seen=draw(st.integers(0, 15)),
            hits=draw(st.integers(0, 15)),
            timing=draw(st.booleans()),
            limits=draw(st.sampled_from(LIMIT_CHOICES)),
            step=draw(STEPS),
            follow_hits=draw(st.integers(0, 15)),
            step_gap=draw(st.sampled_from([1, 1, 2, 3, MAX_STEP_GAP])),
        ))
    return events


def as_arrays(events: list[Event]) -> tuple[np.ndarray, np.ndarray]:
    ints = np.zeros((len(events), EV_INT_WIDTH), dtype=np.int64)
    floats = np.zeros((len(events), EV_FLOAT_WIDTH), dtype=np.float64)
    for i, ev in enumerate(events):
        gap = gap_bits(ev.step_gap) << 17 if step_marker(ev.step) else 0  # as windows/table.py packs it
        flags = ev.seen | ev.hits << 8 | int(ev.timing) << 16 | gap | ev.follow_hits << 24
        ints[i] = [ev.key_hash, *ev.items, flags, step_marker(ev.step)]
        limits = [x for pair in ev.limits for x in pair] + [0.0, 0.0] * (MAX_LIMITS - len(ev.limits))
        floats[i] = [ev.time, ev.count, *limits]
    return ints, floats


def assert_rows_equal(kernel_row, reference_row, where: str) -> None:
    for i, (got, want) in enumerate(zip(kernel_row, reference_row, strict=True)):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), f"{where}: column {i}: {got} != {want}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_streams(), capacity=st.integers(1, 24))
def test_batch_kernel_equals_reference(events, capacity):
    table = WindowTable(capacity)
    ints, floats = as_arrays(events)
    out = np.zeros((len(events), OUT_WIDTH))
    evicted = table.replay(ints, floats, out)
    reference = ReferenceTable(capacity)
    for i, event in enumerate(events):
        assert_rows_equal(out[i], flatten(reference.observe(event)), f"event {i}")
    assert evicted == reference.evictions
    assert list(table.keys) == reference.slots


@settings(max_examples=60, deadline=None)
@given(events=event_streams(), capacity=st.integers(1, 24))
def test_online_one_event_at_a_time_equals_batch(events, capacity):
    online, batch = WindowTable(capacity), WindowTable(capacity)
    ints, floats = as_arrays(events)
    out_batch = np.zeros((len(events), OUT_WIDTH))
    batch.replay(ints, floats, out_batch)
    for i in range(len(events)):
        out_one = np.zeros((1, OUT_WIDTH))
        online.replay(ints[i:i + 1], floats[i:i + 1], out_one)
        assert_rows_equal(out_one[0], out_batch[i], f"event {i}")
    np.testing.assert_array_equal(online.state, batch.state)
    np.testing.assert_array_equal(online.registers, batch.registers)


@settings(max_examples=40, deadline=None)
@given(events=event_streams())
def test_replay_without_answers_gives_the_same_later_answers(events):
    answered, silent = WindowTable(16), WindowTable(16)
    ints, floats = as_arrays(events)
    answered.replay(ints, floats, np.zeros((len(events), OUT_WIDTH)))
    silent.replay(ints, floats)
    np.testing.assert_array_equal(answered.keys, silent.keys)
    # Read every key once more, later, without counting: both tables must answer alike.
    last = max(e.time for e in events) + 1.0
    reads = [Event(key_hash=k, time=last, count=0.0) for k in KEY_POOL]
    read_ints, read_floats = as_arrays(reads)
    answers = [np.zeros((len(reads), OUT_WIDTH)) for _ in range(2)]
    answered.replay(read_ints, read_floats, answers[0])
    silent.replay(read_ints, read_floats, answers[1])
    np.testing.assert_allclose(answers[0], answers[1], rtol=1e-9, atol=1e-9)


def test_table_overflow_evicts_and_memory_stays_at_capacity():
    capacity = 1024
    table = WindowTable(capacity)
    arrays_before = (table.keys, table.state, table.registers)
    bytes_before = table.memory_bytes
    total, batch = 5_000_000, 500_000
    rng = np.random.default_rng(7)
    for start in range(0, total, batch):
        ints = np.zeros((batch, EV_INT_WIDTH), dtype=np.int64)
        # 5 million distinct keys: distinct odd numbers scrambled, never 0.
        ints[:, 0] = (np.arange(start, start + batch, dtype=np.int64) * 2 + 1) * np.int64(0x9E3779B97F4A7C1)
        ints[:, 1] = rng.integers(-(2**63), 2**63 - 1, size=batch, dtype=np.int64)
        floats = np.zeros((batch, EV_FLOAT_WIDTH))
        floats[:, 0] = np.arange(start, start + batch) * 0.001
        floats[:, 1] = 1.0
        table.replay(ints, floats)
    assert table.memory_bytes == bytes_before
    assert all(a is b for a, b in zip(arrays_before, (table.keys, table.state, table.registers), strict=True))
    assert table.tracked_keys() == capacity
    assert table.evictions == total - capacity
    # The survivors are recent keys: sampled LRU never keeps a slot idle for long under churn.
    newest_time = (total - 1) * 0.001
    assert table.state[:, 0].min() > newest_time - 100.0
    print(f"bytes per tracked key: {table.bytes_per_key}")


async def test_memory_store_does_not_grow_with_distinct_clients_on_the_request_path():
    import tracemalloc

    from shieldware.store import MemoryStore
    from shieldware.store.base import Observation

    store = MemoryStore(capacity=512)
    for i in range(2000):  # warm every cache and code path first
        await store.observe([Observation("ip", f"warm{i}", seen=3, hits=1, timing=True)], float(i))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(50_000):
        await store.observe([Observation("ip", f"198.18.{i // 256}.{i % 256}", seen=3, hits=1, timing=True),
                             Observation("net", f"198.18.{i // 256}.0/24")], 3000.0 + i * 0.01)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 256 * 1024, f"Python heap grew by {grown} bytes for 50,000 distinct clients"
    assert store.windows.tracked_keys() == 512
