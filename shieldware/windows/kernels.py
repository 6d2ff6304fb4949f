"""Numba kernels: apply a run of events to the key table and write each event's window stats.

There is ONE kernel, :func:`observe_events`; "online" is a call with the few events of one
request, "batch" a call with millions of time-sorted events (log replay, benchmarks), so both
modes share every line. ``shieldware/windows/reference.py`` is the same algorithm in plain
Python and the specification the property tests hold these kernels to.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros

from shieldware.windows.layout import (
    ALPHAS,
    COUNTER,
    COUNTER_HORIZONS,
    DECAY_BASE_RATE,
    DECAY_POWERS,
    DISTINCT_SKETCHES,
    EV_COUNT,
    EV_FLAGS,
    EV_HASH,
    EV_ITEM,
    EV_LIMIT,
    EV_STEP,
    EV_TIME,
    GAPS,
    GCRA_SLACK,
    HLL_ALPHA,
    HLL_INDEX_BITS,
    HLL_MAX_RANK,
    HLL_REGISTERS,
    HLL_SUM,
    HLL_ZEROS,
    LAST_SEEN,
    LAST_TIMED,
    MAX_LIMITS,
    MEAN,
    N_HALF_LIVES,
    N_HORIZONS,
    N_SPANS,
    OUT_DISTINCT,
    OUT_FOLLOWS,
    OUT_GAPS,
    OUT_MEAN,
    OUT_RATIO,
    OUT_RETRY,
    OUT_STD,
    OUT_TOTAL,
    OUT_VISIT,
    OUT_WEIGHT,
    PROBES,
    RATIO_CHANNELS,
    RATIO_DEN,
    RATIO_NUM,
    RATIO_TIME,
    REGISTER_WIDTH,
    STATE_WIDTH,
    STEP_MEMORY,
    STEP_NEXT,
    STEPS,
    TAT,
    TOTAL,
    VAR,
    VISIT_GAP,
    VISIT_START,
)
from shieldware.windows.prefetch import prefetch

_INDEX_SHIFT = 64 - HLL_INDEX_BITS
_LOW32 = 0xFFFFFFFF
_RANK_WEIGHT = np.array([float(1 << (HLL_MAX_RANK - r)) for r in range(HLL_MAX_RANK + 1)])
# Multiplying by a reciprocal instead of dividing: the reference does exactly the same.
_INVERSE_HORIZONS = tuple(1.0 / h for h in COUNTER_HORIZONS)


@njit(cache=True, nogil=True, error_model="numpy")
def _reset_slot(keys, state, registers, slot, key_hash, now):
    keys[slot] = key_hash
    for col in range(STATE_WIDTH):
        state[slot, col] = 0.0
    state[slot, LAST_SEEN] = now
    state[slot, VISIT_START] = now
    state[slot, LAST_TIMED] = -1.0
    state[slot, RATIO_TIME] = now
    for j in range(MAX_LIMITS):
        state[slot, TAT + j] = -math.inf
    _reset_sketches(state, registers, slot)


@njit(cache=True, nogil=True, error_model="numpy")
def _reset_sketches(state, registers, slot):
    for col in range(registers.shape[1]):
        registers[slot, col] = 0
    for i in range(DISTINCT_SKETCHES):
        state[slot, HLL_SUM + i] = float(HLL_REGISTERS) * float(1 << HLL_MAX_RANK)
        state[slot, HLL_ZEROS + i] = float(HLL_REGISTERS)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def home_slot(key_hash, capacity):
    """First slot to probe: the hash's high 32 bits scaled to the capacity (no division)."""
    return (((key_hash >> 32) & _LOW32) * capacity) >> 32


FOUND = 0
CLAIMED = 1
EVICTED = 2


