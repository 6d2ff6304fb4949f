"""Stores hold window state and small records; one is chosen by URI (memory://, redis://, ...)."""

from __future__ import annotations

from shieldware.store.base import Store, StoreUnavailable, shown_uri
from shieldware.store.memory import MemoryStore, capacity_from_uri


def open_store(uri: str = "memory://") -> Store:
    """Open the store a URI names. Unknown schemes are a clear error, not a silent fallback."""
    scheme = check_store_uri(uri)
    if scheme == "memory":
        return MemoryStore(uri)
    from shieldware.store.redis import RedisStore

    return RedisStore(uri)


def check_store_uri(uri: str) -> str:
    """The URI's scheme, once its form is checked; a ValueError that names the URI and what is wrong
    otherwise. Nothing is connected to: a policy check or a command line can ask before serving, and
    a typo never becomes a traceback in every worker, or a silent default."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "memory":
        capacity_from_uri(uri, 1)
        return scheme
    if scheme in _REDIS_SCHEMES:
        from shieldware.store.redis import parse_redis_uri

        parse_redis_uri(uri)
        return scheme
    raise ValueError(f"unknown store URI {shown_uri(uri)!r}: expected memory://, redis://host:port/db, rediss://, "
                     "unix:///path, redis+cluster://host:port,… or redis+sentinel://host:port,…/service")


_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel")


__all__ = ["MemoryStore", "Store", "StoreUnavailable", "check_store_uri", "open_store", "shown_uri"]
