"""Plain-Python reference of the window kernels: the readable specification the tests hold them to.

It follows ``kernels.py`` step for step on Python floats and dicts (same IEEE operations in
the same order), so the kernels must match it to float rounding. It is deliberately simple,
not fast; ``bench/windows.py`` reports how much faster the kernels are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from shieldware.store.base import step_marker
from shieldware.windows.layout import (
    ALPHAS,
    COUNTER_HORIZONS,
    DECAY_BASE_RATE,
    DECAY_POWERS,
    DISTINCT_SKETCHES,
    GCRA_SLACK,
    HLL_ALPHA,
    HLL_INDEX_BITS,
    HLL_MAX_RANK,
    HLL_REGISTERS,
    MAX_LIMITS,
    N_HALF_LIVES,
    N_HORIZONS,
    N_SPANS,
    PROBES,
    RATIO_CHANNELS,
    STEP_MEMORY,
    VISIT_GAP,
)

MASK64 = (1 << 64) - 1
INVERSE_HORIZONS = tuple(1.0 / h for h in COUNTER_HORIZONS)


def home_slot(key_hash: int, capacity: int) -> int:
    """First slot to probe: the high 32 bits of the hash scaled into [0, capacity)."""
    return (((key_hash >> 32) & 0xFFFFFFFF) * capacity) >> 32


@dataclass
class Event:
    """One event as the kernels see it (hashes are signed 64-bit ints, 0 = none)."""

    key_hash: int
    time: float
    count: float = 1.0
    items: tuple[int, ...] = (0,) * DISTINCT_SKETCHES
    seen: int = 0
    hits: int = 0
    timing: bool = False
    limits: tuple[tuple[float, float], ...] = ()  # (interval, burst)
    step: int | None = None  # a position in a sequence (a product id); None = none
    follow_hits: int = 0  # ratio channels whose numerator counts the step when it follows
    step_gap: int = 1  # the step follows one remembered this far below it at most


@dataclass
class KeyWindows:
    """Everything one key remembers."""

    last_seen: float
    visit_start: float
    last_timed: float = -1.0
    ratio_time: float = 0.0
    tat: list[float] = field(default_factory=lambda: [-math.inf] * MAX_LIMITS)
    current: list[float] = field(default_factory=lambda: [0.0] * N_HORIZONS)
    previous: list[float] = field(default_factory=lambda: [0.0] * N_HORIZONS)
    total: float = 0.0
    gaps: float = 0.0
    mean: list[float] = field(default_factory=lambda: [0.0] * N_SPANS)
    var: list[float] = field(default_factory=lambda: [0.0] * N_SPANS)
    num: list[list[float]] = field(default_factory=lambda: _grid(RATIO_CHANNELS, N_HALF_LIVES, 0.0))
    den: list[list[float]] = field(default_factory=lambda: _grid(RATIO_CHANNELS, N_HALF_LIVES, 0.0))
    registers: list[list[int]] = field(default_factory=lambda: _grid(DISTINCT_SKETCHES, HLL_REGISTERS, 0))
    steps: list[int] = field(default_factory=list)  # the visit's last STEP_MEMORY steps, oldest first


def _grid(rows: int, cols: int, zero: float) -> list:
    return [[zero] * cols for _ in range(rows)]


def hll_estimate(registers: list[int]) -> float:
    """Textbook HyperLogLog with linear counting for small cardinalities."""
    zeros = registers.count(0)
    m = float(HLL_REGISTERS)
    if zeros == HLL_REGISTERS:
        return 0.0
    register_sum = float(sum(1 << (HLL_MAX_RANK - r) for r in registers))
    raw = HLL_ALPHA * m * m * float(1 << HLL_MAX_RANK) / register_sum
    if raw <= 2.5 * m and zeros > 0:
        return m * math.log(m / float(zeros))
    return raw


def hll_position(item: int) -> tuple[int, int]:
    """(register index, rank): top bits pick the register, leading zeros after them give the rank."""
    item &= MASK64
    index = item >> (64 - HLL_INDEX_BITS)
    rest = item & ((1 << (64 - HLL_INDEX_BITS)) - 1)
    rank = min(64 - HLL_INDEX_BITS - rest.bit_length() + 1, HLL_MAX_RANK)
    return index, rank


class ReferenceTable:
    """The key table: open addressing over `capacity` slots, sampled-LRU eviction."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.slots: list[int] = [0] * capacity
        self.windows: dict[int, KeyWindows] = {}  # slot → windows
        self.evictions = 0

    def slot_of(self, key_hash: int, now: float) -> tuple[int, bool]:
        start = home_slot(key_hash, self.capacity)
        candidates = [(start + i) % self.capacity for i in range(PROBES)]
        for slot in candidates:
            if self.slots[slot] == key_hash:
                return slot, False
            if self.slots[slot] == 0:
                self._claim(slot, key_hash, now)
                return slot, True
        victim = min(candidates, key=lambda s: self.windows[s].last_seen)  # first of equals, as the kernel
        self._claim(victim, key_hash, now)
        self.evictions += 1
        return victim, True

    def _claim(self, slot: int, key_hash: int, now: float) -> None:
        self.slots[slot] = key_hash
        self.windows[slot] = KeyWindows(last_seen=now, visit_start=now, ratio_time=now)

    def find(self, key_hash: int) -> int | None:
        """The key's slot, or None when it has none (nothing is claimed or evicted)."""
        start = home_slot(key_hash, self.capacity)
        for i in range(PROBES):
            slot = (start + i) % self.capacity
            if self.slots[slot] == key_hash:
                return slot
            if self.slots[slot] == 0:
                return None
        return None

    def observe(self, event: Event) -> dict[str, Any]:
        key_hash = event.key_hash or 1
        if is_lookup(event) and self.find(key_hash) is None:
            # A pure lookup of a key without windows answers an empty key's stats and leaves the
            # table as it was: it must not claim a slot or evict a key that has windows.
            return stats(KeyWindows(last_seen=event.time, visit_start=event.time, ratio_time=event.time),
                         event.time, 0.0, False)
        slot, claimed = self.slot_of(key_hash, event.time)
        w = self.windows[slot]
        now = event.time if claimed else advance(w, event.time)
        wait = gcra(w, now, event.limits)
        for h in range(N_HORIZONS):
            w.current[h] += event.count
        w.total += event.count
        if event.seen or event.hits:
            decay_ratios(w, now)
        for c in range(RATIO_CHANNELS):
            for k in range(N_HALF_LIVES):
                w.den[c][k] += 1.0 if (event.seen >> c) & 1 else 0.0
                w.num[c][k] += 1.0 if (event.hits >> c) & 1 else 0.0
        if event.timing:
            time_event(w, now)
        for sketch, item in enumerate(event.items):
            if item:
                index, rank = hll_position(item)
                w.registers[sketch][index] = max(w.registers[sketch][index], rank)
        follows = False
        step = event.step
        if step is not None and step_marker(step):
            # A step forward, not a revisit.
            below = range(max(step - event.step_gap, 0), step)
            follows = any(earlier in w.steps for earlier in below) and step not in w.steps
            w.steps = [*w.steps, step][-STEP_MEMORY:]
        if follows and event.follow_hits:
            decay_ratios(w, now)
            for c in range(RATIO_CHANNELS):
                for k in range(N_HALF_LIVES):
                    w.num[c][k] += 1.0 if (event.follow_hits >> c) & 1 else 0.0
        return stats(w, now, wait, follows)


