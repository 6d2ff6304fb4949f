"""memory:// — the embedded store for one process: window state in numpy, records in a dict."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shieldware.store.base import Observation, WindowStats
from shieldware.windows import WindowTable

DEFAULT_WINDOW_CAPACITY = 100_000


def capacity_from_uri(uri: str, default: int) -> int:
    """`memory://?capacity=500000` sets how many keys the window table holds."""
    query = parse_qs(urlsplit(uri).query)
    raw = query.get("capacity", [None])[0]
    if raw is None:
        return default
    try:
        capacity = int(raw)
    except ValueError:
        raise ValueError(f"store URI {uri!r}: capacity must be a whole number of keys, got {raw!r}") from None
    if capacity < 1:
        raise ValueError(f"store URI {uri!r}: capacity must be at least 1, got {capacity}")
    return capacity


class MemoryStore:
    """Window state in a fixed-capacity WindowTable; records with expiry in a dict.

    Both are guarded by locks, so threads and asyncio tasks of one process may share the store.
    Several processes (uvicorn workers) each get their own memory store: use redis:// there.

    Records are few and small (nonces, bans, switches), so expired ones are swept lazily when
    read and in bulk every `sweep_every` writes, keeping memory bounded without a timer.
    """

    def __init__(self, uri: str = "memory://", max_records: int = 1_000_000, sweep_every: int = 4096,
                 capacity: int | None = None) -> None:
        self.uri = uri
        self.windows = WindowTable(capacity or capacity_from_uri(uri, DEFAULT_WINDOW_CAPACITY))
        self.max_records = max_records
        self._sweep_every = sweep_every
        self._writes = 0
        self._records: dict[tuple[str, str], tuple[dict, float | None]] = {}
        self._lock = threading.Lock()

    async def observe(self, observations: Sequence[Observation], now: float) -> list[WindowStats]:
        """One kernel call for all of a request's observations (see shieldware.store.base)."""
        return self.windows.observe(observations, now)

    async def record(self, observations: Sequence[Observation], now: float) -> None:
        """Outcome feedback: the same update, no answer."""
        self.windows.apply(observations, now)

    def _sweep(self, now: float) -> None:
        expired = [k for k, (_, until) in self._records.items() if until is not None and until <= now]
        for k in expired:
            del self._records[k]
        if len(self._records) > self.max_records:
            # Still over the cap after expiry: drop the records that expire soonest.
            by_expiry = sorted(self._records, key=lambda k: self._records[k][1] or float("inf"))
            for k in by_expiry[: len(self._records) - self.max_records]:
                del self._records[k]

    def _put(self, kind: str, key: str, value: dict, ttl: float | None, now: float) -> None:
        self._records[(kind, key)] = (value, None if ttl is None else now + ttl)
        self._writes += 1
        if self._writes % self._sweep_every == 0 or len(self._records) > self.max_records:
            self._sweep(now)

    def _get(self, kind: str, key: str, now: float) -> dict | None:
        entry = self._records.get((kind, key))
        if entry is None:
            return None
        value, until = entry
        if until is not None and until <= now:
            del self._records[(kind, key)]
            return None
        return value

    async def put_record(self, kind: str, key: str, value: dict, ttl: float | None, now: float) -> None:
        with self._lock:
            self._put(kind, key, value, ttl, now)

    async def get_record(self, kind: str, key: str, now: float) -> dict | None:
        with self._lock:
            return self._get(kind, key, now)

    async def delete_record(self, kind: str, key: str) -> bool:
        with self._lock:
            return self._records.pop((kind, key), None) is not None

    async def list_records(self, kind: str, now: float) -> dict[str, dict]:
        with self._lock:
            return {k: v for (knd, k) in list(self._records) if knd == kind
                    and (v := self._get(knd, k, now)) is not None}

    async def claim_once(self, kind: str, key: str, ttl: float, now: float) -> bool:
        with self._lock:
            if self._get(kind, key, now) is not None:
                return False
            self._put(kind, key, {"claimed_at": now}, ttl, now)
            return True

    async def health(self) -> dict[str, Any]:
        """In the process itself: always there."""
        return {"kind": "memory", "uri": self.uri, "reachable": True}

    async def close(self) -> None:
        with self._lock:
            self._records.clear()
