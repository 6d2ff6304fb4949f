"""Columnar batches: a chunk of log lines as numpy arrays of times, statuses, sizes and interned ids."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shieldware.analyze.formats import JsonLayout, LogLayout, SplitLayout
from shieldware.analyze.scan import (
    COL_ADDR,
    COL_METHOD,
    COL_PATH,
    COL_REFERER,
    COL_UA,
    COL_XFF,
    scan_chunk,
)

MALFORMED_SAMPLES = 5


class Interner:
    """Distinct strings ↔ dense int ids. The fast path looks values up by the scanner's hash, so a
    string is decoded once per distinct value, not once per line."""

    __slots__ = ("_by_hash", "_by_text", "strings")

    def __init__(self) -> None:
        self.strings: list[str] = []
        self._by_text: dict[str, int] = {}
        self._by_hash: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.strings)

    def id_of(self, text: str) -> int:
        found = self._by_text.get(text)
        if found is None:
            found = self._by_text[text] = len(self.strings)
            self.strings.append(text)
        return found

    def ids_of_texts(self, texts: list[str]) -> np.ndarray:
        id_of = self.id_of
        return np.fromiter((id_of(t) for t in texts), dtype=np.int32, count=len(texts))

    def retain(self, keep: np.ndarray) -> np.ndarray:
        """Forget the values whose id is not marked in `keep`; returns the old → new id map (-1: gone).

        The analyzer calls this when it retires idle clients, so the address tables stay as
        small as the set of clients still being watched.
        """
        keep = np.asarray(keep, dtype=np.bool_)
        if keep.shape[0] < len(self.strings):
            keep = np.concatenate([keep, np.ones(len(self.strings) - keep.shape[0], dtype=np.bool_)])
        new_id = np.full(len(self.strings), -1, dtype=np.int64)
        new_id[keep] = np.arange(int(keep.sum()))
        self.strings = [text for text, kept in zip(self.strings, keep.tolist(), strict=True) if kept]
        self._by_text = {text: i for i, text in enumerate(self.strings)}
        self._by_hash = {h: int(new_id[i]) for h, i in self._by_hash.items() if new_id[i] >= 0}
        return new_id

    def ids_of_hashes(
        self, hashes: np.ndarray, starts: np.ndarray, ends: np.ndarray, raw: bytes
    ) -> np.ndarray:
        if hashes.shape[0] == 0:
            return np.zeros(0, dtype=np.int32)
        distinct, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        local = np.empty(distinct.shape[0], dtype=np.int32)
        by_hash = self._by_hash
        for j, h in enumerate(distinct.tolist()):
            found = by_hash.get(h)
            if found is None:
                row = first[j]
                text = raw[starts[row] : ends[row]].decode("utf-8", "replace")
                found = by_hash[h] = self.id_of(text)
            local[j] = found
        return local[inverse.reshape(-1)]


@dataclass
class Vocabulary:
    """The interners one analysis shares across all its batches."""

    addr: Interner = field(default_factory=Interner)
    xff: Interner = field(default_factory=Interner)
    method: Interner = field(default_factory=Interner)
    path: Interner = field(default_factory=Interner)
    user_agent: Interner = field(default_factory=Interner)


@dataclass
class LogBatch:
    """Parsed lines of one chunk (only the well-formed ones), as parallel arrays."""

    time: np.ndarray  # float64 epoch seconds
    status: np.ndarray  # int32
    size: np.ndarray  # int64
    addr: np.ndarray  # int32 ids into Vocabulary.addr (the peer address)
    xff: np.ndarray  # int32 ids into Vocabulary.xff ("" when absent)
    method: np.ndarray  # int32 ids
    path: np.ndarray  # int32 ids (query string cut off)
    user_agent: np.ndarray  # int32 ids ("" when absent)
    has_referer: np.ndarray  # bool
    referer_of: Any = None  # callable row → referer text (kept only for the rows asked about)

    def __len__(self) -> int:
        return int(self.time.shape[0])


@dataclass
class ParseStats:
    lines: int = 0
    malformed: int = 0
    samples: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # sources that broke off part-way, and why

    def note_malformed(self, text: str) -> None:
        self.malformed += 1
        if len(self.samples) < MALFORMED_SAMPLES:
            # Control bytes (a TLS handshake sent to the HTTP port) are shown escaped, not raw.
            shown = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text[:300])
            self.samples.append(shown)


def parse_chunk(chunk: bytes, layout: LogLayout, vocab: Vocabulary, stats: ParseStats) -> LogBatch:
    if isinstance(layout, SplitLayout):
        return _parse_split(chunk, layout, vocab, stats)
    return _parse_json(chunk, vocab, stats)


def _parse_split(chunk: bytes, layout: SplitLayout, vocab: Vocabulary, stats: ParseStats) -> LogBatch:
    buf = np.frombuffer(chunk, dtype=np.uint8)
    line_starts, line_ends, (ok, times, status, size, hashes, starts, ends) = scan_chunk(buf, layout)
    stats.lines += int(line_starts.shape[0])
    if not ok.all():
        bad = np.flatnonzero(~ok)
        for row in bad[:MALFORMED_SAMPLES].tolist():
            stats.note_malformed(chunk[line_starts[row] : line_ends[row]].decode("utf-8", "replace"))
        stats.malformed += int(bad.shape[0]) - min(int(bad.shape[0]), MALFORMED_SAMPLES)
        times, status, size = times[ok], status[ok], size[ok]
        hashes, starts, ends = hashes[ok], starts[ok], ends[ok]

    def column(interner: Interner, col: int) -> np.ndarray:
        return interner.ids_of_hashes(hashes[:, col], starts[:, col], ends[:, col], chunk)

    def referer_of(row: int) -> str:
        return chunk[starts[row, COL_REFERER] : ends[row, COL_REFERER]].decode("utf-8", "replace")

    return LogBatch(
        time=times,
        status=status,
        size=size,
        addr=column(vocab.addr, COL_ADDR),
        xff=column(vocab.xff, COL_XFF),
        method=column(vocab.method, COL_METHOD),
        path=column(vocab.path, COL_PATH),
        user_agent=column(vocab.user_agent, COL_UA),
        has_referer=ends[:, COL_REFERER] > starts[:, COL_REFERER],
        referer_of=referer_of,
    )


# ---- JSON lines ---------------------------------------------------------------------------------

_ADDR_KEYS = ("client_ip", "remote_addr", "remote_ip", "ip", "clientip")
_TIME_KEYS = ("time_iso8601", "time_local", "msec", "ts", "time", "timestamp", "@timestamp")
_UA_KEYS = ("http_user_agent", "user_agent", "useragent", "agent")
_REFERER_KEYS = ("http_referer", "referer", "referrer")
_XFF_KEYS = ("http_x_forwarded_for", "x_forwarded_for", "xff")
_SIZE_KEYS = ("body_bytes_sent", "bytes_sent", "size", "bytes")


def _first(record: dict, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = record.get(key)
        if value not in (None, "", "-"):
            return value
    return None


def _header(headers: Any, name: str) -> str:
    """Caddy logs request headers as {"User-Agent": ["..."]}."""
    if not isinstance(headers, dict):
        return ""
    value = headers.get(name)
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return str(value) if value else ""


def _json_time(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000.0 if value > 1e11 else float(value)  # epoch ms or s
    text = str(value)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        if "/" in text:
            return dt.datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z").timestamp()
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        return stamp.timestamp()
    except ValueError as exc:
        raise ValueError(f"unreadable time {text[:40]!r}") from exc


def json_fields(record: dict) -> tuple[float, str, str, str, str, int, int, str, str]:
    """(time, addr, xff, method, path, status, size, user agent, referer) of one JSON access record."""
    request = record.get("request")
    headers: Any = {}
    method = path = ""
    if isinstance(request, dict):  # Caddy
        headers = request.get("headers") or {}
        addr = request.get("client_ip") or request.get("remote_ip") or ""
        method = str(request.get("method") or "")
        path = str(request.get("uri") or "")
    else:
        addr = _first(record, _ADDR_KEYS) or ""
        if isinstance(request, str) and " " in request:
            method, _, rest = request.partition(" ")
            path = rest.rsplit(" ", 1)[0] if rest.count(" ") else rest
        else:
            method = str(record.get("request_method") or record.get("method") or "")
            path = str(record.get("request_uri") or record.get("uri") or record.get("path") or "")
    time_value = _first(record, _TIME_KEYS)
    if time_value is None or not addr:
        raise ValueError("no time or no client address")
    status = int(record.get("status") or 0)
    if not 100 <= status <= 999:
        # shieldware's decision log records decisions, not responses: it has no status.
        if "verdict" not in record:
            raise ValueError("no HTTP status")
        status = 0
    ua = _first(record, _UA_KEYS) or _header(headers, "User-Agent")
    referer = _first(record, _REFERER_KEYS) or _header(headers, "Referer")
    xff = _first(record, _XFF_KEYS) or _header(headers, "X-Forwarded-For")
    size_value = _first(record, _SIZE_KEYS)
    size = int(size_value) if str(size_value or "").isdigit() else 0
    return (
        _json_time(time_value),
        str(addr),
        str(xff or ""),
        method,
        path.split("?", 1)[0],
        status,
        size,
        str(ua or ""),
        str(referer or ""),
    )


def _parse_json(chunk: bytes, vocab: Vocabulary, stats: ParseStats) -> LogBatch:
    rows = []
    for raw_line in chunk.split(b"\n"):
        line = raw_line.strip()
        if not line:
            continue
        stats.lines += 1
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            rows.append(json_fields(record))
        except (ValueError, TypeError, AttributeError):
            stats.note_malformed(line.decode("utf-8", "replace"))
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in range(9)]
    times, addrs, xffs, methods, paths, statuses, sizes, uas, referers = columns
    referer_list = list(referers)
    return LogBatch(
        time=np.asarray(times, dtype=np.float64),
        status=np.asarray(statuses, dtype=np.int32),
        size=np.asarray(sizes, dtype=np.int64),
        addr=vocab.addr.ids_of_texts(list(addrs)),
        xff=vocab.xff.ids_of_texts(list(xffs)),
        method=vocab.method.ids_of_texts(list(methods)),
        path=vocab.path.ids_of_texts(list(paths)),
        user_agent=vocab.user_agent.ids_of_texts(list(uas)),
        has_referer=np.fromiter((bool(r) for r in referer_list), dtype=np.bool_, count=len(referer_list)),
        referer_of=referer_list.__getitem__,
    )


def layout_name(layout: LogLayout) -> str:
    return layout.name if isinstance(layout, (SplitLayout, JsonLayout)) else str(layout)


__all__ = ["Interner", "LogBatch", "ParseStats", "Vocabulary", "parse_chunk"]
