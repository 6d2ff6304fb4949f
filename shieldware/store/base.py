"""The store protocol: window observations and small records, the same contract for memory:// and redis://.

Windows: one call per request
-----------------------------
A request costs the store ONE call, ``await store.observe(observations, now)``. Each
:class:`Observation` names a key — ``(kind, key)``, e.g. ``("ip", "203.0.113.7")``,
``("account", "alice")``, ``("rate.ip", "product|203.0.113.7")`` — and says what this event
does to that key's windows. The store updates every key in order at ``now`` and answers a list
of :class:`WindowStats`, one per observation, in the same order. A signal remembers the index
of the observations it queued in ``inspection.observations`` and reads its answers from
``inspection.stats`` in ``assess``.

Every key owns the same fixed set of window families (so a slot is a fixed-size record, a
Redis hash or a numpy row), and an observation says which of them this event touches:

================  ==================================================================  =====================
family            what an observation does                                            answer (WindowStats)
================  ==================================================================  =====================
counters          adds ``count`` to sliding counters over ``COUNTER_HORIZONS``         ``counts[h]``
                  (weighted previous/current bucket per horizon)
rate limits       ``limits`` (≤ ``MAX_LIMITS`` :class:`Rate` s) checked with GCRA; the   ``retry_after``
                  event is charged only if every limit conforms
timing            ``timing=True`` feeds the gap since the key's previous timed event    ``gaps``,
                  into decayed mean/variance over ``TIMING_SPANS`` (events)             ``gap_mean[s]``,
                                                                                      ``gap_std[s]``
distinct          ``distinct[i]`` (a string, or None) is added to HyperLogLog sketch i  ``distinct[i]``
                  (``DISTINCT_SKETCHES`` of them, ``HLL_REGISTERS`` registers each)
ratios            bit i of ``seen`` adds 1 to ratio channel i's denominator, bit i of   ``ratio[c][s]``,
                  ``hits`` adds 1 to its numerator; both decay (``RATIO_HALF_LIVES``)  ``ratio_weight[c][s]``
steps             ``step`` (an integer 0 ≤ step < ``MAX_STEP``, e.g. a product id) is  ``follows``
                  remembered among the key's last ``STEP_MEMORY`` steps of the visit;
                  the answer says whether ``step - 1`` (or, with ``step_gap`` g > 1, any
                  of ``step - g`` .. ``step - 1``) was among them before it and
                  ``step`` was not (a step forward, not a revisit); when
                  it was, bit i of ``follow_hits`` adds 1 to ratio channel i's
                  numerator (a share of steps that followed, counted in the same call)
================  ==================================================================  =====================

Which ratio channel or sketch means what is the *caller's* convention per key kind (traffic
uses channel 0 = "answered 4xx", 1 = "static asset", ...; account signals may use channel 0 =
"login failed"). Keep the convention in one module per key kind.

Time per key only moves forward: an event older than the key's latest event counts at that
latest time (clock skew between workers, log lines a few ms out of order). A gap longer than
``VISIT_GAP`` seconds since the key was last seen starts a new *visit*: the timing moments,
the distinct sketches and the remembered steps restart (counters and ratios decay on their own).

An observation that changes nothing (``count=0``, no timing, items, ratio bits, limits or step)
is a *pure lookup*. For a key that has windows it reads them (and moves the key's clock); for a
key that has none it answers an empty key's stats and creates nothing, so a question about a key
never spends a table slot (or evicts a key that has windows).

Feedback: outcomes after the response
-------------------------------------
``await store.record(observations, now)`` applies observations without answering. A 404 fed
back for an IP is ``Observation("ip", ip, count=0, hits=1 << PROBE_CHANNEL)``; a failed login
is ``Observation("account.fail", "alice")`` (its counters count failures) or a ratio hit on
the account key. A Redis store may pipeline ``record`` without waiting for the reply.

Redis implementation notes
--------------------------
``Observation`` travels as its numbers packed in one binary string and its distinct items
(see ``shieldware/store/redis.py``), and ``WindowStats`` is built from a flat list of floats in
``STATS_FIELDS`` order (``WindowStats.from_row``), so a single Lua script can take all of a
request's observations as ARGV and return one flat array. Each store hashes keys and distinct
items with a 64-bit hash of its choice (the memory store uses Python's per-process string hash;
Redis keys are the strings themselves). The memory store's kernels
(``shieldware/windows/``) are the reference semantics; their Python references in
``shieldware/windows/reference.py`` are the readable specification.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

# ---- the fixed window layout every store implements -------------------------------------------

COUNTER_HORIZONS: tuple[float, ...] = (10.0, 60.0, 600.0, 3600.0)
"""Sliding-counter horizons in seconds: burst, minute, sustained, hour."""

TIMING_SPANS: tuple[float, ...] = (8.0, 32.0)
"""Inter-arrival moments decay per event with alpha = 2/(span+1): recent regularity and longer."""

RATIO_HALF_LIVES: tuple[float, ...] = (60.0, 1800.0)
"""Decayed ratios: half-lives in seconds (short, long)."""

RATIO_CHANNELS = 4
DISTINCT_SKETCHES = 2
HLL_REGISTERS = 64  # 64 one-byte registers: about 13% standard error, 64 bytes per sketch
MAX_LIMITS = 2
VISIT_GAP = 1800.0
"""Seconds of silence after which a key's timing moments, sketches and steps restart."""
STEP_MEMORY = 7
"""Steps a key remembers: "was the previous product id among this IP's last 7 product pages?"
(7, with the ring's position, keeps a key's state at exactly six 64-byte cache lines)."""
MAX_STEP = 1 << 52
"""Steps are kept as float64 like all window state, exact below 2**53; larger ones are ignored."""


