"""Bounded counting of int pairs across chunks: hits per client and path, per time bucket and client."""

from __future__ import annotations

import numpy as np


def _merge(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if keys.shape[0] == 0:
        return keys, counts
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.add.reduceat(counts, starts)


class PairCounter:
    """Counts of (high, low) int32 pairs packed in int64 keys, with memory bounded by `capacity`.

    Chunks are counted on their own and merged when the pending total passes the capacity.
    When the merged table is still over capacity, `coarsen` decides what to give up: by
    default the rarest pairs are dropped (they cannot be in any top list); a time series
    instead halves its resolution by merging neighbouring buckets.
    """

    def __init__(self, capacity: int = 2_000_000, coarsen_high: bool = False) -> None:
        self.capacity = capacity
        self.coarsen_high = coarsen_high
        self.scale = 1  # how many original high values one stored high value covers (time series)
        self.dropped = 0
        self._keys = np.zeros(0, dtype=np.int64)
        self._counts = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add_counts(self, high: np.ndarray, low: np.ndarray, counts: np.ndarray) -> None:
        """Add pre-counted pairs (`high` in original units)."""
        if high.shape[0] == 0:
            return
        keys = ((high.astype(np.int64) // self.scale) << 32) | low.astype(np.int64)
        keys, summed = _merge(keys, counts.astype(np.int64))
        self._pending.append((keys, summed))
        self._pending_size += keys.shape[0]
        if self._pending_size > self.capacity:
            self._flush()

    def add(self, high: np.ndarray, low: np.ndarray) -> None:
        if high.shape[0] == 0:
            return
        keys = ((high.astype(np.int64) // self.scale) << 32) | low.astype(np.int64)
        keys, counts = np.unique(keys, return_counts=True)
        self._pending.append((keys, counts.astype(np.int64)))
        self._pending_size += keys.shape[0]
        if self._pending_size > self.capacity:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys, *(k for k, _ in self._pending)])
        counts = np.concatenate([self._counts, *(c for _, c in self._pending)])
        self._pending, self._pending_size = [], 0
        keys, counts = _merge(keys, counts)
        while keys.shape[0] > self.capacity:
            if self.coarsen_high:
                high, low = keys >> 32, keys & 0xFFFFFFFF
                keys, counts = _merge(((high // 2) << 32) | low, counts)
                self.scale *= 2
            else:
                keep = np.argsort(counts, kind="stable")[keys.shape[0] - self.capacity // 2 :]
                keep.sort()
                self.dropped += int(keys.shape[0] - keep.shape[0])
                keys, counts = keys[keep], counts[keep]
        self._keys, self._counts = keys, counts

    def take(
        self, selected_low: np.ndarray, new_low: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Remove and return the pairs whose low value is selected; renumber the others' low values.

        `selected_low[low]` marks what to take out, `new_low[low]` is the new number of a kept one.
        """
        high, low, counts = self.table()
        chosen = selected_low[low]
        taken = (high[chosen], low[chosen], counts[chosen])
        kept = ~chosen
        keys = (high[kept] << 32) | new_low[low[kept]].astype(np.int64)
        self._keys, self._counts = _merge(keys, counts[kept])
        return taken

    def table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(high, low, count) arrays; `high` is in units of `scale` original values."""
        self._flush()
        return (self._keys >> 32).astype(np.int64), (self._keys & 0xFFFFFFFF).astype(np.int64), self._counts

    @property
    def nbytes(self) -> int:
        return self._keys.nbytes + self._counts.nbytes + sum(k.nbytes + c.nbytes for k, c in self._pending)
