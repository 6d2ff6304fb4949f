"""MaxMind DB readers: opened once per file per process (C extension), checked at start, safe per lookup."""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import maxminddb
from maxminddb.errors import InvalidDatabaseError

from shieldware.netdb.paths import shipped_database

log = logging.getLogger("shieldware.network")

BUILTIN_HOSTING = "builtin:hosting"
# Opening only maps the file; corruption shows when records are decoded. Walking the first networks
# at start turns a broken file into an error at start, not on some customer's request; the bound
# keeps start-up fast for full City databases (the shipped hosting database walks in ~0.15 s).
VERIFY_NETWORKS = 20_000


class NetworkDatabaseError(RuntimeError):
    """A configured network database is missing or unreadable; the message names the file."""


def resolve_path(path: str) -> Path:
    """`builtin:hosting` is the database shipped in geoip/; anything else is a file path."""
    return shipped_database() if path == BUILTIN_HOSTING else Path(path).expanduser()


@dataclass
class OpenDatabase:
    """One open MaxMind DB file. `get` answers None instead of raising, and counts what went wrong."""

    path: Path
    reader: Any
    database_type: str
    ip_version: int
    errors: int = 0
    _warned: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    def get(self, ip: str, ipv6: bool) -> dict | None:
        if ipv6 and self.ip_version == 4:
            return None  # an IPv4-only database has nothing to say about IPv6 clients
        try:
            record = self.reader.get(ip)
        except (InvalidDatabaseError, ValueError, TypeError, OSError) as exc:
            self._failed(ip, exc)
            return None
        return record if isinstance(record, dict) else None

    def get_with_network(self, ip: str, ipv6: bool) -> tuple[dict | None, int | None]:
        """The record and the prefix length of the network holding it (for `geoip lookup`)."""
        if ipv6 and self.ip_version == 4:
            return None, None
        try:
            record, prefix_len = self.reader.get_with_prefix_len(ip)
        except (InvalidDatabaseError, ValueError, TypeError, OSError) as exc:
            self._failed(ip, exc)
            return None, None
        return (record if isinstance(record, dict) else None), prefix_len

    def _failed(self, ip: str, exc: Exception) -> None:
        self.errors += 1
        if not self._warned:  # once per file: a corrupt record must not flood the log per request
            self._warned = True
            log.warning("network database %s failed a lookup (%s: %s); such lookups count as unknown",
                        self.path, type(exc).__name__, exc)


_OPEN: dict[tuple[str, int, int], OpenDatabase] = {}
_LOCK = threading.Lock()


def open_database(path: str | Path) -> OpenDatabase:
    """Open (or reuse) a MaxMind DB; NetworkDatabaseError names the file when it is missing or broken."""
    path = resolve_path(path) if isinstance(path, str) else path
    try:
        stat = path.stat()
    except OSError as exc:
        hint = " (run `shieldware geoip build` to rebuild it)" if path == shipped_database() else ""
        raise NetworkDatabaseError(
            f"network database {path}: cannot be read: {exc.strerror or exc}{hint}") from exc
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _LOCK:
        known = _OPEN.get(key)
        if known is not None:
            return known
        opened = _open_and_verify(path)
        _OPEN[key] = opened
        return opened


def _open_and_verify(path: Path) -> OpenDatabase:
    try:
        # MODE_AUTO picks the C extension (memory-mapped) whenever it is installed, as it is with the wheel.
        reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
    except (InvalidDatabaseError, ValueError, OSError) as exc:
        raise NetworkDatabaseError(f"network database {path}: not a valid MaxMind DB file ({exc})") from exc
    try:
        for _ in itertools.islice(reader, VERIFY_NETWORKS):
            pass
    except (InvalidDatabaseError, ValueError, TypeError) as exc:
        reader.close()
        raise NetworkDatabaseError(f"network database {path}: corrupt MaxMind DB, records cannot be read "
                                   f"({exc})") from exc
    metadata = reader.metadata()
    return OpenDatabase(path, reader, str(metadata.database_type), int(metadata.ip_version))
