"""Prometheus metrics: decisions by verdict, group and reason; score and latency histograms."""

from __future__ import annotations

from typing import ClassVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE

from shieldware.decision import Decision

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Metrics"]


class Metrics:
    """One set of metric families per registry. `Metrics.shared()` is the process-wide set.

    Label children are cached in dicts: `Counter.labels()` costs a lock and a tuple build per
    call, which the hot path pays millions of times a day.
    """

    _shared: ClassVar[Metrics | None] = None

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.decisions = Counter("shieldware_decisions", "Decisions by verdict, action and route group",
                                 ["verdict", "action", "group"], registry=self.registry)
        self.reasons = Counter("shieldware_reasons", "Evidence by reason code and route group",
                               ["code", "group"], registry=self.registry)
        self.scores = Histogram("shieldware_bot_score", "Bot score of decisions", ["group"],
                                buckets=(5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100), registry=self.registry)
        self.latency = Histogram("shieldware_decision_seconds", "Time to decide a request",
                                 buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25),
                                 registry=self.registry)
        self.events = Counter("shieldware_events", "Outcome events reported by the app or derived from "
                              "responses", ["event"], registry=self.registry)
        self._children: dict[tuple, object] = {}

    @classmethod
    def shared(cls) -> Metrics:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def _child(self, family, *labels: str):
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def record_decision(self, decision: Decision) -> None:
        group = decision.route_group
        self._child(self.decisions, decision.verdict.value, decision.action.value, group).inc()
        self._child(self.scores, group).observe(decision.bot_score)
        for reason in decision.reasons:
            self._child(self.reasons, reason.code, group).inc()

    def record_latency(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def record_event(self, event: str) -> None:
        self._child(self.events, event[:64]).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