@njit(cache=True, nogil=True, error_model="numpy")
def find_slot(keys, state, registers, key_hash, now):
    """(slot, FOUND | CLAIMED | EVICTED): the key's slot, an empty one, or the idle-longest of
    the PROBES candidates, reset for this key."""
    capacity = keys.shape[0]
    slot = home_slot(key_hash, capacity)
    victim = -1
    oldest = math.inf
    for _ in range(PROBES):
        current = keys[slot]
        if current == key_hash:
            return slot, FOUND
        if current == 0:
            _reset_slot(keys, state, registers, slot, key_hash, now)
            return slot, CLAIMED
        seen = state[slot, LAST_SEEN]
        if seen < oldest:
            oldest = seen
            victim = slot
        slot += 1
        if slot == capacity:
            slot = 0
    _reset_slot(keys, state, registers, victim, key_hash, now)
    return victim, EVICTED


@njit(cache=True, nogil=True, error_model="numpy")
def probe(keys, key_hash):
    """The key's slot, or -1 when it has none: find_slot without claiming or evicting."""
    capacity = keys.shape[0]
    slot = home_slot(key_hash, capacity)
    for _ in range(PROBES):
        current = keys[slot]
        if current == key_hash:
            return slot
        if current == 0:
            return -1
        slot += 1
        if slot == capacity:
            slot = 0
    return -1


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _is_lookup(ev_int, ev_float, e):
    """An event that changes nothing but the key's clock: no count, flags, items, limits or step."""
    if ev_float[e, EV_COUNT] != 0.0 or ev_int[e, EV_FLAGS] != 0 or ev_int[e, EV_STEP] != 0:
        return False
    for i in range(DISTINCT_SKETCHES):
        if ev_int[e, EV_ITEM + i] != 0:
            return False
    for j in range(MAX_LIMITS):  # noqa: SIM110  (a loop: Numba does not compile all() over a generator)
        if ev_float[e, EV_LIMIT + 2 * j] > 0.0:
            return False
    return True


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _write_empty_stats(out, e, now):
    """The answer for a key with no windows: what a new slot would answer, without the slot."""
    for col in range(out.shape[1]):
        out[e, col] = 0.0
    out[e, OUT_VISIT] = now


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _roll_buckets(state, slot, now, last):
    """Weighted previous/current buckets: a bucket boundary passed moves current to previous;
    two or more passed leave both empty."""
    for h in range(N_HORIZONS):
        inverse = _INVERSE_HORIZONS[h]
        passed = math.floor(now * inverse) - math.floor(last * inverse)
        if passed == 1.0:
            state[slot, COUNTER + 2 * h + 1] = state[slot, COUNTER + 2 * h]
            state[slot, COUNTER + 2 * h] = 0.0
        elif passed > 1.0:
            state[slot, COUNTER + 2 * h + 1] = 0.0
            state[slot, COUNTER + 2 * h] = 0.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _advance(state, registers, slot, now):
    """Move the key's clock to `now` (never backwards): roll buckets, decay ratios, new visit."""
    last = state[slot, LAST_SEEN]
    if now <= last:
        return last
    # Every horizon is a multiple of the shortest, so if the shortest did not roll, none did.
    if math.floor(now * _INVERSE_HORIZONS[0]) != math.floor(last * _INVERSE_HORIZONS[0]):
        _roll_buckets(state, slot, now, last)
    if now - last > VISIT_GAP:
        state[slot, VISIT_START] = now
        state[slot, LAST_TIMED] = -1.0
        state[slot, GAPS] = 0.0
        for s in range(N_SPANS):
            state[slot, MEAN + s] = 0.0
            state[slot, VAR + s] = 0.0
        _reset_sketches(state, registers, slot)
        for col in range(STEPS, STEP_NEXT + 1):
            state[slot, col] = 0.0
    state[slot, LAST_SEEN] = now
    return now


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def power(base, exponent):
    """base ** exponent for a small positive integer exponent, by squaring (as the reference)."""
    result = 1.0
    while exponent > 0:
        if exponent & 1:
            result *= base
        base *= base
        exponent >>= 1
    return result


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _decay_ratios(state, slot, now):
    elapsed = now - state[slot, RATIO_TIME]
    if elapsed <= 0.0:
        return
    state[slot, RATIO_TIME] = now
    base = math.exp(-elapsed * DECAY_BASE_RATE)
    for k in range(N_HALF_LIVES):
        factor = power(base, DECAY_POWERS[k])
        for c in range(RATIO_CHANNELS):
            state[slot, RATIO_NUM + c * N_HALF_LIVES + k] *= factor
            state[slot, RATIO_DEN + c * N_HALF_LIVES + k] *= factor


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _count_ratio_bits(state, slot, seen, hits):
    """Add 1 to every half-life of each channel whose bit is set in `seen` (denominators) or
    `hits` (numerators). Branch-free: channel bits are as good as random, so a branch per bit
    would be mispredicted half the time; adding 0.0 leaves a value exactly as it was."""
    for c in range(RATIO_CHANNELS):
        den = float((seen >> c) & 1)
        num = float((hits >> c) & 1)
        for k in range(N_HALF_LIVES):
            state[slot, RATIO_DEN + c * N_HALF_LIVES + k] += den
            state[slot, RATIO_NUM + c * N_HALF_LIVES + k] += num


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _gcra(state, slot, now, ev_float, e):
    """Check every limit; charge them all only if all conform. Returns the wait (0 = allowed)."""
    wait = 0.0
    for j in range(MAX_LIMITS):
        interval = ev_float[e, EV_LIMIT + 2 * j]
        if interval > 0.0:
            tolerance = interval * (ev_float[e, EV_LIMIT + 2 * j + 1] - 1.0)
            allowed_at = max(state[slot, TAT + j], now) - tolerance
            # GCRA_SLACK: sums of intervals drift by ulps; never refuse a burst for 1e-14 s.
            if allowed_at - now > GCRA_SLACK and allowed_at - now > wait:
                wait = allowed_at - now
    if wait == 0.0:
        for j in range(MAX_LIMITS):
            interval = ev_float[e, EV_LIMIT + 2 * j]
            if interval > 0.0:
                state[slot, TAT + j] = max(state[slot, TAT + j], now) + interval
    return wait


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _time_event(state, slot, now):
    previous = state[slot, LAST_TIMED]
    state[slot, LAST_TIMED] = now
    if previous < 0.0:
        return
    gap = now - previous
    gaps = state[slot, GAPS] + 1.0
    state[slot, GAPS] = gaps
    for s in range(N_SPANS):
        if gaps == 1.0:
            state[slot, MEAN + s] = gap
            state[slot, VAR + s] = 0.0
        else:
            alpha = ALPHAS[s]
            diff = gap - state[slot, MEAN + s]
            step = alpha * diff
            state[slot, MEAN + s] += step
            state[slot, VAR + s] = (1.0 - alpha) * (state[slot, VAR + s] + diff * step)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _add_item(state, registers, slot, sketch, item):
    index = (item >> _INDEX_SHIFT) & (HLL_REGISTERS - 1)
    # Rank = leading zeros of the bits below the index, plus one, capped (one CPU instruction).
    rest = np.uint64(item) << np.uint64(HLL_INDEX_BITS)
    rank = HLL_MAX_RANK if rest == 0 else min(int(leading_zeros(rest)) + 1, HLL_MAX_RANK)
    col = sketch * HLL_REGISTERS + index
    old = int(registers[slot, col])
    # Branch-free: whether a register grows is a coin toss per item, so no branch to mispredict;
    # when it does not grow the sum gains exactly 0.0.
    new = max(rank, old)
    registers[slot, col] = new
    state[slot, HLL_SUM + sketch] += _RANK_WEIGHT[new] - _RANK_WEIGHT[old]
    state[slot, HLL_ZEROS + sketch] -= 1.0 if old == 0 else 0.0


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _take_step(state, slot, marker, gap):
    """Remember step marker `marker` (step + 1) in the key's ring; 1.0 when a step before it
    (marker - gap .. marker - 1, markers only when >= 1) was already there and this one was not:
    a step forward, not a return to a page already seen (a crowd landing on a few neighbouring ids)."""
    high = float(marker - 1)
    low = float(max(marker - gap, 1))
    follows = 0.0
    if high > 0.0:
        for i in range(STEP_MEMORY):
            remembered = state[slot, STEPS + i]
            if low <= remembered <= high:
                follows = 1.0
        for i in range(STEP_MEMORY):
            if state[slot, STEPS + i] == float(marker):
                follows = 0.0
    position = int(state[slot, STEP_NEXT])
    state[slot, STEPS + position] = float(marker)
    state[slot, STEP_NEXT] = float((position + 1) % STEP_MEMORY)
    return follows


