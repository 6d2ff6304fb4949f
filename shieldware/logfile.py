"""Append-only log files that follow logrotate and can cap their own size.

shieldware's logs (the decision log, the proxy's access log) are written by long-running
processes, often several workers at once, and grow with traffic: a flood that is refused
thousands of times a second writes thousands of lines a second. Two things keep a log from
filling the disk or being written into a file nobody reads:

- Rotation by someone else (logrotate's default: rename the file, a new one is made) is noticed
  within `check_every` seconds: the path is looked up again and, when it names another file or
  none, it is opened afresh. No signal or restart is needed, and no `copytruncate`.
- `max_bytes` (0: no cap) rotates the file here: `path` becomes `path.1`, `path.1` becomes
  `path.2` and so on up to `path.<keep>`, the oldest dropped. Workers sharing the log take a lock
  file (`path.lock`) and look again before rotating, so a full log is rotated once, not once per
  worker; the others follow at their next check.

Every `write` is one write() with O_APPEND, so lines of different workers never interleave.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_KEEP = 5
log = logging.getLogger("shieldware.logfile")


class LogFile:
    """One append-only log file (see the module docstring); "-" is standard output."""

    def __init__(self, path: str | Path, max_bytes: int = 0, keep: int = DEFAULT_KEEP,
                 clock: Callable[[], float] = time.monotonic, check_every: float = 1.0) -> None:
        if max_bytes < 0 or keep < 1:
            raise ValueError(f"a log cap needs max_bytes >= 0 and keep >= 1 (got {max_bytes}, {keep})")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.clock = clock
        self.check_every = check_every
        self.rotations = 0  # rotations this writer made itself
        self.failed_writes = 0
        self._warned = float("-inf")
        self._fd = -1
        self._checked = clock()
        if str(path) == "-":  # standard output: nothing to follow or rotate
            self.max_bytes, self.check_every = 0, float("inf")
            self._fd = os.dup(1)
        else:
            self._open()

    def write(self, data: bytes) -> bool:
        """Append `data`; False when the disk refused it (full, gone, no permission). A log
        must never fail the request it describes: the failure is counted and said in a
        warning at most once a minute instead of raised."""
        now = self.clock()
        try:
            if now - self._checked >= self.check_every:
                self._checked = now
                self._follow()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            # The file's own size, other workers' lines included (one fstat, only when capped).
            if self.max_bytes and os.fstat(self._fd).st_size >= self.max_bytes:
                self._rotate()
        except OSError as exc:
            self.failed_writes += 1
            if now - self._warned >= 60.0:
                self._warned = now
                log.warning("cannot write log %s (%s); %d writes lost so far", self.path, exc, self.failed_writes)
            return False
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd

    def _is_current(self) -> bool:
        """Whether the path still names the file this writer holds open."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(self._fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def _follow(self) -> None:
        """Open the path again if it was rotated away (by logrotate, or by another worker)."""
        if not self._is_current():
            self._open()

    def _rotate(self) -> None:
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if self._is_current() and os.fstat(self._fd).st_size >= self.max_bytes:
                for n in range(self.keep - 1, 0, -1):
                    older = Path(f"{self.path}.{n}")
                    if older.exists():
                        older.replace(f"{self.path}.{n + 1}")
                self.path.replace(f"{self.path}.1")
                self.rotations += 1
            self._open()  # the new file, or the one another worker's rotation left
        self._checked = self.clock()


def check_writable(path: str | Path, what: str = "log") -> None:
    """Open (or create) the log once, so a path that cannot be written is said at start-up, not
    found out on the first request; ValueError naming the path and the reason."""
    try:
        LogFile(path).close()
    except OSError as exc:
        raise ValueError(f"cannot write the {what} {path}: {exc.strerror or exc}") from exc


def rotated_files(path: str | Path) -> list[Path]:
    """A log and the files rotated from it (ours: `path.1` ...; logrotate's may end in `.gz`),
    newest first, those that exist."""
    path = Path(path)
    found = [path] if path.exists() else []
    n = 1
    while True:
        candidates = [Path(f"{path}.{n}"), Path(f"{path}.{n}.gz")]
        present = [c for c in candidates if c.exists()]
        if not present:
            return found
        found.extend(present)
        n += 1
