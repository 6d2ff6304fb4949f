"""The log analyzer: batches → client tables and behaviour windows → the engine per client → findings.

Design (measured, see bench/analyze.py): running the engine once per log line costs tens of
microseconds a line, far from the throughput goal. The per-line work is therefore done by
batch kernels (the scanner and the behaviour windows), and the engine — the same Engine, policy
and signals as live traffic — runs once per distinct client with RequestFacts built from that
client's log lines (source="log", `now` = its last timestamp, the headers the log has) plus the
client's window evidence, injected by `BatchEvidenceSignal`. Signals that need data a log does
not carry (the full header set) are left out by name in `LIVE_ONLY_SIGNALS`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from shieldware.analyze.behaviour import (
    I_STATIC,
    BehaviourSummary,
    ClientState,
    Thresholds,
    behaviour_evidence,
    evidence_weight,
    may_have_evidence,
    observe,
    summarise,
)
from shieldware.analyze.columns import Interner, LogBatch, ParseStats, Vocabulary
from shieldware.analyze.counting import PairCounter
from shieldware.decision import Decision, Verdict
from shieldware.decision_log import DecisionLog
from shieldware.engine import Engine
from shieldware.evidence import Evidence
from shieldware.facts import RequestFacts, TrustedProxies, normalise_ip, resolve_client_ip
from shieldware.metrics import Metrics
from shieldware.policy import Policy
from shieldware.signals import Inspection, default_signals
from shieldware.store.memory import MemoryStore

# Signals that judge what a log line cannot show (the full header set and its order).
LIVE_ONLY_SIGNALS = frozenset({"headers"})
# Load balancers usually sit on private addresses: trust their X-Forwarded-For unless told otherwise.
DEFAULT_TRUSTED_PROXIES = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
)

CATEGORIES = ("human", "verified-bot", "declared-bot", "suspicious", "bad-bot")
FLAGGED = ("bad-bot", "suspicious")
TIMELINE_BUCKET = 60  # seconds; coarsened automatically for long logs
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_PLAIN_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


class _QuietDecisionLog(DecisionLog):
    """Analysis verdicts are reported, not logged as live decisions (and JSON per client is costly)."""

    def write(self, decision: Decision) -> None:
        return None


class _NoMetrics(Metrics):
    """Replaying a log must not count as live traffic in the process's Prometheus metrics."""

    def record_decision(self, decision: Decision) -> None:
        return None


class BatchEvidenceSignal:
    """Adds a client's window evidence (computed by the batch kernels) to the engine's inspection,
    and exposes the attributes the other signals published (ua.category, verified crawler, ASN…)."""

    name = "log-behaviour"

    def __init__(self) -> None:
        self.pending: list[tuple[str, dict]] = []
        self.attrs: dict[str, Any] = {}

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        for code, detail in self.pending:
            inspection.add_weighted(code, evidence_weight(code, detail, inspection.weights), **detail)
        self.attrs = inspection.attrs  # the same dict: attributes set later (assess) show up too


@dataclass
class ClientFinding:
    """The verdict on one client (an IP, or an IP with one user agent) and the numbers behind it."""

    ip: str
    user_agent: str | None
    verdict: str
    category: str
    bot_score: float
    reasons: list[Evidence]
    route_group: str
    requests: int
    pages: int
    assets: int
    first_seen: float
    last_seen: float
    ua_category: str = ""
    ua_name: str = ""
    network: dict[str, Any] = field(default_factory=dict)
    top_paths: list[tuple[str, int]] = field(default_factory=list)
    user_agents: int = 1

    @property
    def flagged(self) -> bool:
        return self.category in FLAGGED

    @property
    def reason_codes(self) -> list[str]:
        return [e.code for e in self.reasons]

    def as_record(self) -> dict[str, Any]:
        from shieldware.evidence import describe

        return {
            "ip": self.ip,
            "user_agent": self.user_agent,
            "verdict": self.verdict,
            "category": self.category,
            "bot_score": round(self.bot_score, 1),
            "route_group": self.route_group,
            "requests": self.requests,
            "pages": self.pages,
            "assets": self.assets,
            "first_seen": round(self.first_seen, 3),
            "last_seen": round(self.last_seen, 3),
            "ua_category": self.ua_category,
            "ua_name": self.ua_name,
            "network": self.network,
            "user_agents": self.user_agents,
            "reasons": [{**e.as_dict(), "text": describe(e.code)} for e in self.reasons],
            "top_paths": [{"path": p, "requests": n} for p, n in self.top_paths],
        }


