"""Stores hold window state and small records; one is chosen by URI (memory://, redis://, ...)."""

from __future__ import annotations

from shieldware.store.base import Store, StoreUnavailable
from shieldware.store.memory import MemoryStore


def open_store(uri: str = "memory://") -> Store:
    """Open the store a URI names. Unknown schemes are a clear error, not a silent fallback."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "memory":
        return MemoryStore(uri)
    if scheme in _REDIS_SCHEMES:
        from shieldware.store.redis import RedisStore

        return RedisStore(uri)
    raise ValueError(f"unknown store URI {uri!r}: expected memory://, redis://host:port/db, rediss://, "
                     "unix:///path, redis+cluster://host:port,… or redis+sentinel://host:port,…/service")


_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel")


__all__ = ["MemoryStore", "Store", "StoreUnavailable", "open_store"]