@njit(cache=True, nogil=True, error_model="numpy")
def hll_estimate(register_sum, zeros):
    """Cardinality from the exact register sum (scaled by 2^HLL_MAX_RANK) and the empty count."""
    m = float(HLL_REGISTERS)
    if zeros == m:
        return 0.0
    raw = HLL_ALPHA * m * m * float(1 << HLL_MAX_RANK) / register_sum
    if raw <= 2.5 * m and zeros > 0.0:
        return m * math.log(m / zeros)
    return raw


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _write_stats(state, slot, now, wait, follows, out, e):
    _decay_ratios(state, slot, now)
    for h in range(N_HORIZONS):
        into = now * _INVERSE_HORIZONS[h]
        into -= math.floor(into)
        out[e, h] = state[slot, COUNTER + 2 * h] + state[slot, COUNTER + 2 * h + 1] * (1.0 - into)
    out[e, OUT_GAPS] = state[slot, GAPS]
    for s in range(N_SPANS):
        out[e, OUT_MEAN + s] = state[slot, MEAN + s]
        out[e, OUT_STD + s] = math.sqrt(max(state[slot, VAR + s], 0.0))
    for i in range(DISTINCT_SKETCHES):
        out[e, OUT_DISTINCT + i] = hll_estimate(state[slot, HLL_SUM + i], state[slot, HLL_ZEROS + i])
    for col in range(RATIO_CHANNELS * N_HALF_LIVES):
        den = state[slot, RATIO_DEN + col]
        out[e, OUT_WEIGHT + col] = den
        out[e, OUT_RATIO + col] = state[slot, RATIO_NUM + col] / den if den > 0.0 else 0.0
    out[e, OUT_RETRY] = wait
    out[e, OUT_VISIT] = state[slot, VISIT_START]
    out[e, OUT_TOTAL] = state[slot, TOTAL]
    out[e, OUT_FOLLOWS] = follows


