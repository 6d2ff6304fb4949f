"""Metrics of several worker processes added up through a directory of snapshots.

`uvicorn --workers N` (and `shieldware proxy --workers N`) runs N processes behind one socket,
and each scrape of /.shieldware/metrics reaches one of them at random. Alone, each would show
its own share of the traffic, and Prometheus would see counters jump up and down between
scrapes. So every process writes its counters to DIR/<pid>-<token>.metrics.json every FLUSH_SECONDS
(and at exit), and the process that answers a scrape adds its own fresh counters to the other
files: every scrape shows the whole service.

A worker that ends leaves its file behind, so its counts stay in the totals: counters never go
down while the service runs. The directory must therefore start empty with each start of the
service (`shieldware proxy` makes and removes its own); the token keeps a new process that
reuses a dead one's pid from overwriting its counts.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import secrets
import tempfile
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shieldware.metrics import Metrics

log = logging.getLogger("shieldware.metrics")

METRICS_DIR_ENV = "SHIELDWARE_METRICS_DIR"
FLUSH_SECONDS = 2.0
SUFFIX = ".metrics.json"


class MetricsDirectory:
    """One process's place in a shared metrics directory: writes its snapshot, adds up everyone's."""

    def __init__(self, path: str | Path, metrics: Metrics, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"metrics directory {self.path} cannot be created: {exc}") from None
        self.own_file = self.path / f"{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        # A weak reference: the flusher thread must not keep a discarded Metrics (tests make many) alive.
        self._metrics = weakref.ref(metrics)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._warned: set[str] = set()
        self.flush()
        threading.Thread(target=self._flush_every, args=(flush_seconds,), name="shieldware-metrics-flush",
                         daemon=True).start()
        atexit.register(self.flush)

    def flush(self) -> None:
        """Write this process's counters (atomically: readers see the old file or the new one)."""
        metrics = self._metrics()
        if metrics is None:
            self._stop.set()
            return
        text = json.dumps(metrics.snapshot(), separators=(",", ":"))
        with self._lock:
            temporary = None
            try:
                fd, temporary = tempfile.mkstemp(dir=self.path, prefix=".partial-")
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(temporary, self.own_file)
            except OSError as exc:
                self._warn_once("write", f"cannot write metrics snapshot to {self.path}: {exc}")
                if temporary is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(temporary)

    def combined(self) -> Metrics:
        """This process's counters (fresh) plus every other process's last snapshot."""
        from shieldware.metrics import Metrics

        self.flush()
        total = Metrics()
        mine = self._metrics()
        if mine is not None:
            total.merge(mine.current())
        for file in sorted(self.path.glob(f"*{SUFFIX}")):
            if file == self.own_file:
                continue
            try:
                total.merge(Metrics.from_snapshot(json.loads(file.read_text(encoding="utf-8"))))
            except FileNotFoundError:
                continue  # removed while we listed: its owner cleaned up
            except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
                self._warn_once(file.name, f"metrics snapshot {file} left out of the totals: {exc}")
        return total

    def close(self) -> None:
        self._stop.set()

    def _flush_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.flush()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)
