"""What an analysis concludes: per-client findings, the running tallies behind the report, the result."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shieldware.analyze.columns import ParseStats
from shieldware.analyze.counting import PairCounter
from shieldware.decision import Decision, Verdict
from shieldware.evidence import Evidence, describe

CATEGORIES = ("human", "verified-bot", "declared-bot", "suspicious", "bad-bot")
FLAGGED = ("bad-bot", "suspicious")
TIMELINE_BUCKET = 60  # seconds; coarsened automatically for long logs


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


def network_label(finding: ClientFinding) -> str:
    """The client's network as a person reads it: "AS64500 Example Telecom", a provider, or ""."""
    net = finding.network
    asn = net.get("asn")
    org = net.get("as_org") or net.get("asn_org") or net.get("org") or net.get("provider") or ""
    if asn:
        return f"AS{asn} {org}".strip()
    return str(org)


def with_walk_clients(walks: list[dict[str, Any]], findings: list[ClientFinding]) -> list[dict[str, Any]]:
    """Each walk with the addresses whose clients carry it and their commonest networks (where the
    rotating proxies came from, when a network database answers)."""
    members: dict[tuple, list[ClientFinding]] = {}
    for finding in findings:
        for evidence in finding.reasons:
            if evidence.code == "behav.distributed_walk":
                d = evidence.detail
                members.setdefault((d["user_agent"], d["first_id"], d["first_seen"]), []).append(finding)
    out = []
    for walk in walks:
        found = members.get((walk["user_agent"], walk["first_id"], walk["first_seen"]), [])
        labels = Counter(label for label in map(network_label, found) if label)
        out.append({**walk, "addresses": len({f.ip for f in found}),
                    "networks": [{"network": label, "clients": n} for label, n in labels.most_common(3)]})
    return out


def categorise(decision: Decision, attrs: dict[str, Any]) -> str:
    """human / verified-bot / declared-bot / suspicious / bad-bot from the engine's decision."""
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


class Tally:
    """Everything the report needs about clients already judged, in memory that does not grow with
    the number of people: exact counts for all, full findings for every bot and for people only up
    to `keep_humans` (the count stays exact when their details are no longer kept)."""

    def __init__(self, keep_humans: int = 20_000, path_capacity: int = 2_000_000) -> None:
        self.keep_humans = keep_humans
        self.requests = dict.fromkeys(CATEGORIES, 0)
        self.ips = dict.fromkeys(CATEGORIES, 0)
        self.clients = dict.fromkeys(CATEGORIES, 0)
        self.score_histogram = {c: [0] * 10 for c in CATEGORIES}
        self.timeline = PairCounter(path_capacity, coarsen_high=True)  # (minute, category index)
        self.bot_path_hits = np.zeros(0, dtype=np.int64)
        self.client_findings: list[ClientFinding] = []
        self.ip_findings: list[ClientFinding] = []
        self.humans_not_kept = 0
        self._humans_kept = {"clients": 0, "ips": 0}

    def add_client(self, finding: ClientFinding) -> None:
        self.requests[finding.category] += finding.requests
        self.clients[finding.category] += 1
        self.score_histogram[finding.category][min(int(finding.bot_score // 10), 9)] += 1
        self._keep(self.client_findings, finding, "clients")

    def add_ip(self, finding: ClientFinding) -> None:
        self.ips[finding.category] += 1
        self._keep(self.ip_findings, finding, "ips")

    def _keep(self, into: list[ClientFinding], finding: ClientFinding, kind: str) -> None:
        if finding.category == "human":
            if self._humans_kept[kind] >= self.keep_humans:
                self.humans_not_kept += kind == "ips"
                return
            self._humans_kept[kind] += 1
        into.append(finding)

    def add_bot_paths(self, path_ids: np.ndarray, counts: np.ndarray, n_paths: int) -> None:
        hits = np.bincount(path_ids, weights=counts, minlength=n_paths).astype(np.int64)
        if hits.shape[0] > self.bot_path_hits.shape[0]:
            hits[: self.bot_path_hits.shape[0]] += self.bot_path_hits
            self.bot_path_hits = hits
        else:
            self.bot_path_hits[: hits.shape[0]] += hits


@dataclass
class AnalysisResult:
    sources: list[str]
    format_name: str
    stats: ParseStats
    clients: list[ClientFinding]  # per IP + user agent: every bot, people up to Tally.keep_humans
    ips: list[ClientFinding]  # per IP, likewise
    first_time: float
    last_time: float
    timeline_start: float
    timeline_step: float
    timeline: dict[str, list[int]]  # category → requests per bucket
    bot_paths: list[tuple[str, int]]  # paths most requested by flagged clients
    requests_by_category: dict[str, int]
    ips_by_category: dict[str, int] = field(default_factory=dict)
    clients_by_category: dict[str, int] = field(default_factory=dict)
    score_histogram: dict[str, list[int]] = field(default_factory=dict)
    humans_not_listed: int = 0
    # Catalogue walks across addresses (analyze/walks.py): one user agent, ids in order, address
    # after address. Their clients carry behav.distributed_walk; here is the whole of each.
    walks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def flagged_ips(self) -> list[ClientFinding]:
        return [f for f in self.ips if f.flagged]