PREFETCH_AHEAD = 8
"""Events ahead whose key row is prefetched: enough to cover a memory load's latency with the
work on the events in between, few enough that the rows are still cached when their turn comes."""
# One column per 64-byte cache line (new_state aligns rows to lines; the last column covers a
# table made some other way, whose rows may straddle one line more).
_STATE_LINES = (*range(0, STATE_WIDTH, 8), STATE_WIDTH - 1)
_REGISTER_LINES = (*range(0, REGISTER_WIDTH, 64), REGISTER_WIDTH - 1)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _prefetch_home(keys, state, registers, key_hash):
    """Prefetch the key's home slot: where it lives unless its probe ran past a collision."""
    slot = home_slot(key_hash, keys.shape[0])
    prefetch(keys, slot, 0)
    for col in _STATE_LINES:
        prefetch(state, slot, col)
    for col in _REGISTER_LINES:
        prefetch(registers, slot, col)


@njit(cache=True, nogil=True, error_model="numpy")
def observe_events(keys, state, registers, ev_int, ev_float, n_events, out):
    """Apply events 0..n_events-1 in order; write each one's stats into `out` if it has rows.

    Pass an `out` with zero rows to replay state only (log replay that needs no answers).
    Returns the number of slots evicted to make room for new keys.
    """
    evictions = 0
    want_stats = out.shape[0] >= n_events
    # The first rows too: a request's few events then wait for their memory loads together,
    # not one after another.
    for e in range(min(n_events, PREFETCH_AHEAD)):
        _prefetch_home(keys, state, registers, ev_int[e, EV_HASH])
    for e in range(n_events):
        if e + PREFETCH_AHEAD < n_events:
            _prefetch_home(keys, state, registers, ev_int[e + PREFETCH_AHEAD, EV_HASH])
        key_hash = ev_int[e, EV_HASH]
        if key_hash == 0:
            key_hash = 1  # 0 marks an empty slot
        event_time = ev_float[e, EV_TIME]
        slot = home_slot(key_hash, keys.shape[0])
        if keys[slot] == key_hash:
            status = FOUND  # the common case, checked here so the probe loop stays out of line
        elif _is_lookup(ev_int, ev_float, e):
            # A pure lookup (reading a key's windows, e.g. the items an address added to carts) must
            # not claim a slot, let alone evict a key that has windows, for a key that has none.
            slot = probe(keys, key_hash)
            if slot < 0:
                if want_stats:
                    _write_empty_stats(out, e, event_time)
                continue
            status = FOUND
        else:
            slot, status = find_slot(keys, state, registers, key_hash, event_time)
        if status == FOUND:
            now = _advance(state, registers, slot, event_time)
        else:
            now = event_time
            if status == EVICTED:
                evictions += 1
        wait = _gcra(state, slot, now, ev_float, e)
        count = ev_float[e, EV_COUNT]
        for h in range(N_HORIZONS):
            state[slot, COUNTER + 2 * h] += count
        state[slot, TOTAL] += count
        flags = ev_int[e, EV_FLAGS]
        seen = flags & 0xFF
        hits = (flags >> 8) & 0xFF
        if seen != 0 or hits != 0:
            _decay_ratios(state, slot, now)
            _count_ratio_bits(state, slot, seen, hits)
        if (flags >> 16) & 1:
            _time_event(state, slot, now)
        for i in range(DISTINCT_SKETCHES):
            item = ev_int[e, EV_ITEM + i]
            if item != 0:
                _add_item(state, registers, slot, i, item)
        marker = ev_int[e, EV_STEP]
        follows = _take_step(state, slot, marker, ((flags >> 17) & 7) + 1) if marker > 0 else 0.0
        follow_hits = (flags >> 24) & 0xFF
        if follows > 0.0 and follow_hits != 0:
            _decay_ratios(state, slot, now)
            _count_ratio_bits(state, slot, 0, follow_hits)
        if want_stats:
            _write_stats(state, slot, now, wait, follows, out, e)
    return evictions


CACHE_LINE = 64


def _line_aligned_zeros(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """np.zeros whose data starts on a cache-line boundary. A large array's data otherwise starts
    16 bytes into its page, so a 320-byte state row spans six lines instead of five and a
    128-byte register row three instead of two: one more memory load per touched row."""
    itemsize = np.dtype(dtype).itemsize
    count = int(np.prod(shape))
    raw = np.zeros(count * itemsize + CACHE_LINE, dtype=np.uint8)
    offset = -raw.ctypes.data % CACHE_LINE
    return raw[offset:offset + count * itemsize].view(dtype).reshape(shape)


def new_state(capacity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty (keys, state, registers) arrays for `capacity` keys, rows aligned to cache lines."""
    return (_line_aligned_zeros((capacity,), np.int64), _line_aligned_zeros((capacity, STATE_WIDTH), np.float64),
            _line_aligned_zeros((capacity, REGISTER_WIDTH), np.uint8))
