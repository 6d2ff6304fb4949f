"""WindowTable: the key table and its preallocated buffers; turns Observations into one kernel call."""

from __future__ import annotations

import functools
import hashlib
import struct
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from shieldware.store.base import DISTINCT_SKETCHES, MAX_LIMITS, Observation, WindowStats, gap_bits, step_marker
from shieldware.windows.kernels import new_state, observe_events
from shieldware.windows.layout import EV_FLOAT_WIDTH, EV_INT_WIDTH, OUT_WIDTH

_NO_ITEMS = (0,) * DISTINCT_SKETCHES
_NO_LIMITS = (0.0, 0.0) * MAX_LIMITS


def key_hash(kind: str, key: str) -> int:
    """64-bit hash of (kind, key) for this process (Python's keyed SipHash of the strings)."""
    return hash((kind, key)) or 1


_item_key: bytes | None = None
_item_hash_listeners: list[Any] = []


def set_item_hash_key(key: bytes | None) -> None:
    """Hash distinct items with keyed BLAKE2b under `key` (the same sketches in every run, for
    tests and reproducible log analysis); None returns to the per-process string hash."""
    global _item_key
    _item_key = key
    _item_hash_cached.cache_clear()
    for reference in list(_item_hash_listeners):
        listener = reference()
        if listener is None:
            _item_hash_listeners.remove(reference)
        else:
            listener()


def on_item_hash_change(listener: Any) -> None:
    """Call `listener()` (a bound method, held weakly) when items start being hashed differently
    (the fast lane hashes them as the string hash does, and steps aside)."""
    _item_hash_listeners.append(weakref.WeakMethod(listener))


def item_hash(item: object) -> int:
    """64-bit keyed hash of a distinct-count item; 0 means "no item".

    By default Python's string hash: SipHash keyed with a secret random per process, uniform
    over 64 bits (as HyperLogLog needs) and fast, and a client cannot pick paths that all land
    in one register to hide how many distinct pages it walked.
    """
    if item is None or item == "":  # not `not item`: the integer 0 is an item like any other
        return 0
    if not isinstance(item, str):
        item = str(item)  # an int's hash is the int itself: too few high bits for the registers
    if _item_key is None:
        return hash(item) or 1
    return _item_hash_cached(item)


@functools.lru_cache(maxsize=65536)
def _item_hash_cached(item: str) -> int:
    value = int.from_bytes(hashlib.blake2b(item.encode("utf-8", "surrogatepass"), digest_size=8,
                                           key=_item_key or b"").digest(), "little", signed=True)
    return value or 1


def event_rows(observation: Observation, now: float) -> tuple[list[int], list[float]]:
    """The kernel's int and float row for one observation at `now`."""
    return _rows((observation,), now)


def rows_for(observations: Sequence[Observation], now: float) -> tuple[list[int], list[float]]:
    """The kernel's flat int and float rows for observations at `now` (the fast lane's plans)."""
    return _rows(observations, now)


def _rows(observations: Sequence[Observation], now: float) -> tuple[list[int], list[float]]:
    """The kernel's flat int and float rows for a request's observations at `now`.

    Hot path (every observation of every request): one loop, no call per observation, plain
    appends. Python's string hash is keyed per process (SipHash), so clients cannot aim collisions.
    """
    ints: list[int] = []
    floats: list[float] = []
    add_int, add_ints, add_floats = ints.append, ints.extend, floats.extend
    string_hash = _item_key is None
    for kind, key, count, timing, distinct, seen, hits, limits, step, follow_hits, step_gap in observations:
        add_int(hash((kind, key)) or 1)
        if not distinct:
            add_ints(_NO_ITEMS)
        elif string_hash and len(distinct) == DISTINCT_SKETCHES:
            for item in distinct:
                if item is None or item == "":  # the integer 0 is an item, not "none"
                    add_int(0)
                elif item.__class__ is str:
                    add_int(hash(item) or 1)
                else:
                    add_int(item_hash(item))
        else:
            for i in range(DISTINCT_SKETCHES):
                add_int(item_hash(distinct[i]) if i < len(distinct) else 0)
        marker = 0 if step is None else step_marker(step)
        add_int((seen & 0xFF) | (hits & 0xFF) << 8 | (0x10000 if timing else 0)
                | (gap_bits(step_gap) << 17 if marker else 0) | (follow_hits & 0xFF) << 24)
        add_int(marker)
        add_floats((now, count))
        add_floats(_limit_floats(limits) if limits else _NO_LIMITS)
    return ints, floats


_LIMIT_FLOATS: dict[int, tuple[tuple, tuple[float, ...]]] = {}


def _limit_floats(limits: tuple) -> tuple[float, ...]:
    """(interval, burst) pairs for the kernel, cached per limits tuple (signals reuse theirs)."""
    cached = _LIMIT_FLOATS.get(id(limits))
    if cached is not None and cached[0] is limits:
        return cached[1]
    pairs: tuple[float, ...] = ()
    for rate in limits[:MAX_LIMITS]:
        pairs += (rate.period / rate.count, float(rate.count))
    pairs += _NO_LIMITS[len(pairs):]
    if len(_LIMIT_FLOATS) > 4096:
        _LIMIT_FLOATS.clear()
    _LIMIT_FLOATS[id(limits)] = (limits, pairs)  # holding `limits` keeps its id from being reused
    return pairs


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
        # The online path packs a request's rows straight into these views with precompiled
        # structs: one C call each instead of numpy converting a list on slice assignment.
        self._ints_bytes = memoryview(self._ints).cast("B")
        self._floats_bytes = memoryview(self._floats).cast("B")
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
        batch = self._ints.shape[0]
        if count > batch:
            return [s for i in range(0, count, batch) for s in self.observe(observations[i:i + batch], now)]
        ints, floats = _rows(observations, now)
        pack_ints, pack_floats = _packers(count)
        with self._lock:
            pack_ints(self._ints_bytes, 0, *ints)
            pack_floats(self._floats_bytes, 0, *floats)
            self.evictions += observe_events(self.keys, self.state, self.registers,
                                             self._ints, self._floats, count, self._out)
            answers = self._out[:count].tolist()
        return list(map(WindowStats, answers))

    def apply(self, observations: Sequence[Observation], now: float) -> None:
        """`observe` without the answers (outcome feedback): the kernel skips writing stats rows."""
        batch = self._ints.shape[0]
        for start in range(0, len(observations), batch):
            chunk = observations[start:start + batch]
            ints, floats = _rows(chunk, now)
            pack_ints, pack_floats = _packers(len(chunk))
            with self._lock:
                pack_ints(self._ints_bytes, 0, *ints)
                pack_floats(self._floats_bytes, 0, *floats)
                self.evictions += observe_events(self.keys, self.state, self.registers,
                                                 self._ints, self._floats, len(chunk), self._out[:0])

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


@functools.cache
def _packers(count: int) -> tuple[Any, Any]:
    """pack_into for `count` int rows and float rows, in native byte order like numpy's.

    (The answers come out with tolist(): unpacking them with a struct measured no faster.)
    """
    return (struct.Struct(f"={count * EV_INT_WIDTH}q").pack_into,
            struct.Struct(f"={count * EV_FLOAT_WIDTH}d").pack_into)


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
