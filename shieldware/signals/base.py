"""The signal protocol and the per-request Inspection that signals read from and write to."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, runtime_checkable

from shieldware.evidence import Evidence, Weights
from shieldware.facts import RequestFacts


class Inspection:
    """Scratch space for one request while the engine runs the signals.

    Signals publish attributes others (and policy rules) can use — `ua.category`,
    `fingerprint`, `net.asn` — and add evidence. `observations` are the window keys the
    signals want observed in the store's single round trip; `stats` holds the answer.
    """

    __slots__ = ("attrs", "demands", "evidence", "facts", "group", "observations", "policy", "stats", "weights")

    def __init__(self, facts: RequestFacts, group: Any, weights: Weights, policy: Any = None) -> None:
        self.facts = facts
        self.group = group
        self.weights = weights
        self.policy = policy
        self.attrs: dict[str, Any] = {}
        self.evidence: list[Evidence] = []
        self.observations: list[Any] = []
        self.stats: Any = None
        self.demands: list[tuple[Any, float | None]] = []

    def add(self, code: str, **detail: Any) -> Evidence:
        """Add evidence with the weight the catalogue and policy give this code."""
        item = Evidence(code, self.weights(code), detail)
        self.evidence.append(item)
        return item

    def demand(self, verdict: Any, retry_after: float | None = None) -> None:
        """Ask for at least this verdict whatever the score (a hard rate limit wants THROTTLE)."""
        self.demands.append((verdict, retry_after))

    def add_weighted(self, code: str, weight: float, **detail: Any) -> Evidence:
        """Add evidence whose weight the signal computed (e.g. scaled by how far over a limit)."""
        item = Evidence(code, weight, detail)
        self.evidence.append(item)
        return item


@runtime_checkable
class Signal(Protocol):
    """A signal family. `name` is what a route group's `skip_signals` refers to.

    `inspect` runs before the store round trip and may queue observations; signals that
    need window state also define `assess(facts, inspection)`, run after `inspection.stats`
    is filled; those that learn from outcomes define `feedback(...)`. An `inspect` that needs one
    record first (the session's telemetry verdict) returns an awaitable; the engine awaits it
    before the store round trip. Returning None (the usual case) costs nothing.
    """

    name: str

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> Awaitable[Any] | None: ...


def signal_names(signals: Sequence[Signal]) -> list[str]:
    return [s.name for s in signals]
