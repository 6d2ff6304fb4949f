"""Decision log: one JSON line per decision worth keeping, and lookup by reference id for `explain`."""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shieldware.decision import Decision, Verdict
from shieldware.logfile import DEFAULT_KEEP, LogFile, rotated_files

log = logging.getLogger("shieldware.decisions")


class DecisionLog:
    """Appends decisions as JSON lines to a file (one write per line, so nothing sits in a buffer
    when a process dies) and/or to the `shieldware.decisions` logger. By default only non-allow
    decisions and monitor-mode verdicts that would have acted are kept; `log_all` keeps every
    decision. The file follows logrotate and, past `max_bytes`, rotates itself (`keep` files
    before it; see shieldware/logfile.py): a flood refused thousands of times a second writes as
    many lines, and must not fill the disk.
    """

    def __init__(self, path: str | Path | None = None, log_all: bool = False, max_bytes: int = 0,
                 keep: int = DEFAULT_KEEP) -> None:
        self.path = Path(path) if path else None
        self.log_all = log_all
        self.max_bytes = max_bytes
        self.keep = keep
        self._file: LogFile | None = None
        self.lost = 0  # records the file could not be opened for
        self._lock = threading.Lock()
        self._extra_sinks: list[Any] = []

    def wants(self, decision: Decision) -> bool:
        return self.log_all or decision.verdict is not Verdict.ALLOW

    def write(self, decision: Decision) -> None:
        if not self.wants(decision) or not self._has_sink():
            return
        self.write_record(decision.as_log_record())

    def _has_sink(self) -> bool:
        # With no file and the logger off, encoding the line is wasted work; in monitor mode a
        # flood of would-be refusals makes that JSON the largest cost of a request.
        return self.path is not None or log.isEnabledFor(logging.INFO)

    def write_record(self, record: dict[str, Any]) -> None:
        """Write any record (decisions, allow/deny changes, switches) as one JSON line."""
        if not self._has_sink():
            return
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
        if log.isEnabledFor(logging.INFO):
            log.info(line)
        if self.path is None:
            return
        data = (line + "\n").encode("utf-8", "replace")
        with self._lock:
            if self._file is None:
                try:
                    self._file = LogFile(self.path, self.max_bytes, self.keep)
                except OSError as exc:  # a log must never fail the request it records
                    self.lost += 1
                    if self.lost == 1 or self.lost % 1000 == 0:
                        log.error("cannot open decision log %s (%s); %d records lost so far", self.path, exc,
                                  self.lost)
                    return
            self._file.write(data)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the records of one decision log file (gzip-compressed if it ends in .gz), skipping
    (not failing on) lines that are not JSON."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        try:
            for line in handle:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # a .gz cut short: keep what came before
            log.warning("decision log %s is damaged after some records (%s); the rest of it is skipped",
                        path, exc)


def log_files(path: str | Path) -> list[Path]:
    """A decision log and the files rotated from it, newest first; FileNotFoundError when none exists."""
    files = rotated_files(path)
    if not files:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    return files


def read_log(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a decision log and of the files rotated from it, oldest first."""
    for file in reversed(log_files(path)):
        yield from read_records(file)


def find_decision(path: str | Path, ref: str) -> dict[str, Any] | None:
    """The record with this reference id, in the log or a file rotated from it (ids are unique; the
    newest wins if a log was replayed)."""
    ref = ref.strip().lower()
    for file in log_files(path):
        found = None
        for record in read_records(file):
            if str(record.get("ref", "")).lower() == ref:
                found = record
        if found is not None:
            return found
    return None