def is_lookup(event: Event) -> bool:
    """An event that changes nothing but the key's clock: no count, timing, items, ratios, limits or step."""
    return (event.count == 0.0 and not event.timing and not event.seen and not event.hits and not event.follow_hits
            and not any(event.items) and not event.limits and not step_marker(event.step))


def advance(w: KeyWindows, when: float) -> float:
    if when <= w.last_seen:
        return w.last_seen  # late events count at the key's latest time
    last = w.last_seen
    # Horizons are multiples of the shortest: if it did not roll, none did (the kernel's shortcut).
    if math.floor(when * INVERSE_HORIZONS[0]) != math.floor(last * INVERSE_HORIZONS[0]):
        roll_buckets(w, when, last)
    if when - last > VISIT_GAP:
        w.visit_start, w.last_timed, w.gaps = when, -1.0, 0.0
        w.mean = [0.0] * N_SPANS
        w.var = [0.0] * N_SPANS
        w.registers = _grid(DISTINCT_SKETCHES, HLL_REGISTERS, 0)
        w.steps = []
    w.last_seen = when
    return when


def roll_buckets(w: KeyWindows, when: float, last: float) -> None:
    for h, inverse in enumerate(INVERSE_HORIZONS):
        passed = math.floor(when * inverse) - math.floor(last * inverse)
        if passed == 1:
            w.previous[h], w.current[h] = w.current[h], 0.0
        elif passed > 1:
            w.previous[h] = w.current[h] = 0.0


