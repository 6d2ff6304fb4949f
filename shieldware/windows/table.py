"""WindowTable: the key table and its preallocated buffers; turns Observations into one kernel call."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from shieldware.store.base import DISTINCT_SKETCHES, MAX_LIMITS, Observation, WindowStats
from shieldware.windows.kernels import new_state, observe_events
from shieldware.windows.layout import EV_FLOAT_WIDTH, EV_INT_WIDTH, OUT_WIDTH

_NO_ITEMS = (0,) * DISTINCT_SKETCHES
_NO_LIMITS = (0.0, 0.0) * MAX_LIMITS
_MASK63 = (1 << 63) - 1


def key_hash(kind: str, key: str) -> int:
    """64-bit hash of (kind, key) for this process (Python's keyed SipHash of the strings)."""
    return hash((kind, key)) or 1


def item_hash(item: str | None) -> int:
    """64-bit hash of a distinct-count item; 0 means "no item"."""
    if not item:
        return 0
    # Spread Python's 64-bit hash over all bits (the kernel reads the top bits for the register)
    # with one multiply of a 64-bit odd constant, kept in signed int64 range.
    mixed = (hash(item) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    return (mixed - (1 << 64) if mixed > _MASK63 else mixed) or 1


def event_rows(observation: Observation, now: float) -> tuple[list[int], list[float]]:
    """The kernel's int and float row for one observation at `now`."""
    items = _NO_ITEMS
    if observation.distinct:
        items = tuple(item_hash(d) for d in observation.distinct[:DISTINCT_SKETCHES])
        items += _NO_ITEMS[len(items):]
    limits: tuple[float, ...] = _NO_LIMITS
    if observation.limits:
        limits = ()
        for rate in observation.limits[:MAX_LIMITS]:
            limits += (rate.period / rate.count, float(rate.count))
        limits += _NO_LIMITS[len(limits):]
    flags = (observation.seen & 0xFF) | (observation.hits & 0xFF) << 8
    if observation.timing:
        flags |= 1 << 16
    return ([key_hash(observation.kind, observation.key), *items, flags],
            [now, float(observation.count), *limits])


class WindowTable:
    """Window state for at most `capacity` keys, in fixed numpy arrays (memory never grows).

    `observe` is the online path: one kernel call per request with preallocated buffers, under
    a lock so threads and tasks may share the table. `replay` is the batch path over arrays.
    """

    def __init__(self, capacity: int = 100_000, max_batch: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"window capacity must be at least 1 key, got {capacity}")
        self.capacity = capacity
        self.keys, self.state, self.registers = new_state(capacity)
        self.evictions = 0
        self._lock = threading.Lock()
        self._ints = np.zeros((max_batch, EV_INT_WIDTH), dtype=np.int64)
        self._floats = np.zeros((max_batch, EV_FLOAT_WIDTH), dtype=np.float64)
        self._out = np.zeros((max_batch, OUT_WIDTH), dtype=np.float64)
        warm_up()

    @property
    def memory_bytes(self) -> int:
        """Bytes held for window state (fixed at construction)."""
        return self.keys.nbytes + self.state.nbytes + self.registers.nbytes

    @property
    def bytes_per_key(self) -> int:
        return self.memory_bytes // self.capacity

    def tracked_keys(self) -> int:
        return int(np.count_nonzero(self.keys))

    def observe(self, observations: Sequence[Observation], now: float) -> list[WindowStats]:
        count = len(observations)
        if count == 0:
            return []
        if count > self._ints.shape[0]:
            return [s for i in range(0, count, self._ints.shape[0])
                    for s in self.observe(observations[i:i + self._ints.shape[0]], now)]
        rows = [event_rows(o, now) for o in observations]
        with self._lock:
            self._ints[:count] = [r[0] for r in rows]
            self._floats[:count] = [r[1] for r in rows]
            self.evictions += observe_events(self.keys, self.state, self.registers,
                                             self._ints, self._floats, count, self._out)
            answers = self._out[:count].tolist()
        return [WindowStats(row) for row in answers]

    def replay(self, ints: np.ndarray, floats: np.ndarray, out: np.ndarray | None = None) -> int:
        """Batch: apply time-sorted event arrays (EV_* columns); fill `out` rows if given.

        Returns the evictions this batch caused. Same kernel as `observe`.
        """
        if out is None:
            out = np.zeros((0, OUT_WIDTH), dtype=np.float64)
        with self._lock:
            evicted = observe_events(self.keys, self.state, self.registers, ints, floats, ints.shape[0], out)
            self.evictions += evicted
        return evicted


_warm = False


def warm_up() -> None:
    """Compile (or load from the Numba cache) the kernel before the first request needs it.

    The cache lives in __pycache__ beside the module, or in $NUMBA_CACHE_DIR when set (for
    read-only installs): Numba reads that variable itself.
    """
    global _warm
    if _warm:
        return
    keys, state, registers = new_state(1)
    ints = np.zeros((1, EV_INT_WIDTH), dtype=np.int64)
    floats = np.zeros((1, EV_FLOAT_WIDTH), dtype=np.float64)
    observe_events(keys, state, registers, ints, floats, 1, np.zeros((1, OUT_WIDTH), dtype=np.float64))
    observe_events(keys, state, registers, ints, floats, 1, np.zeros((0, OUT_WIDTH), dtype=np.float64))
    _warm = True
