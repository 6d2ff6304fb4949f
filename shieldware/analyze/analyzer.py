"""The log analyzer: batches → client tables and behaviour windows → the engine per client → findings.

Design (measured, see bench/analyze.py): running the engine once per log line costs tens of
microseconds a line, far from the throughput goal. The per-line work is therefore done by
batch kernels (the scanner and the behaviour windows), and the engine — the same Engine, policy
and signals as live traffic — runs once per distinct client with RequestFacts built from that
client's log lines (source="log", `now` = its last timestamp, the headers the log has) plus the
client's window evidence, injected by `BatchEvidenceSignal`. Signals that need data a log does
not carry (the full header set) are left out by name in `LIVE_ONLY_SIGNALS`.

Memory is bounded by the clients being watched, not by the log: an address idle for longer
than `idle_seconds` of log time (more than the longest window) is judged and retired as soon
as more than `live_clients` clients are tracked; what the report needs about it goes into a
`Tally` whose size depends on the number of bots, not of people or lines.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from shieldware.analyze.behaviour import (
    F_LAST,
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
from shieldware.analyze.findings import (
    CATEGORIES,
    TIMELINE_BUCKET,
    AnalysisResult,
    ClientFinding,
    Tally,
    categorise,
    with_walk_clients,
)
from shieldware.analyze.walks import WalkSettings, WalkTracker
from shieldware.decision import Decision, Verdict
from shieldware.decision_log import DecisionLog
from shieldware.engine import Engine
from shieldware.facts import RequestFacts, TrustedProxies, normalise_ip, resolve_client_ip
from shieldware.metrics import Metrics
from shieldware.policy import Policy
from shieldware.signals import Inspection, default_signals
from shieldware.signals.traffic_policy import watches_product_ids
from shieldware.store.memory import MemoryStore

# Signals the log replay leaves out, with why. "headers" judges the full header set and its
# order, which a log line does not keep. "traffic" keeps per-request windows in the store; in
# log mode the same behaviours (burst, regular timing, enumeration, probing, no assets) are
# computed over each client's whole history by the batch kernel in analyze/behaviour.py and
# injected under the same reason codes, so running it once per client would only add noise.
LIVE_ONLY_SIGNALS = frozenset({"headers", "traffic"})
# Load balancers usually sit on private addresses: trust their X-Forwarded-For unless told otherwise.
DEFAULT_TRUSTED_PROXIES = (
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1/128",
    "fc00::/7",
)

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


class LogAnalysis:
    """Streaming state of one analysis: feed batches in time order, then `finish()`."""

    def __init__(
        self,
        policy: Policy,
        trusted_proxies: Sequence[str] | None = DEFAULT_TRUSTED_PROXIES,
        thresholds: Thresholds | None = None,
        path_capacity: int = 2_000_000,
        live_clients: int = 20_000,
        idle_seconds: float = 3600.0,
        keep_humans: int = 5_000,
        walk_settings: WalkSettings | None = None,
    ) -> None:
        self.live_clients = live_clients
        self.idle_seconds = idle_seconds
        self.tally = Tally(keep_humans, path_capacity)
        self.retired_clients = 0
        self.tally_static = 0  # asset requests of retired clients (the site's asset share needs them)
        self._loop = asyncio.new_event_loop()
        self._signal = BatchEvidenceSignal()
        self._engine_instance: Engine | None = None
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
        self.walks = WalkTracker(walk_settings)
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
            if watches_product_ids(table.group_for("GET", path or "/")):
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
        # A line without a request line ("-") has neither method nor path: a connection that asked
        # for nothing (a browser's unused spare, or a slowloris socket).
        bare = (batch.method == self.vocab.method.id_of("")) & (batch.path == self.vocab.path.id_of(""))
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
                bare,
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
        # Product pages across addresses, per user agent (refused lines asked for no page).
        refused = bare | (batch.status == 408) | (batch.status == 414) | (batch.status == 431)
        pids = np.where(refused, -1, self._product_ids[batch.path])
        self.walks.feed(order, batch.time, batch.user_agent, ip_ids, clients, pids)
        self.paths_by_client.add(batch.path, clients)  # (path, client): the client is the low half
        self.timeline.add((batch.time // TIMELINE_BUCKET).astype(np.int64), clients)

        # ---- the verdicts -------------------------------------------------------------------------

        if len(self.client_ip) > self.live_clients:
            self._retire(idle_before=self.last_time - self.idle_seconds)

    # ---- the verdicts -------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine_instance is None:
            signals = [s for s in default_signals() if s.name not in LIVE_ONLY_SIGNALS]
            self._engine_instance = Engine(
                self.policy,
                store=MemoryStore(),
                signals=[*signals, self._signal],
                decision_log=_QuietDecisionLog(None),
                metrics=_NoMetrics(),
            )
        return self._engine_instance

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
        # A client of refused lines only has no representative request (-1): it stands as "GET /".
        method = (self.vocab.method.strings[method_id] if method_id >= 0 else "") or "GET"
        path = (self.vocab.path.strings[path_id] if path_id >= 0 else "") or "/"
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

    async def _decide(self, facts: RequestFacts, findings: list[tuple[str, dict]]) -> tuple[Decision, dict]:
        self._signal.pending = findings
        self._signal.attrs = {}
        decision = await self.engine.decide(facts)
        return decision, self._signal.attrs

    @staticmethod
    def _finding(
        decision: Decision,
        attrs: dict[str, Any],
        counts: tuple[int, int, int, float, float],
        ip: str,
        ua: str | None,
    ) -> ClientFinding:
        requests, pages, assets, first_seen, last_seen = counts
        network = {
            k[4:]: v for k, v in attrs.items() if k.startswith("net.") and isinstance(v, (str, int, float))
        }
        reasons = [
            e for e in decision.reasons if e.code != "policy.rule" or e.detail.get("action") != "allow"
        ]
        return ClientFinding(
            ip=ip,
            user_agent=ua,
            verdict=str(decision.verdict),
            category=categorise(decision, attrs),
            bot_score=decision.bot_score,
            reasons=reasons or list(decision.reasons),
            route_group=decision.route_group,
            requests=requests,
            pages=pages,
            assets=assets,
            first_seen=first_seen,
            last_seen=last_seen,
            ua_category=str(attrs.get("ua.category", "")),
            ua_name=str(attrs.get("ua.name", "")),
            network=network,
        )

    async def _judge(
        self, client_rows: np.ndarray, ip_rows: np.ndarray
    ) -> tuple[list, dict[int, ClientFinding]]:
        """Decide the given clients and their addresses; returns (client findings, ip row → finding)."""
        total = max(self.stats.lines - self.stats.malformed, 1)
        site_static = float(
            self.tally_static + self.client_state.ints[: self.client_state.size, I_STATIC].sum()
        )
        site_static /= total
        client_summary = summarise(self.client_state)
        ip_summary = summarise(self.ip_state)
        uas = self.vocab.user_agent.strings
        ips = self.ips.strings
        methods, paths = self._representatives(self.client_state)
        busy = may_have_evidence(client_summary, self.thresholds).tolist()
        # Plain lists: indexing numpy arrays one scalar at a time costs more than the engine here.
        counts, ip_counts = _counts(client_summary), _counts(ip_summary)
        methods, paths = methods.tolist(), paths.tolist()
        clients: list[tuple[int, ClientFinding]] = []
        per_ip: dict[int, list[tuple[int, ClientFinding]]] = {}
        bare = client_summary.bare.tolist()
        for row in client_rows.tolist():
            ip, ua = ips[self.client_ip[row]], uas[self.client_ua[row]]
            findings = (
                behaviour_evidence(client_summary, row, site_static, self.thresholds) if busy[row] else []
            )
            walk = self.walks.finding(row, uas)
            if walk is not None:
                findings.append(walk)
            if not findings and bare[row] == counts[row][0]:
                finding = _connections_only(counts[row], ip, ua, self.policy.route_table.default_group.name)
            else:
                facts = self._facts(ip, ua, methods[row], paths[row], self.client_first[row], counts[row][4])
                decision, attrs = await self._decide(facts, findings)
                finding = self._finding(decision, attrs, counts[row], ip, ua)
            clients.append((row, finding))
            per_ip.setdefault(self.client_ip[row], []).append((row, finding))
        ip_methods, ip_paths = self._representatives(self.ip_state)
        by_ip: dict[int, ClientFinding] = {}
        for ip_id in ip_rows.tolist():
            members = per_ip.get(ip_id, [])
            if len(members) == 1:
                only = members[0][1]
                by_ip[ip_id] = ClientFinding(**{**only.__dict__, "user_agent": None})
                continue
            # The address's face is its busiest client that asked for pages, not its spare connections.
            main_row = max(members, key=lambda m: (m[1].pages + m[1].assets, m[1].requests))[0]
            findings = behaviour_evidence(ip_summary, ip_id, site_static, self.thresholds)
            facts = self._facts(
                ips[ip_id],
                uas[self.client_ua[main_row]],
                int(ip_methods[ip_id]),
                int(ip_paths[ip_id]),
                self.client_first[main_row],
                float(ip_summary.last[ip_id]),
            )
            decision, attrs = await self._decide(facts, findings)
            finding = self._finding(decision, attrs, ip_counts[ip_id], ips[ip_id], None)
            finding.user_agents = len(members)
            worst = max((f for _, f in members), key=lambda f: (CATEGORIES.index(f.category), f.bot_score))
            if CATEGORIES.index(worst.category) > CATEGORIES.index(finding.category):
                # One bad user agent behind an address makes the address as bad as that client.
                finding.category, finding.verdict = worst.category, worst.verdict
                finding.bot_score = max(finding.bot_score, worst.bot_score)
                finding.reasons = sorted(
                    {e.code: e for e in [*worst.reasons, *finding.reasons]}.values(),
                    key=lambda e: -abs(e.weight),
                )
            by_ip[ip_id] = finding
        return clients, by_ip

    def _retire(self, idle_before: float | None) -> None:
        """Judge the addresses idle since `idle_before` (all when None), tally them, forget them."""
        n_ips = len(self.ips)
        last_seen = self.ip_state.floats[:n_ips, F_LAST]
        retire_ip = np.ones(n_ips, dtype=np.bool_) if idle_before is None else last_seen < idle_before
        if not retire_ip.any():
            return
        client_ip = np.asarray(self.client_ip, dtype=np.int64)
        retire_client = retire_ip[client_ip] if client_ip.shape[0] else np.zeros(0, dtype=np.bool_)
        clients, by_ip = self._loop.run_until_complete(
            self._judge(np.flatnonzero(retire_client), np.flatnonzero(retire_ip))
        )
        self.tally_static += int(
            self.client_state.ints[: self.client_state.size, I_STATIC][retire_client].sum()
        )
        self._tally(clients, by_ip, retire_client)
        self._forget(retire_client, retire_ip)

    def _tally(
        self,
        clients: list[tuple[int, ClientFinding]],
        by_ip: dict[int, ClientFinding],
        retire_client: np.ndarray,
    ) -> None:
        category_of = np.full(retire_client.shape[0], -1, dtype=np.int64)
        for row, finding in clients:
            category_of[row] = CATEGORIES.index(finding.category)
        no_change = np.arange(retire_client.shape[0])
        # Requests over time: the retired clients' (minute, client) counts become (minute, category).
        buckets, rows, counts = self.timeline.take(retire_client, no_change)
        for k in range(len(CATEGORIES)):
            mask = category_of[rows] == k
            if mask.any():
                self.tally.timeline.add_counts(
                    buckets[mask] * self.timeline.scale, np.full(int(mask.sum()), k), counts[mask]
                )
        # Paths: top paths of each flagged client, and path totals over all flagged clients.
        flagged = np.zeros(retire_client.shape[0], dtype=np.bool_)
        for row, finding in clients:
            flagged[row] = finding.flagged
        path_ids, owners, hits = self.paths_by_client.take(retire_client, no_change)
        keep = flagged[owners]
        if keep.any():
            self.tally.add_bot_paths(path_ids[keep], hits[keep], len(self.vocab.path))
            self._attach_top_paths(dict(clients), owners[keep], path_ids[keep], hits[keep])
        for _, finding in clients:
            self.tally.add_client(finding)
        top_paths = {f.ip: f.top_paths for _, f in clients if f.top_paths}
        for finding in by_ip.values():
            if finding.user_agents == 1 and finding.ip in top_paths:
                finding.top_paths = top_paths[finding.ip]
            self.tally.add_ip(finding)
        self.retired_clients += len(clients)

    def _attach_top_paths(
        self,
        findings: dict[int, ClientFinding],
        owners: np.ndarray,
        path_ids: np.ndarray,
        hits: np.ndarray,
        per_client: int = 5,
    ) -> None:
        paths = self.vocab.path.strings
        order = np.lexsort((-hits, owners))
        for row, path_id, count in zip(
            owners[order].tolist(), path_ids[order].tolist(), hits[order].tolist(), strict=True
        ):
            finding = findings[row]
            if len(finding.top_paths) < per_client:
                finding.top_paths.append((paths[path_id] or "-", int(count)))

    def _forget(self, retire_client: np.ndarray, retire_ip: np.ndarray) -> None:
        """Drop retired clients and addresses from every table, renumbering those still watched."""
        live_clients = np.flatnonzero(~retire_client)
        live_ips = np.flatnonzero(~retire_ip)
        new_client = np.full(retire_client.shape[0], -1, dtype=np.int64)
        new_client[live_clients] = np.arange(live_clients.shape[0])
        new_ip = self.ips.retain(~retire_ip)
        self.timeline.take(np.zeros(retire_client.shape[0], dtype=np.bool_), new_client)
        self.paths_by_client.take(np.zeros(retire_client.shape[0], dtype=np.bool_), new_client)
        self.client_state.keep(live_clients)
        self.ip_state.keep(live_ips)
        self.walks.keep_clients(live_clients)
        self.walks.renumber_ips(new_ip)
        self.client_ip = [int(new_ip[self.client_ip[r]]) for r in live_clients.tolist()]
        self.client_ua = [self.client_ua[r] for r in live_clients.tolist()]
        self.client_first = [self.client_first[r] for r in live_clients.tolist()]
        self._client_of = {
            (ip << 32) | ua: i for i, (ip, ua) in enumerate(zip(self.client_ip, self.client_ua, strict=True))
        }
        # Peer/forwarded address pairs of retired addresses go too, and so do their strings.
        kept_pairs = {pair: int(new_ip[ip]) for pair, ip in self._ip_of_pair.items() if new_ip[ip] >= 0}
        keep_addr = np.zeros(len(self.vocab.addr), dtype=np.bool_)
        keep_xff = np.zeros(len(self.vocab.xff), dtype=np.bool_)
        keep_xff[0] = len(self.vocab.xff) > 0  # id 0 is usually "" (no header): cheap to keep
        for pair in kept_pairs:
            keep_addr[pair >> 32] = True
            keep_xff[pair & 0xFFFFFFFF] = True
        new_addr = self.vocab.addr.retain(keep_addr)
        new_xff = self.vocab.xff.retain(keep_xff)
        self._ip_of_pair = {
            (int(new_addr[p >> 32]) << 32) | int(new_xff[p & 0xFFFFFFFF]): ip for p, ip in kept_pairs.items()
        }

    def _timeline(self) -> tuple[float, float, dict[str, list[int]]]:
        buckets, categories, counts = self.tally.timeline.table()
        step = TIMELINE_BUCKET * self.tally.timeline.scale
        series: dict[str, list[int]] = {c: [] for c in CATEGORIES}
        if buckets.shape[0] == 0:
            return 0.0, float(step), series
        # Re-bin to at most ~120 columns so the chart stays readable and small.
        span = int(buckets.max() - buckets.min()) + 1
        factor = max(1, -(-span // 120))
        start_bucket = int(buckets.min())
        index = (buckets - start_bucket) // factor
        width = int(index.max()) + 1
        for k, name in enumerate(CATEGORIES):
            mask = categories == k
            series[name] = (
                np.bincount(index[mask], weights=counts[mask], minlength=width).astype(int).tolist()
            )
        return float(start_bucket * step), float(step * factor), series

    def _top_bot_paths(self, hits: np.ndarray, count: int = 15) -> list[tuple[str, int]]:
        """The paths flagged clients hit most; ties broken by the path so the order is stable."""
        if not hits.any():
            return []
        floor = np.sort(hits)[-min(count, hits.shape[0])]
        paths = self.vocab.path.strings
        candidates = [(paths[p] or "-", int(hits[p])) for p in np.flatnonzero(hits >= max(floor, 1)).tolist()]
        return sorted(candidates, key=lambda item: (-item[1], item[0]))[:count]

    def finish(self) -> AnalysisResult:
        self._retire(idle_before=None)
        engine, self._engine_instance = self._engine_instance, None
        if engine is not None:
            self._loop.run_until_complete(engine.close())
        self._loop.close()
        tally = self.tally
        hits = tally.bot_path_hits
        bot_paths = self._top_bot_paths(hits)
        start, step, series = self._timeline()
        order = {c: i for i, c in enumerate(CATEGORIES)}
        ips = sorted(tally.ip_findings, key=lambda f: (-order[f.category], -f.bot_score, -f.requests))
        clients = sorted(tally.client_findings, key=lambda f: (-order[f.category], -f.bot_score, -f.requests))
        empty = self.first_time == float("inf")
        return AnalysisResult(
            sources=self.sources,
            format_name=self.format_name,
            stats=self.stats,
            clients=clients,
            ips=ips,
            first_time=0.0 if empty else self.first_time,
            last_time=0.0 if empty else self.last_time,
            timeline_start=start,
            timeline_step=step,
            timeline=series,
            bot_paths=bot_paths,
            requests_by_category=dict(tally.requests),
            ips_by_category=dict(tally.ips),
            clients_by_category=dict(tally.clients),
            score_histogram=tally.score_histogram,
            humans_not_listed=tally.humans_not_kept,
            walks=with_walk_clients(self.walks.walks(self.vocab.user_agent.strings), clients),
        )


def _connections_only(counts: tuple[int, int, int, float, float], ip: str, ua: str, group: str) -> ClientFinding:
    """A client whose every line is a connection without a request (what Chrome's unused spare
    connections leave in nginx's log), too few to be an attack: nothing was asked, so there is
    nothing to hold against it (no user agent, no referer, no assets are no evidence here)."""
    requests, pages, assets, first_seen, last_seen = counts
    return ClientFinding(ip=ip, user_agent=ua, verdict=str(Verdict.ALLOW), category="human", bot_score=0.0,
                         reasons=[], route_group=group, requests=requests, pages=pages, assets=assets,
                         first_seen=first_seen, last_seen=last_seen)


def _counts(summary: BehaviourSummary) -> list[tuple[int, int, int, float, float]]:
    """(requests, pages, assets, first seen, last seen) per row, as Python values."""
    return list(
        zip(
            summary.requests.tolist(),
            summary.pages.tolist(),
            summary.static.tolist(),
            summary.first.tolist(),
            summary.last.tolist(),
            strict=True,
        )
    )
