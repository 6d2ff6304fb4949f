"""The store protocol: window state and small records, the same contract for memory:// and redis://."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


class StoreUnavailable(RuntimeError):
    """The store could not answer in time. The engine applies the route group's fail mode."""


@runtime_checkable
class Store(Protocol):
    """What the engine needs from a store.

    `observe` is the one call a request makes: record these observations at `now` and return
    their window statistics. Records (challenge nonces, bans, allow entries, switches) are small
    JSON-able dicts with a time to live, addressed by (kind, key).
    """

    uri: str

    async def observe(self, observations: Sequence[Any], now: float) -> Any: ...

    async def put_record(self, kind: str, key: str, value: dict, ttl: float | None, now: float) -> None: ...

    async def get_record(self, kind: str, key: str, now: float) -> dict | None: ...

    async def delete_record(self, kind: str, key: str) -> bool: ...

    async def list_records(self, kind: str, now: float) -> dict[str, dict]: ...

    async def claim_once(self, kind: str, key: str, ttl: float, now: float) -> bool:
        """True the first time (kind, key) is claimed within ttl, False on every later try."""
        ...

    async def close(self) -> None: ...