class Rate(NamedTuple):
    """A hard limit, ``count`` events per ``period`` seconds, enforced with GCRA.

    GCRA with emission interval ``period / count`` and burst ``count``: ``10/s`` lets ten requests
    through at once, then one every 100 ms; a refused event is not charged, and
    ``retry_after`` is the exact wait until the next event would conform.
    """

    count: int
    period: float

    @property
    def interval(self) -> float:
        return self.period / self.count

    def __str__(self) -> str:
        for name, seconds in _PERIOD_NAMES.items():
            if seconds == self.period:
                return f"{self.count}/{name}"
        return f"{self.count}/{self.period:g}s"


_PERIOD_NAMES = {"s": 1.0, "min": 60.0, "h": 3600.0, "day": 86400.0}
_PERIOD_ALIASES = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0,
                   "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}
_RATE_TEXT = re.compile(r"\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]+)\s*\Z")


def parse_rate(text: str) -> Rate:
    """``"10/s"``, ``"300/min"``, ``"1000/hour"``, ``"50/10s"`` → Rate; ValueError says what is wrong."""
    match = _RATE_TEXT.match(str(text).lower())
    if match is None:
        raise ValueError(f"{text!r} is not a rate; expected COUNT/PERIOD like 10/s, 300/min or 50/10s")
    count, multiple, unit = int(match.group(1)), match.group(2), match.group(3)
    if unit not in _PERIOD_ALIASES and unit.endswith("s"):
        unit = unit[:-1]  # plurals: "minutes", "hours"
    seconds = _PERIOD_ALIASES.get(unit)
    if seconds is None:
        raise ValueError(f"{text!r}: unknown period {unit!r}; expected s, min, hour or day")
    period = seconds * (float(multiple) if multiple else 1.0)
    if count <= 0 or period <= 0 or not math.isfinite(period):
        raise ValueError(f"{text!r}: count and period must be positive")
    return Rate(count, period)


class Observation(NamedTuple):
    """One event for one key: which window families it updates (see the module docstring).

    ``kind`` is a short namespace (``ip``, ``net``, ``fp``, ``session``, ``account``,
    ``rate.ip``...) and ``key`` the value within it; a store hashes the pair to a slot.
    A NamedTuple rather than a dataclass: requests build several, and tuples are cheap.
    """

    kind: str
    key: str
    count: float = 1.0
    timing: bool = False
    distinct: tuple[str | None, ...] = ()
    seen: int = 0
    hits: int = 0
    limits: tuple[Rate, ...] = ()
    step: int | None = None
    follow_hits: int = 0
    step_gap: int = 1  # 1 to MAX_STEP_GAP: how far below `step` the remembered step may be


MAX_STEP_GAP = 8
"""The widest gap a step may follow across: the stores carry step_gap - 1 in three bits."""


def gap_bits(step_gap: int) -> int:
    """step_gap - 1 as the stores carry it (a gap outside 1..MAX_STEP_GAP is clamped to it)."""
    return min(max(step_gap, 1), MAX_STEP_GAP) - 1


def follow_arg(follow_hits: int, step_gap: int, marker: int) -> int:
    """follow_hits and the step's gap in one number, as the Lua script takes them: follow_hits +
    256 * (step_gap - 1), the gap only with a step (an observation without one stays a lookup)."""
    return (follow_hits & 0xFF) | (gap_bits(step_gap) << 8 if marker else 0)


def step_marker(step: int | None) -> int:
    """How stores carry a step: step + 1, and 0 for none (no step, or one outside 0..MAX_STEP-1)."""
    if step is None or not 0 <= step < MAX_STEP:
        return 0
    return step + 1


STATS_FIELDS: tuple[str, ...] = (
    *(f"count_{int(h)}s" for h in COUNTER_HORIZONS),
    "gaps",
    *(f"gap_mean_{int(s)}" for s in TIMING_SPANS),
    *(f"gap_std_{int(s)}" for s in TIMING_SPANS),
    *(f"distinct_{i}" for i in range(DISTINCT_SKETCHES)),
    *(f"ratio_{c}_{int(h)}s" for c in range(RATIO_CHANNELS) for h in RATIO_HALF_LIVES),
    *(f"ratio_weight_{c}_{int(h)}s" for c in range(RATIO_CHANNELS) for h in RATIO_HALF_LIVES),
    "retry_after",
    "visit_start",
    "total",
    "follows",
)
"""The flat answer row, in order. ``total`` is the sum of ``count`` since the key got its slot;
``follows`` is 1.0 when the event's step came right after one the key remembered and was not itself
remembered (a step forward), else 0.0."""

