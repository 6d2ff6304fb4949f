"""Decision log: one JSON line per decision worth keeping, and lookup by reference id for `explain`."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from shieldware.decision import Decision, Verdict

log = logging.getLogger("shieldware.decisions")


class DecisionLog:
    """Appends decisions as JSON lines to a file (line-buffered, so nothing sits in a buffer when a
    process dies) and/or to the `shieldware.decisions` logger. By default only non-allow decisions
    and monitor-mode verdicts that would have acted are kept; `log_all` keeps every decision.
    """

    def __init__(self, path: str | Path | None = None, log_all: bool = False) -> None:
        self.path = Path(path) if path else None
        self.log_all = log_all
        self._file: IO[str] | None = None
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
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8", buffering=1)
            self._file.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the records of a decision log, skipping (not failing on) lines that are not JSON."""
    with Path(path).open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def find_decision(path: str | Path, ref: str) -> dict[str, Any] | None:
    """The last record with this reference id (ids are unique; the last wins if a log was replayed)."""
    ref = ref.strip().lower()
    found = None
    for record in read_records(path):
        if str(record.get("ref", "")).lower() == ref:
            found = record
    return found