@dataclass
class AnalysisResult:
    sources: list[str]
    format_name: str
    stats: ParseStats
    clients: list[ClientFinding]  # per IP + user agent
    ips: list[ClientFinding]  # per IP
    first_time: float
    last_time: float
    timeline_start: float
    timeline_step: float
    timeline: dict[str, list[int]]  # category → requests per bucket
    bot_paths: list[tuple[str, int]]  # paths most requested by flagged clients
    requests_by_category: dict[str, int]

    @property
    def flagged_ips(self) -> list[ClientFinding]:
        return [f for f in self.ips if f.flagged]


def categorise(decision: Decision, attrs: dict[str, Any]) -> str:
    codes = decision.reason_codes
    fake = any(code == "net.fake_crawler" or code.endswith(".fake_crawler") for code in codes)
    verified = bool(attrs.get("verified_bot")) or any(
        "verified" in e.code and e.weight < 0 for e in decision.reasons
    )
    if verified and not fake:
        return "verified-bot"
    if fake or decision.verdict is Verdict.BLOCK:
        return "bad-bot"
    if decision.verdict is not Verdict.ALLOW:
        return "suspicious"
    if attrs.get("ua.is_bot"):
        return "declared-bot"
    return "human"


class LogAnalysis:
    """Streaming state of one analysis: feed batches in time order, then `finish()`."""

    def __init__(
        self,
        policy: Policy,
        trusted_proxies: Sequence[str] | None = DEFAULT_TRUSTED_PROXIES,
        thresholds: Thresholds | None = None,
        path_capacity: int = 2_000_000,
    ) -> None:
        self.policy = policy
        self.thresholds = thresholds or Thresholds()
        self.trusted = TrustedProxies(trusted_proxies or ())
        self.vocab = Vocabulary()
        self.stats = ParseStats()
        self.ips = Interner()
        groups = list(policy.groups)
        if policy.route_table.default_group not in groups:
            groups.append(policy.route_table.default_group)
        self.group_names = [g.name for g in groups]
        self._group_index = {g.name: i for i, g in enumerate(groups)}
        self.static_groups = np.array([g.name == "static" for g in groups], dtype=np.bool_)
        self.login_group = self._group_index.get("login", -1)
        self._ip_of_pair: dict[int, int] = {}
        self._client_of: dict[int, int] = {}
        self.client_ip: list[int] = []
        self.client_ua: list[int] = []
        self.client_first: list[tuple[int, int, str, str, int]] = []  # method, path, referer, xff, status
        self._group_of: dict[int, int] = {}
        self._product_ids = np.zeros(0, dtype=np.int64)
        self.client_state = ClientState(len(groups))
        self.ip_state = ClientState(len(groups))
        self.paths_by_client = PairCounter(path_capacity)
        self.timeline = PairCounter(path_capacity, coarsen_high=True)
        self.first_time = float("inf")
        self.last_time = float("-inf")
        self.sources: list[str] = []
        self.format_name = ""

    # ---- per batch ----------------------------------------------------------------------------

    def _client_ips(self, batch: LogBatch) -> np.ndarray:
        pairs = (batch.addr.astype(np.int64) << 32) | batch.xff.astype(np.int64)
        distinct, inverse = np.unique(pairs, return_inverse=True)
        local = np.empty(distinct.shape[0], dtype=np.int32)
        for j, pair in enumerate(distinct.tolist()):
            found = self._ip_of_pair.get(pair)
            if found is None:
                addr = self.vocab.addr.strings[pair >> 32]
                xff = self.vocab.xff.strings[pair & 0xFFFFFFFF]
                # Canonical dotted IPv4 is already normal; parsing it with ipaddress costs µs each.
                peer = addr if _PLAIN_IPV4.fullmatch(addr) else (normalise_ip(addr) or addr)
                client = peer
                if xff and self.trusted and self.trusted.trusts(peer):
                    client, _ = resolve_client_ip(peer, {"x-forwarded-for": xff}, self.trusted)
                found = self._ip_of_pair[pair] = self.ips.id_of(client)
            local[j] = found
        return local[inverse.reshape(-1)]

    def _clients(self, batch: LogBatch, ip_ids: np.ndarray) -> np.ndarray:
        keys = (ip_ids.astype(np.int64) << 32) | batch.user_agent.astype(np.int64)
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        local = np.empty(distinct.shape[0], dtype=np.int32)
        for j, key in enumerate(distinct.tolist()):
            found = self._client_of.get(key)
            if found is None:
                found = self._client_of[key] = len(self.client_ip)
                row = int(first[j])
                self.client_ip.append(key >> 32)
                self.client_ua.append(key & 0xFFFFFFFF)
                referer = batch.referer_of(row) if batch.has_referer[row] else ""
                self.client_first.append(
                    (
                        int(batch.method[row]),
                        int(batch.path[row]),
                        referer,
                        self.vocab.xff.strings[int(batch.xff[row])],
                        int(batch.status[row]),
                    )
                )
            local[j] = found
        return local[inverse.reshape(-1)]

    def _groups(self, batch: LogBatch) -> np.ndarray:
        keys = (batch.method.astype(np.int64) << 32) | batch.path.astype(np.int64)
        distinct, inverse = np.unique(keys, return_inverse=True)
        local = np.empty(distinct.shape[0], dtype=np.int8)
        table = self.policy.route_table
        for j, key in enumerate(distinct.tolist()):
            found = self._group_of.get(key)
            if found is None:
                method = self.vocab.method.strings[key >> 32] or "GET"
                path = self.vocab.path.strings[key & 0xFFFFFFFF] or "/"
                found = self._group_of[key] = self._group_index[table.group_for(method, path).name]
            local[j] = found
        return local[inverse.reshape(-1)]

    def _extend_product_ids(self) -> None:
        known = self._product_ids.shape[0]
        paths = self.vocab.path.strings
        if len(paths) == known:
            return
        table = self.policy.route_table
        fresh = np.full(len(paths) - known, -1, dtype=np.int64)
        for offset, path in enumerate(paths[known:]):
            if table.group_for("GET", path or "/").name == "product":
                match = _LAST_NUMBER.search(path)
                if match is not None and len(match.group(1)) <= 15:
                    fresh[offset] = int(match.group(1))
        self._product_ids = np.concatenate([self._product_ids, fresh])

    def feed(self, batch: LogBatch) -> None:
        if len(batch) == 0:
            return
        ip_ids = self._client_ips(batch)
        clients = self._clients(batch, ip_ids)
        groups = self._groups(batch)
        self._extend_product_ids()
        order = np.argsort(batch.time, kind="stable")
        post = self.vocab.method.id_of("POST")
        self.first_time = min(self.first_time, float(batch.time[order[0]]))
        self.last_time = max(self.last_time, float(batch.time[order[-1]]))
        for state, keys in ((self.client_state, clients), (self.ip_state, ip_ids)):
            state.ensure(int(keys.max()) + 1)
            observe(
                order,
                keys,
                batch.time,
                groups,
                batch.method,
                batch.path,
                batch.status,
                batch.has_referer,
                self._product_ids,
                self.static_groups,
                self.login_group,
                post,
                state.floats,
                state.ints,
                state.hll_paths,
                state.hll_products,
                state.groups,
                state.rep_path,
                state.rep_method,
            )
        self.paths_by_client.add(clients, batch.path)
        self.timeline.add((batch.time // TIMELINE_BUCKET).astype(np.int64), clients)

    # ---- the verdicts -------------------------------------------------------------------------

    def _engine(self, extra_signal: BatchEvidenceSignal) -> Engine:
        signals = [s for s in default_signals() if s.name not in LIVE_ONLY_SIGNALS]
        return Engine(
            self.policy,
            store=MemoryStore(),
            signals=[*signals, extra_signal],
            decision_log=_QuietDecisionLog(None),
            metrics=_NoMetrics(CollectorRegistry()),
        )

    def _representatives(self, state: ClientState) -> tuple[np.ndarray, np.ndarray]:
        """Per client, the method and path of its first request in its busiest non-static group.

        That request stands for the client in the engine: its route group sets the thresholds
        (a stuffer is judged as a login client, a scraper as a product client).
        """
        n = state.size
        counts = state.groups[:n].copy()
        counts[:, self.static_groups] = 0
        main = np.where(counts.any(axis=1), counts.argmax(axis=1), state.groups[:n].argmax(axis=1))
        rows = np.arange(n)
        return state.rep_method[rows, main], state.rep_path[rows, main]

    def _facts(
        self, ip: str, ua: str, method_id: int, path_id: int, first: tuple, now: float
    ) -> RequestFacts:
        method = self.vocab.method.strings[method_id] or "GET"
        path = self.vocab.path.strings[path_id] or "/"
        _, _, referer, xff, status = first
        headers = []
        if ua:
            headers.append(("user-agent", ua))
        if referer:
            headers.append(("referer", referer))
        if xff:
            headers.append(("x-forwarded-for", xff))
        # Built directly rather than through facts_from_headers: the log's values are already
        # decoded and normalised, and this runs once per client of a possibly huge log.
        return RequestFacts(
            client_ip=ip,
            method=method,
            path=path,
            now=now,
            headers=tuple(headers),
            header_map=dict(headers),
            peer_ip=ip,
            status=status or None,
            source="log",
        )

    async def _decide(
        self,
        engine: Engine,
        signal: BatchEvidenceSignal,
        facts: RequestFacts,
        findings: list[tuple[str, dict]],
    ) -> tuple[Decision, dict[str, Any]]:
        signal.pending = findings
        signal.attrs = {}
        decision = await engine.decide(facts)
        return decision, signal.attrs

    def _finding(
        self,
        decision: Decision,
        attrs: dict[str, Any],
        summary: BehaviourSummary,
        row: int,
        ip: str,
        ua: str | None,
    ) -> ClientFinding:
        network = {
            k[4:]: v for k, v in attrs.items() if k.startswith("net.") and isinstance(v, (str, int, float))
        }
        return ClientFinding(
            ip=ip,
            user_agent=ua,
            verdict=str(decision.verdict),
            category=categorise(decision, attrs),
            bot_score=decision.bot_score,
            reasons=[
                e for e in decision.reasons if e.code != "policy.rule" or e.detail.get("action") != "allow"
            ]
            or list(decision.reasons),
            route_group=decision.route_group,
            requests=int(summary.requests[row]),
            pages=int(summary.pages[row]),
            assets=int(summary.static[row]),
            first_seen=float(summary.first[row]),
            last_seen=float(summary.last[row]),
            ua_category=str(attrs.get("ua.category", "")),
            ua_name=str(attrs.get("ua.name", "")),
            network=network,
        )

    async def _judge(self) -> tuple[list[ClientFinding], list[ClientFinding]]:
        signal = BatchEvidenceSignal()
        engine = self._engine(signal)
        total = max(self.stats.lines - self.stats.malformed, 1)
        site_static = float(self.client_state.ints[: self.client_state.size, I_STATIC].sum()) / total
        client_summary = summarise(self.client_state)
        ip_summary = summarise(self.ip_state)
        uas = self.vocab.user_agent.strings
        ips = self.ips.strings
        methods, paths = self._representatives(self.client_state)
        busy = may_have_evidence(client_summary, self.thresholds)
        clients: list[ClientFinding] = []
        per_ip: dict[int, list[int]] = {}
        for row in range(len(self.client_ip)):
            ip, ua = ips[self.client_ip[row]], uas[self.client_ua[row]]
            findings = (
                behaviour_evidence(client_summary, row, site_static, self.thresholds) if busy[row] else []
            )
            facts = self._facts(
                ip,
                ua,
                int(methods[row]),
                int(paths[row]),
                self.client_first[row],
                float(client_summary.last[row]),
            )
            decision, attrs = await self._decide(engine, signal, facts, findings)
            clients.append(self._finding(decision, attrs, client_summary, row, ip, ua))
            per_ip.setdefault(self.client_ip[row], []).append(row)
        ip_methods, ip_paths = self._representatives(self.ip_state)
        ip_findings: list[ClientFinding] = []
        for ip_id, rows in per_ip.items():
            if len(rows) == 1:
                only = clients[rows[0]]
                ip_findings.append(ClientFinding(**{**only.__dict__, "user_agent": None}))
                continue
            main = max(rows, key=lambda r: client_summary.requests[r])
            findings = behaviour_evidence(ip_summary, ip_id, site_static, self.thresholds)
            facts = self._facts(
                ips[ip_id],
                uas[self.client_ua[main]],
                int(ip_methods[ip_id]),
                int(ip_paths[ip_id]),
                self.client_first[main],
                float(ip_summary.last[ip_id]),
            )
            decision, attrs = await self._decide(engine, signal, facts, findings)
            finding = self._finding(decision, attrs, ip_summary, ip_id, ips[ip_id], None)
            finding.user_agents = len(rows)
            worst = max((clients[r] for r in rows), key=lambda f: (CATEGORIES.index(f.category), f.bot_score))
            if CATEGORIES.index(worst.category) > CATEGORIES.index(finding.category):
                # One bad user agent behind an address makes the address as bad as that client.
                finding.category, finding.verdict = worst.category, worst.verdict
                finding.bot_score = max(finding.bot_score, worst.bot_score)
                finding.reasons = sorted(
                    {e.code: e for e in [*worst.reasons, *finding.reasons]}.values(),
                    key=lambda e: -abs(e.weight),
                )
            ip_findings.append(finding)
        await engine.close()
        return clients, ip_findings

    def _top_paths(
        self, clients: list[ClientFinding], ip_findings: list[ClientFinding], per_client: int = 5
    ) -> list[tuple[str, int]]:
        client_rows, path_ids, counts = self.paths_by_client.table()
        paths = self.vocab.path.strings
        flagged = np.array([c.flagged for c in clients], dtype=np.bool_)
        # Top paths are listed for flagged clients only: a per-pair Python loop over everyone
        # would cost more than the whole detection on a large log.
        keep = flagged[client_rows] if flagged.shape[0] else np.zeros(0, dtype=np.bool_)
        order = np.flatnonzero(keep)[np.lexsort((-counts[keep], client_rows[keep]))]
        for row, path_id, count in zip(
            client_rows[order].tolist(), path_ids[order].tolist(), counts[order].tolist(), strict=True
        ):
            finding = clients[row]
            if len(finding.top_paths) < per_client:
                finding.top_paths.append((paths[path_id] or "/", count))
        by_ip = {f.ip: f for f in ip_findings}
        for finding in clients:
            target = by_ip.get(finding.ip)
            if target is not None and target.user_agents == 1:
                target.top_paths = finding.top_paths
        mask = flagged[client_rows] if flagged.shape[0] else np.zeros(0, dtype=np.bool_)
        totals = (
            np.bincount(path_ids[mask], weights=counts[mask], minlength=len(paths)) if mask.any() else None
        )
        if totals is None:
            return []
        top = np.argsort(-totals, kind="stable")[:15]
        return [(paths[p] or "/", int(totals[p])) for p in top.tolist() if totals[p] > 0]

    def _timeline(self, clients: list[ClientFinding]) -> tuple[float, float, dict[str, list[int]]]:
        buckets, client_rows, counts = self.timeline.table()
        step = TIMELINE_BUCKET * self.timeline.scale
        series = {c: [] for c in CATEGORIES}
        if buckets.shape[0] == 0:
            return 0.0, float(step), series
        # Re-bin to at most ~120 points so the chart stays readable and small.
        span = int(buckets.max() - buckets.min()) + 1
        factor = max(1, -(-span // 120))
        start_bucket = int(buckets.min())
        index = (buckets - start_bucket) // factor
        width = int(index.max()) + 1
        category_of = np.array([CATEGORIES.index(c.category) for c in clients], dtype=np.int64)
        cats = category_of[client_rows]
        for k, name in enumerate(CATEGORIES):
            mask = cats == k
            series[name] = (
                np.bincount(index[mask], weights=counts[mask], minlength=width).astype(int).tolist()
            )
        return float(start_bucket * step), float(step * factor), series

    def finish(self) -> AnalysisResult:
        clients, ip_findings = asyncio.run(self._judge())
        bot_paths = self._top_paths(clients, ip_findings)
        start, step, series = self._timeline(clients)
        by_category = {c: 0 for c in CATEGORIES}
        for finding in clients:
            by_category[finding.category] += finding.requests
        ip_findings.sort(key=lambda f: (-CATEGORIES.index(f.category), -f.bot_score, -f.requests))
        clients.sort(key=lambda f: (-CATEGORIES.index(f.category), -f.bot_score, -f.requests))
        empty = self.first_time == float("inf")
        return AnalysisResult(
            sources=self.sources,
            format_name=self.format_name,
            stats=self.stats,
            clients=clients,
            ips=ip_findings,
            first_time=0.0 if empty else self.first_time,
            last_time=0.0 if empty else self.last_time,
            timeline_start=start,
            timeline_step=step,
            timeline=series,
            bot_paths=bot_paths,
            requests_by_category=by_category,
        )


def feed_all(analysis: LogAnalysis, batches: Iterable[LogBatch]) -> None:
    for batch in batches:
        analysis.feed(batch)