def decay_ratios(w: KeyWindows, now: float) -> None:
    """Exponential decay since the ratios were last touched (lazily: only when used)."""
    elapsed = now - w.ratio_time
    if elapsed <= 0.0:
        return
    w.ratio_time = now
    base = math.exp(-elapsed * DECAY_BASE_RATE)
    for k, exponent in enumerate(DECAY_POWERS):
        factor = power(base, exponent)
        for c in range(RATIO_CHANNELS):
            w.num[c][k] *= factor
            w.den[c][k] *= factor


def power(base: float, exponent: int) -> float:
    result = 1.0
    while exponent > 0:
        if exponent & 1:
            result *= base
        base *= base
        exponent >>= 1
    return result


def gcra(w: KeyWindows, now: float, limits: tuple[tuple[float, float], ...]) -> float:
    """Generic cell rate algorithm: refuse while now < TAT - interval*(burst-1); wait = the difference."""
    wait = 0.0
    for j, (interval, burst) in enumerate(limits):
        allowed_at = max(w.tat[j], now) - interval * (burst - 1.0)
        if allowed_at - now > GCRA_SLACK:
            wait = max(wait, allowed_at - now)
    if wait == 0.0:
        for j, (interval, _burst) in enumerate(limits):
            w.tat[j] = max(w.tat[j], now) + interval
    return wait


def time_event(w: KeyWindows, now: float) -> None:
    previous, w.last_timed = w.last_timed, now
    if previous < 0.0:
        return
    gap = now - previous
    w.gaps += 1.0
    for s, alpha in enumerate(ALPHAS):
        if w.gaps == 1.0:
            w.mean[s], w.var[s] = gap, 0.0
        else:
            diff = gap - w.mean[s]
            step = alpha * diff
            w.mean[s] += step
            w.var[s] = (1.0 - alpha) * (w.var[s] + diff * step)


def stats(w: KeyWindows, now: float, wait: float, follows: bool) -> dict[str, Any]:
    """Named answer, the same values the kernel writes into one STATS_FIELDS row."""
    decay_ratios(w, now)
    counts = []
    for h, inverse in enumerate(INVERSE_HORIZONS):
        into = now * inverse
        into -= math.floor(into)
        counts.append(w.current[h] + w.previous[h] * (1.0 - into))
    return {
        "counts": counts,
        "gaps": w.gaps,
        "gap_mean": list(w.mean),
        "gap_std": [math.sqrt(max(v, 0.0)) for v in w.var],
        "distinct": [hll_estimate(r) for r in w.registers],
        "ratio": [[w.num[c][k] / w.den[c][k] if w.den[c][k] > 0 else 0.0 for k in range(N_HALF_LIVES)]
                  for c in range(RATIO_CHANNELS)],
        "ratio_weight": [list(w.den[c]) for c in range(RATIO_CHANNELS)],
        "retry_after": wait,
        "visit_start": w.visit_start,
        "total": w.total,
        "follows": 1.0 if follows else 0.0,
    }


def flatten(named: dict[str, Any]) -> list[float]:
    """The named answer as a STATS_FIELDS row."""
    row: list[float] = [*named["counts"], named["gaps"], *named["gap_mean"], *named["gap_std"]]
    row += named["distinct"]
    row += [r for channel in named["ratio"] for r in channel]
    row += [r for channel in named["ratio_weight"] for r in channel]
    row += [named["retry_after"], named["visit_start"], named["total"], named["follows"]]
    return row
