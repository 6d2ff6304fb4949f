"""Verified crawlers: does a request claiming Googlebot, Bingbot, … come from its operator's own network?"""

from __future__ import annotations

import bisect
import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import shieldware.presets  # noqa: F401  (the crawler presets: policy vocabulary this signal serves)
from shieldware.datafiles import load_json
from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.fastlane.plan import IDLE, LanePart
from shieldware.policy import register_attribute, register_section
from shieldware.signals.base import Inspection

register_reason(
    "net.fake_crawler",
    90,
    "The User-Agent claims a search-engine or platform crawler, but the "
    "address is outside every range its operator publishes for it.",
)
register_reason(
    "ua.verified_crawler",
    -60,
    "A crawler whose address is inside its operator's published "
    "ranges (or confirmed by forward-confirmed reverse DNS): trusted, not a disguise.",
)

register_attribute(
    "verified_bot",
    "true when the request is a crawler confirmed by its operator's IP ranges "
    "or forward-confirmed reverse DNS",
)
register_attribute(
    "crawler.claim",
    "verified, fake, pending (reverse DNS under way), unlisted (a crawler with no published ranges) or none",
)
register_attribute(
    "crawler.name", "the verified-crawler definition the user agent claims (googlebot, bingbot, ...)"
)


# ---- address ranges ---------------------------------------------------------------------------


