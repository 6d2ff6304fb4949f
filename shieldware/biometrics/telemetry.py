"""The collector's telemetry format (version 1): parse and validate a body into numpy arrays.

The format is documented in docs/telemetry.md. Parsing never trusts the client: every list
has a cap, every number must be finite and in range, and any problem raises TelemetryError
naming the field, which the endpoint answers with 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MAX_BODY_BYTES = 64 * 1024
# Per batch. The collector sends well under these; more is a client that is not ours.
MAX_POINTER = 4000
MAX_KEYS = 1000
MAX_SCROLL = 1000
MAX_TOUCH = 2000
MAX_FOCUS = 200
MAX_FILLS = 200
MAX_TIME_MS = 86_400_000.0  # a page open for more than a day is not a page
MAX_COORD = 100_000.0
ENV_FLAGS = ("webdriver", "headless", "outer_zero", "no_plugins", "no_languages")
MAX_GLOBALS = 16

# Each list: (field, columns, cap, column index → allowed integer codes)
_LISTS: tuple[tuple[str, int, int, dict[int, tuple[int, ...]]], ...] = (
    ("pointer", 4, MAX_POINTER, {3: (0, 1, 2, 3)}),
    ("keys", 2, MAX_KEYS, {}),
    ("scroll", 3, MAX_SCROLL, {}),
    ("touch", 4, MAX_TOUCH, {3: (0, 1, 2)}),
    ("focus", 2, MAX_FOCUS, {1: (0, 1, 2, 3)}),
    ("fills", 2, MAX_FILLS, {1: (0, 1)}),
)


class TelemetryError(ValueError):
    """A telemetry body is not valid version-1 telemetry; the message says which field and why."""


@dataclass(frozen=True)
class Telemetry:
    """One batch from the collector. Arrays are float64, sorted by their first column (time)."""

    pointer: np.ndarray          # [n, 4] t_ms, x, y, kind (0 move, 1 down, 2 up, 3 leave)
    keys: np.ndarray             # [n, 2] t_down_ms, t_up_ms
    scroll: np.ndarray           # [n, 3] t_ms, dx, dy
    touch: np.ndarray            # [n, 4] t_ms, x, y, kind (0 move, 1 start, 2 end)
    focus: np.ndarray            # [n, 2] t_ms, kind (0 blur, 1 focus, 2 hidden, 3 visible)
    fills: np.ndarray            # [n, 2] t_ms, kind (0 paste, 1 value changed with no key pressed)
    env: dict[str, Any] = field(default_factory=dict)
    page: str = ""
    seq: int = 0
    age_ms: float | None = None  # how long the page had been open when the batch left (`t`)

    @property
    def events(self) -> int:
        return int(len(self.pointer) + len(self.keys) + len(self.scroll) + len(self.touch))


def _rows(raw: Any, name: str, columns: int, cap: int, codes: dict[int, tuple[int, ...]]) -> np.ndarray:
    if raw is None:
        return np.zeros((0, columns))
    if not isinstance(raw, list):
        raise TelemetryError(f"{name}: expected a list of [{columns} numbers] rows, got {type(raw).__name__}")
    if len(raw) > cap:
        raise TelemetryError(f"{name}: {len(raw)} rows, more than the {cap} a batch may carry")
    if not raw:
        return np.zeros((0, columns))
    for i, row in enumerate(raw):
        if not isinstance(row, list) or len(row) != columns or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
            shown = json.dumps(row)[:60]
            raise TelemetryError(f"{name}[{i}]: expected a row of {columns} numbers, got {shown}")
    try:
        table = np.array(raw, dtype=np.float64)
    except OverflowError:
        raise TelemetryError(f"{name}: numbers must be finite") from None
    if not np.isfinite(table).all():
        raise TelemetryError(f"{name}: numbers must be finite")
    if (table[:, 0] < 0).any() or (table[:, 0] > MAX_TIME_MS).any():
        raise TelemetryError(f"{name}: times must be milliseconds since the page loaded "
                             f"(0..{MAX_TIME_MS:.0f})")
    if name in ("pointer", "touch") and (np.abs(table[:, 1:3]) > MAX_COORD).any():
        raise TelemetryError(f"{name}: coordinates beyond ±{MAX_COORD:.0f} px")
    if name == "keys" and (table[:, 1] < table[:, 0]).any():
        raise TelemetryError("keys: a key went up before it went down (t_up_ms < t_down_ms)")
    for column, allowed in codes.items():
        if not np.isin(table[:, column], allowed).all():
            raise TelemetryError(f"{name}: column {column} must be one of {list(allowed)}")
    order = np.argsort(table[:, 0], kind="stable")
    return table[order]


def _env(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TelemetryError(f"env: expected an object of flags, got {type(raw).__name__}")
    env: dict[str, Any] = {}
    for name in ENV_FLAGS:
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise TelemetryError(f"env.{name}: expected true or false, got {json.dumps(value)[:40]}")
        env[name] = value
    found = raw.get("globals")
    if found is not None:
        if (not isinstance(found, list) or len(found) > MAX_GLOBALS
                or not all(isinstance(g, str) and 0 < len(g) <= 40 for g in found)):
            raise TelemetryError(f"env.globals: expected up to {MAX_GLOBALS} global names (strings)")
        env["globals"] = sorted(set(found))
    return env


def parse_telemetry(body: Any) -> Telemetry:
    """Validate a version-1 telemetry body; raise TelemetryError with the reason if it is not."""
    if isinstance(body, dict):
        raw = body
    elif not isinstance(body, (bytes, str)):
        raise TelemetryError(f"body must be a JSON object, got {type(body).__name__}")
    else:
        if len(body) > MAX_BODY_BYTES:
            raise TelemetryError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TelemetryError(f"body is not JSON ({exc})") from None
        except RecursionError:
            raise TelemetryError("body is nested too deeply to be telemetry") from None
    if not isinstance(raw, dict):
        raise TelemetryError("body must be a JSON object")
    if raw.get("v") != FORMAT_VERSION:
        got = raw.get("v")
        raise TelemetryError(f"v: expected {FORMAT_VERSION} (the telemetry format version), got {got!r}")
    tables = {name: _rows(raw.get(name), name, columns, cap, codes) for name, columns, cap, codes in _LISTS}
    page = raw.get("page", "")
    if not isinstance(page, str):
        raise TelemetryError("page: expected the page path as a string")
    seq = raw.get("seq", 0)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 1_000_000:
        raise TelemetryError("seq: expected the batch number, a small non-negative integer")
    age = raw.get("t")
    if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float))
                            or not 0 <= age <= MAX_TIME_MS):
        raise TelemetryError("t: expected the milliseconds the page had been open when the batch was sent")
    return Telemetry(env=_env(raw.get("env")), page=page[:200], seq=seq,
                     age_ms=None if age is None else float(age), **tables)