_N_COUNTS = len(COUNTER_HORIZONS)
_N_SPANS = len(TIMING_SPANS)
_N_HL = len(RATIO_HALF_LIVES)
_GAPS = _N_COUNTS
_MEAN = _GAPS + 1
_STD = _MEAN + _N_SPANS
_DISTINCT = _STD + _N_SPANS
_RATIO = _DISTINCT + DISTINCT_SKETCHES
_WEIGHT = _RATIO + RATIO_CHANNELS * _N_HL
_RETRY = _WEIGHT + RATIO_CHANNELS * _N_HL
assert STATS_FIELDS[_RETRY] == "retry_after"


class WindowStats(tuple):
    """The answer for one observation: a flat row of floats in ``STATS_FIELDS`` order with names.

    Index ``h`` of counts follows COUNTER_HORIZONS, ``s`` of gaps follows TIMING_SPANS, ``c`` is
    the ratio channel and ``s`` its half-life index in RATIO_HALF_LIVES.
    """

    __slots__ = ()

    @classmethod
    def from_row(cls, row: Sequence[float]) -> WindowStats:
        return cls(row)

    def count(self, horizon: int) -> float:
        return self[horizon]

    @property
    def gaps(self) -> int:
        return int(self[_GAPS])

    def gap_mean(self, span: int = 0) -> float:
        return self[_MEAN + span]

    def gap_std(self, span: int = 0) -> float:
        return self[_STD + span]

    def gap_cv(self, span: int = 0) -> float | None:
        """Coefficient of variation of inter-arrival gaps; None while undefined (mean 0)."""
        mean = self[_MEAN + span]
        return self[_STD + span] / mean if mean > 0 else None

    def distinct(self, sketch: int) -> float:
        return self[_DISTINCT + sketch]

    def ratio(self, channel: int, half_life: int = 0) -> float:
        return self[_RATIO + channel * _N_HL + half_life]

    def ratio_weight(self, channel: int, half_life: int = 0) -> float:
        """The decayed denominator behind ``ratio``: how much evidence the share rests on."""
        return self[_WEIGHT + channel * _N_HL + half_life]

    @property
    def retry_after(self) -> float:
        """0 when every limit conformed (and the event was charged), else seconds to wait."""
        return self[_RETRY]

    @property
    def visit_start(self) -> float:
        return self[_RETRY + 1]

    @property
    def total(self) -> float:
        return self[_RETRY + 2]

    @property
    def follows(self) -> bool:
        """Whether this event's step followed one of the key's remembered steps (see ``steps``)."""
        return self[_RETRY + 3] > 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(zip(STATS_FIELDS, self, strict=True))


class StoreUnavailable(RuntimeError):
    """The store could not answer in time. The engine applies the route group's fail mode."""


def shown_uri(uri: str) -> str:
    """A store URI as errors, banners and the health page show it: any password as ``***``.

    A Redis URI may carry the server's password (``redis://:secret@host``, ``?password=...``), and
    a store's errors reach the decision log as evidence, which support staff read and share."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    end = len(rest)
    for mark in "/?#":
        at = rest.find(mark)
        if at >= 0:
            end = min(end, at)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at_sign, hosts = netloc.rpartition("@")
    if at_sign and ":" in userinfo:
        netloc = userinfo.split(":", 1)[0] + ":***@" + hosts
    path, qmark, query = tail.partition("?")
    if qmark:
        fields = []
        for field in query.split("&"):
            name, equals, _ = field.partition("=")
            fields.append(f"{name}=***" if equals and "password" in name.lower() else field)
        tail = path + "?" + "&".join(fields)
    return f"{scheme}://{netloc}{tail}"


@runtime_checkable
class Store(Protocol):
    """What the engine needs from a store.

    `observe` is the one call a request makes: record these observations at `now` and return
    their window statistics (a list of WindowStats, same order). `record` applies outcome
    feedback without an answer. Records (challenge nonces, bans, allow entries, switches) are
    small JSON-able dicts with a time to live, addressed by (kind, key).
    """

    uri: str

    async def observe(self, observations: Sequence[Observation], now: float) -> list[WindowStats]: ...

    async def record(self, observations: Sequence[Observation], now: float) -> None: ...

    async def put_record(self, kind: str, key: str, value: dict, ttl: float | None, now: float) -> None: ...

    async def get_record(self, kind: str, key: str, now: float) -> dict | None: ...

    async def delete_record(self, kind: str, key: str) -> bool: ...

    async def list_records(self, kind: str, now: float) -> dict[str, dict]: ...

    async def claim_once(self, kind: str, key: str, ttl: float, now: float) -> bool:
        """True the first time (kind, key) is claimed within ttl, False on every later try."""
        ...

    async def health(self) -> dict[str, Any]:
        """Whether the store answers now, for the health endpoint: ``kind``, ``uri`` (as
        `shown_uri` shows it), ``reachable``, and while it is not, ``error`` saying why."""
        ...

    async def close(self) -> None: ...