def ip_to_int(text: str) -> tuple[int, int] | None:
    """(version, integer) of an address, or None; inet_pton is several times faster than ipaddress."""
    try:
        if ":" in text:
            packed = socket.inet_pton(socket.AF_INET6, text)
            if packed[:12] == b"\x00" * 10 + b"\xff\xff":  # IPv4-mapped: judge it as the IPv4 address
                return 4, int.from_bytes(packed[12:], "big")
            return 6, int.from_bytes(packed, "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):
        return None


class RangeSet:
    """CIDR ranges as sorted, merged [start, end] integer pairs; membership is one bisect per family."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, cidrs: Iterable[str]) -> None:
        pairs: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for text in cidrs:
            net = ipaddress.ip_network(text.strip(), strict=False)
            pairs[net.version].append((int(net.network_address), int(net.broadcast_address)))
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for version, spans in pairs.items():
            merged: list[list[int]] = []
            for start, end in sorted(spans):
                if merged and start <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            self._starts[version] = [s for s, _ in merged]
            self._ends[version] = [e for _, e in merged]

    def __len__(self) -> int:
        return len(self._starts[4]) + len(self._starts[6])

    def contains(self, ip: str) -> bool:
        parsed = ip_to_int(ip)
        if parsed is None:
            return False
        version, value = parsed
        starts = self._starts[version]
        i = bisect.bisect_right(starts, value) - 1
        return i >= 0 and value <= self._ends[version][i]


# ---- crawler definitions ----------------------------------------------------------------------


@dataclass(frozen=True)
class CrawlerDefinition:
    name: str
    operator: str
    pattern: str
    category: str
    ranges: RangeSet
    reverse_dns: tuple[str, ...] = ()
    range_sources: tuple[str, ...] = field(default=())


class CrawlerRegistry:
    """All verified-crawler definitions, with one combined regex that says which one a UA claims."""

    def __init__(self, crawlers: Sequence[CrawlerDefinition]) -> None:
        self.crawlers = tuple(crawlers)
        self._claim_re = re.compile(
            "|".join(f"(?P<c{i}>{c.pattern})" for i, c in enumerate(self.crawlers)) or r"(?!x)x"
        )
        self.claimed_by = lru_cache(maxsize=8192)(self._claimed_by)

    def _claimed_by(self, user_agent: str) -> CrawlerDefinition | None:
        found = self._claim_re.search(user_agent)
        return self.crawlers[int(found.lastgroup[1:])] if found is not None else None

    def by_name(self, name: str) -> CrawlerDefinition | None:
        return next((c for c in self.crawlers if c.name == name), None)


def registry_from_json(document: dict) -> CrawlerRegistry:
    return CrawlerRegistry(
        [
            CrawlerDefinition(
                c["name"],
                c["operator"],
                c["pattern"],
                c["category"],
                RangeSet([*c.get("ipv4", []), *c.get("ipv6", [])]),
                tuple(c.get("reverse_dns", [])),
                tuple(c.get("range_sources", [])),
            )
            for c in document["crawlers"]
        ]
    )


@cache
def shipped_registry() -> CrawlerRegistry:
    return registry_from_json(load_json("fingerprints", "verified-crawlers.json"))


# ---- forward-confirmed reverse DNS (optional) -------------------------------------------------


Resolver = Callable[[str], tuple[str, list[str]]]


def system_fcrdns_lookup(ip: str) -> tuple[str, list[str]]:
    """PTR name of `ip` and the addresses that name resolves to (blocking; run in a worker thread)."""
    host = socket.gethostbyaddr(ip)[0]
    addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    return host, addresses


class ForwardConfirmedDNS:
    """Confirms a crawler address by PTR → A/AAAA round trip, in worker threads, with a TTL cache.

    The request that first sees an address never waits: it is judged 'pending' while the lookup
    runs (bounded by `timeout_seconds`), and later requests from that address use the cached
    answer. Time is an argument (`now`) so log replay and tests control expiry.
    """

    def __init__(
        self,
        timeout_seconds: float = 2.0,
        ttl_seconds: float = 86400.0,
        max_entries: int = 50000,
        lookup: Resolver = system_fcrdns_lookup,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._lookup = lookup
        self._answers: dict[str, tuple[float, str, tuple[str, ...]]] = {}
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shieldware-fcrdns")

    def _resolve(self, ip: str) -> tuple[str, tuple[str, ...]]:
        try:
            host, addresses = self._lookup(ip)
            return host.rstrip(".").lower(), tuple(addresses)
        except (OSError, UnicodeError, ValueError):
            return "", ()

    def verdict(self, ip: str, suffixes: Sequence[str], now: float) -> str:
        """'verified', 'failed' or 'pending' for `ip` against the operator's host-name suffixes."""
        with self._lock:
            cached = self._answers.get(ip)
            if cached is not None and now - cached[0] < self.ttl_seconds:
                return _judge(ip, cached[1], cached[2], suffixes)
            future = self._pending.get(ip)
            if future is None:
                self._pending[ip] = self._pool.submit(self._resolve, ip)
                return "pending"
        if not future.done():
            return "pending"
        try:
            host, addresses = future.result(timeout=0)
        except Exception:
            host, addresses = "", ()
        with self._lock:
            self._pending.pop(ip, None)
            if len(self._answers) >= self.max_entries:
                self._answers.clear()
            self._answers[ip] = (now, host, addresses)
        return _judge(ip, host, addresses, suffixes)

    def wait(self, ip: str) -> None:
        """Block until a pending lookup of `ip` ends or times out (for tests and batch replay)."""
        future = self._pending.get(ip)
        if future is not None:
            try:
                future.result(timeout=self.timeout_seconds)
            except Exception:
                pass

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _judge(ip: str, host: str, addresses: Sequence[str], suffixes: Sequence[str]) -> str:
    if not host or ip not in addresses:
        return "failed"
    return (
        "verified"
        if any(
            host.endswith(s.lstrip(".")) and (host == s.lstrip(".") or host.endswith("." + s.lstrip(".")))
            for s in suffixes
        )
        else "failed"
    )


# ---- policy section ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CrawlerSettings:
    fcrdns: bool = False
    fcrdns_timeout: float = 2.0
    fcrdns_ttl: float = 86400.0


def _parse_settings(raw: Any, where: str, check: Any) -> CrawlerSettings:
    raw = check.mapping(raw, where)
    check.unknown_keys(raw, ("fcrdns", "fcrdns_timeout", "fcrdns_ttl"), where)
    fcrdns = raw.get("fcrdns", False)
    if not isinstance(fcrdns, bool):
        check.fail(f"{where}.fcrdns", "true or false", fcrdns)
        fcrdns = False
    numbers = {}
    for key, default in (("fcrdns_timeout", 2.0), ("fcrdns_ttl", 86400.0)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            check.fail(f"{where}.{key}", "a positive number of seconds", value)
            value = default
        numbers[key] = float(value)
    return CrawlerSettings(fcrdns=fcrdns, **numbers)


register_section("crawlers", _parse_settings, CrawlerSettings)


# ---- the signal -------------------------------------------------------------------------------


class VerifiedCrawlerSignal:
    """Publishes `verified_bot` / `crawler.claim` and weighs a crawler claim by where it comes from."""

    name = "crawlers"

    def __init__(
        self, registry: CrawlerRegistry | None = None, fcrdns: ForwardConfirmedDNS | None = None
    ) -> None:
        self._registry = registry
        self._fcrdns = fcrdns

    @property
    def registry(self) -> CrawlerRegistry:
        if self._registry is None:
            self._registry = shipped_registry()
        return self._registry

    def bind(self, engine: Any) -> None:
        settings: CrawlerSettings = engine.policy.section("crawlers")
        if settings.fcrdns and self._fcrdns is None:
            self._fcrdns = ForwardConfirmedDNS(settings.fcrdns_timeout, settings.fcrdns_ttl)

    def lane_part(self, facts: RequestFacts, inspection: Inspection) -> LanePart | None:
        """Only requests that claim no listed crawler are planned: a claim is checked per request
        (a reverse-DNS answer may still be on its way)."""
        return IDLE if inspection.attrs.get("crawler.claim") in ("none", "unlisted") else None

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        attrs = inspection.attrs
        attrs["verified_bot"] = False
        user_agent = facts.header_map.get("user-agent")
        crawler = self.registry.claimed_by(user_agent) if user_agent else None
        if crawler is None:
            attrs["crawler.claim"] = "unlisted" if attrs.get("ua.is_bot") else "none"
            return
        attrs["crawler.name"] = crawler.name
        if crawler.ranges.contains(facts.client_ip):
            self._verified(inspection, crawler, "published-ranges")
            return
        if self._fcrdns is not None and crawler.reverse_dns:
            answer = self._fcrdns.verdict(facts.client_ip, crawler.reverse_dns, facts.now)
            if answer == "verified":
                self._verified(inspection, crawler, "reverse-dns")
                return
            if answer == "pending":
                attrs["crawler.claim"] = "pending"
                return
        attrs["crawler.claim"] = "fake"
        inspection.add(
            "net.fake_crawler", crawler=crawler.name, operator=crawler.operator, ip=facts.client_ip
        )

    @staticmethod
    def _verified(inspection: Inspection, crawler: CrawlerDefinition, how: str) -> None:
        inspection.attrs["verified_bot"] = True
        inspection.attrs["crawler.claim"] = "verified"
        inspection.add("ua.verified_crawler", crawler=crawler.name, operator=crawler.operator, by=how)
