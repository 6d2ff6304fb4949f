"""Prometheus metrics: decisions by verdict, group and reason; score and latency histograms.

The hot path only bumps plain dict counters and bucket lists; a custom collector turns them
into Prometheus families when scraped. prometheus-client's own Counter/Histogram take a lock
per update, which at five updates per request costs more than all signals together.

Several worker processes of one service add their counters up through a directory of
snapshots (metrics_dir.py): every scrape then shows the whole service, whichever worker answers.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from shieldware.decision import Decision, Verdict
from shieldware.metrics_dir import METRICS_DIR_ENV, MetricsDirectory

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Metrics"]

SCORE_BUCKETS = (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0)
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25)


class _Histogram:
    """Bucket counts plus sum; cumulative counts are computed at scrape time, not per update."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def add(self, other: _Histogram) -> None:
        for i, count in enumerate(other.counts):
            self.counts[i] += count
        self.total += other.total

    def cumulative(self) -> list[tuple[str, int]]:
        running, out = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


CounterKey = tuple[str, tuple[tuple[str, str], ...]]


def counter_key(name: str, **labels: str) -> CounterKey:
    """Where count(name, **labels) files its count."""
    return name, tuple(sorted(labels.items()))


class Metrics:
    """Counters for one process. `Metrics.shared()` is the process-wide set the engine uses by default.

    Updates happen on the event loop thread; a scrape reads a consistent-enough snapshot.
    With `shared_dir` (for `Metrics.shared()`: $SHIELDWARE_METRICS_DIR), this process's counters
    are written there every few seconds and a scrape adds up every process's (see metrics_dir.py).
    """

    _shared: ClassVar[Metrics | None] = None

    def __init__(self, shared_dir: str | Path | None = None) -> None:
        self.decisions: dict[tuple[Verdict, Verdict, str], int] = {}
        self.reasons: dict[tuple[str, str], int] = {}
        self.events: dict[str, int] = {}
        self.counters: dict[CounterKey, int] = {}
        self.scores: dict[str, _Histogram] = {}
        self.latency = _Histogram(LATENCY_BUCKETS)
        self.timings: dict[str, _Histogram] = {}
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        # Counters kept elsewhere and added when the metrics are read (the fast lane's decisions).
        self._sources: list[Callable[[], Metrics]] = []
        self.shared_dir = MetricsDirectory(shared_dir, self) if shared_dir else None

    @classmethod
    def shared(cls) -> Metrics:
        if cls._shared is None:
            cls._shared = cls(shared_dir=os.environ.get(METRICS_DIR_ENV) or None)
        return cls._shared

    def record_decision(self, decision: Decision) -> None:
        group = decision.route_group
        key = (decision.verdict, decision.action, group)  # enum members: their .value is read at scrape time
        self.decisions[key] = self.decisions.get(key, 0) + 1
        histogram = self.scores.get(group)
        if histogram is None:
            histogram = self.scores[group] = _Histogram(SCORE_BUCKETS)
        histogram.observe(decision.bot_score)
        for reason in decision.reasons:
            rkey = (reason.code, group)
            self.reasons[rkey] = self.reasons.get(rkey, 0) + 1

    def count_decisions(self, verdict: Verdict, action: Verdict, group: str, bot_score: float,
                        reasons: tuple[Any, ...], n: int) -> None:
        """`n` decisions alike (the fast lane counts them per plan, and they are added here at once)."""
        key = (verdict, action, group)
        self.decisions[key] = self.decisions.get(key, 0) + n
        histogram = self.scores.get(group)
        if histogram is None:
            histogram = self.scores[group] = _Histogram(SCORE_BUCKETS)
        histogram.counts[bisect_left(histogram.bounds, bot_score)] += n
        histogram.total += bot_score * n
        for reason in reasons:
            rkey = (reason.code, group)
            self.reasons[rkey] = self.reasons.get(rkey, 0) + n

    def record_latency(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def add_latencies(self, counts: tuple[int, ...], total: float) -> None:
        """Latencies counted elsewhere in LATENCY_BUCKETS (bisect_left buckets, one more for +Inf)."""
        for bucket, n in enumerate(counts):
            self.latency.counts[bucket] += n
        self.latency.total += total

    def record_event(self, event: str) -> None:
        event = event[:64]
        self.events[event] = self.events.get(event, 0) + 1

    def count(self, name: str, **labels: str) -> None:
        """A feature's own counter, e.g. count("challenges", outcome="solved"), exported as shieldware_<name>."""
        self.add_count(name, 1, labels)

    def add_count(self, name: str, n: int, labels: dict[str, str]) -> None:
        key = counter_key(name, **labels)
        self.counters[key] = self.counters.get(key, 0) + n

    def count_at(self, key: CounterKey) -> None:
        """count() by a key made once with counter_key(): for a counter bumped on every request,
        whose labels are not sorted again each time."""
        self.counters[key] = self.counters.get(key, 0) + 1

    def observe(self, name: str, value: float, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        """A feature's own histogram, e.g. observe("challenge_solve_seconds", 0.4, buckets)."""
        histogram = self.timings.get(name)
        if histogram is None:
            histogram = self.timings[name] = _Histogram(buckets)
        histogram.observe(value)

    def add_source(self, source: Callable[[], Metrics]) -> None:
        """Counters another part keeps itself: `source()` answers its totals so far (a Metrics the
        caller may read freely), added whenever these metrics are read."""
        self._sources.append(source)

    def current(self) -> Metrics:
        """These counters with every source's added: self when there are no sources."""
        if not self._sources:
            return self
        total = Metrics.from_snapshot(self._own_snapshot())
        for source in list(self._sources):
            total.merge(source())
            if getattr(source, "finished", False):  # nothing more will come, and nothing was counted
                self._sources.remove(source)
        return total

    def exposition(self) -> bytes:
        """Prometheus text: this process's counters, or every worker's added up with a shared_dir."""
        if self.shared_dir is not None:
            return generate_latest(self.shared_dir.combined().registry)
        return generate_latest(self.current().registry)

    def snapshot(self) -> dict[str, Any]:
        """Every counter (sources included) as plain JSON-able lists."""
        current = self.current()
        return current._own_snapshot()

    def _own_snapshot(self) -> dict[str, Any]:
        """This object's counters as plain lists. Each `list(...)` copies in one C call, so a
        snapshot taken on another thread never meets a dict that changes size under it."""
        return {
            "decisions": [[v.value, a.value, g, n] for (v, a, g), n in list(self.decisions.items())],
            "reasons": [[code, group, n] for (code, group), n in list(self.reasons.items())],
            "events": [[event, n] for event, n in list(self.events.items())],
            "counters": [[name, [list(pair) for pair in labels], n]
                         for (name, labels), n in list(self.counters.items())],
            "scores": [[group, *_histogram_row(h)] for group, h in list(self.scores.items())],
            "latency": _histogram_row(self.latency),
            "timings": [[name, *_histogram_row(h)] for name, h in list(self.timings.items())],
        }

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> Metrics:
        """Counters back from `snapshot()`; ValueError when it is not one."""
        metrics = cls()
        try:
            for verdict, action, group, n in snapshot["decisions"]:
                metrics.decisions[(Verdict(verdict), Verdict(action), str(group))] = int(n)
            for code, group, n in snapshot["reasons"]:
                metrics.reasons[(str(code), str(group))] = int(n)
            for event, n in snapshot["events"]:
                metrics.events[str(event)] = int(n)
            for name, labels, n in snapshot["counters"]:
                metrics.counters[(str(name), tuple((str(k), str(v)) for k, v in labels))] = int(n)
            for group, bounds, counts, total in snapshot["scores"]:
                metrics.scores[str(group)] = _histogram_from(bounds, counts, total)
            metrics.latency = _histogram_from(*snapshot["latency"])
            for name, bounds, counts, total in snapshot["timings"]:
                metrics.timings[str(name)] = _histogram_from(bounds, counts, total)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a metrics snapshot: {type(exc).__name__}: {exc}") from None
        return metrics

    def merge(self, other: Metrics) -> None:
        """Add another process's counters to these. A histogram whose buckets differ from ours
        (another version of shieldware) raises ValueError before anything is added."""
        for mine, theirs in ((self.scores, other.scores), (self.timings, other.timings),
                             ({"latency": self.latency}, {"latency": other.latency})):
            for name, histogram in theirs.items():
                if name in mine and mine[name].bounds != histogram.bounds:
                    raise ValueError(f"histogram {name!r} has other buckets than this process's")
        for mine_counts, theirs_counts in ((self.decisions, other.decisions), (self.reasons, other.reasons),
                                           (self.events, other.events), (self.counters, other.counters)):
            for key, n in theirs_counts.items():
                mine_counts[key] = mine_counts.get(key, 0) + n
        for mine_histograms, theirs_histograms in ((self.scores, other.scores), (self.timings, other.timings)):
            for name, histogram in theirs_histograms.items():
                kept = mine_histograms.get(name)
                if kept is None:
                    kept = mine_histograms[name] = _Histogram(histogram.bounds)
                kept.add(histogram)
        self.latency.add(other.latency)


def _histogram_row(histogram: _Histogram) -> list[Any]:
    return [list(histogram.bounds), list(histogram.counts), histogram.total]


def _histogram_from(bounds: list[float], counts: list[int], total: float) -> _Histogram:
    histogram = _Histogram(tuple(float(b) for b in bounds))
    if len(counts) != len(histogram.counts):
        raise ValueError(f"{len(counts)} bucket counts for {len(bounds)} bounds")
    histogram.counts = [int(c) for c in counts]
    histogram.total = float(total)
    return histogram


class _Collector:
    """Turns the plain counters into Prometheus metric families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        decisions = CounterMetricFamily("shieldware_decisions", "Decisions by verdict, action and route group",
                                        labels=["verdict", "action", "group"])
        for (verdict, action, group), n in list(m.decisions.items()):
            decisions.add_metric([verdict.value, action.value, group], n)
        yield decisions
        reasons = CounterMetricFamily("shieldware_reasons", "Evidence by reason code and route group",
                                      labels=["code", "group"])
        for (code, group), n in list(m.reasons.items()):
            reasons.add_metric([code, group], n)
        yield reasons
        events = CounterMetricFamily("shieldware_events", "Outcome events reported by the app or derived "
                                     "from responses", labels=["event"])
        for event, n in list(m.events.items()):
            events.add_metric([event], n)
        yield events
        by_name: dict[str, list] = {}
        for (name, labels), n in list(m.counters.items()):
            by_name.setdefault(name, []).append((labels, n))
        for name, rows in by_name.items():
            label_names = [k for k, _ in rows[0][0]]
            family = CounterMetricFamily(f"shieldware_{name}", f"shieldware {name}", labels=label_names)
            for labels, n in rows:
                family.add_metric([v for _, v in labels], n)
            yield family
        scores = HistogramMetricFamily("shieldware_bot_score", "Bot score of decisions", labels=["group"])
        for group, histogram in list(m.scores.items()):
            scores.add_metric([group], histogram.cumulative(), histogram.total)
        yield scores
        latency = HistogramMetricFamily("shieldware_decision_seconds", "Time to decide a request")
        latency.add_metric([], m.latency.cumulative(), m.latency.total)
        yield latency
        for name, histogram in list(m.timings.items()):
            family = HistogramMetricFamily(f"shieldware_{name}", f"shieldware {name}")
            family.add_metric([], histogram.cumulative(), histogram.total)
            yield family
