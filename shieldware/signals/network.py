"""Network signal: where the request comes from — a home or mobile line, a datacenter, a VPN, Tor, a proxy.

Looks the client address up in the databases the policy's `network:` section lists (the shipped
hosting database by default; MaxMind GeoIP2/GeoLite2 files when the operator has them), publishes
what it found as attributes rules can match (`net.country`, `net.asn`, `net.provider`, `net.kind`…),
and adds at most one anonymity finding per request plus the policy's country/ASN weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.netdb.catalogue import PROVIDERS
from shieldware.netdb.lookup import NetworkFacts, NetworkLookup
from shieldware.netdb.readers import BUILTIN_HOSTING, NetworkDatabaseError, OpenDatabase, open_database
from shieldware.policy import register_attribute, register_section
from shieldware.signals.base import Inspection

log = logging.getLogger("shieldware.network")

# Weights. A datacenter address alone is not a bot: corporate VPNs, privacy users, and cloud
# desktops browse from them too. 30 points leaves a clean browser under every shipped threshold
# (checkout/login challenge at 40) but pushes a request with any other finding over it; strict
# groups add a rule (`when: {group: checkout, net.kind: hosting}, action: challenge`).
register_reason("net.hosting", 30, "The client address belongs to a cloud or datacenter network (bots rent "
                "servers; shoppers browse from home and mobile lines). Alone it does not challenge a clean "
                "browser, since corporate VPNs and privacy users exit from datacenters too.")
register_reason("net.vpn", 25, "The client address is a known VPN exit. Many VPN users are real shoppers, so "
                "this only adds to other findings.")
register_reason("net.tor", 45, "The client address is a Tor exit node: anonymous, and heavily used for "
                "carding and credential attacks; enough alone to challenge login and checkout.")
register_reason("net.proxy", 50, "The client address is a public open proxy, which real shoppers rarely use.")
register_reason("net.residential_proxy", 55, "The client address is a residential proxy exit: a home line "
                "rented out to route scrapers and bots so they look like shoppers.")
register_reason("net.country", 0, "The policy weighs requests from this country (network.countries).")
register_reason("net.asn", 0, "The policy weighs requests from this network operator (network.asns).")

register_attribute("net.country", "ISO country code of the client address (needs a MaxMind Country/City db)")
register_attribute("net.asn", "autonomous system number of the client address, e.g. 16509 (needs an ASN db)")
register_attribute("net.asn_org", "the organisation owning the client's autonomous system")
register_attribute("net.provider", "the hosting/VPN/crawler provider whose published range holds the "
                   "client address (aws, gcp, hetzner, googlebot, protonvpn, ...)")
register_attribute("net.kind", "what the client network is: hosting, vpn, tor, proxy, residential-proxy, "
                   "relay, crawler, or none")
register_attribute("net.crawler", "the crawler operator whose published range holds the client address "
                   "(googlebot, bingbot, openai, ...) — what verifying a crawler's claimed name needs")

_KIND_EVIDENCE = {
    "hosting": "net.hosting",
    "vpn": "net.vpn",
    "tor": "net.tor",
    "proxy": "net.proxy",
    "residential-proxy": "net.residential_proxy",
}


# ---- the `network:` policy section ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DatabaseEntry:
    path: str
    optional: bool = False


@dataclass(frozen=True)
class NetworkSettings:
    enabled: bool = True
    databases: tuple[DatabaseEntry, ...] = (DatabaseEntry(BUILTIN_HOSTING),)
    cache_size: int = 65_536
    countries: dict[str, float] = field(default_factory=dict)
    asns: dict[int, float] = field(default_factory=dict)


def _points(value: Any, where: str, check: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -100 <= value <= 100:
        check.fail(where, "a number of points from -100 to 100", value)
        return None
    return float(value)


def _parse_databases(raw: Any, where: str, check: Any) -> tuple[DatabaseEntry, ...]:
    if not isinstance(raw, list):
        check.fail(where, "a list of databases, each a path or {path: FILE, optional: true|false}", raw)
        return ()
    entries = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if isinstance(item, str):
            item = {"path": item}
        item = check.mapping(item, at)
        check.unknown_keys(item, ("path", "optional"), at)
        path, optional = item.get("path"), item.get("optional", False)
        if not isinstance(path, str) or not path.strip():
            check.fail(f"{at}.path", f"a .mmdb file path, or {BUILTIN_HOSTING} (the shipped database)", path)
            continue
        if not isinstance(optional, bool):
            check.fail(f"{at}.optional", "true or false", optional)
            continue
        entries.append(DatabaseEntry(path.strip(), optional))
    return tuple(entries)


def _parse_asn(key: Any) -> int | None:
    text = str(key).strip().upper().removeprefix("AS")
    return int(text) if text.isdigit() else None


def parse_network_section(raw: Any, where: str, check: Any) -> NetworkSettings:
    raw = check.mapping(raw, where)
    check.unknown_keys(raw, ("enabled", "databases", "cache_size", "countries", "asns"), where)
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        check.fail(f"{where}.enabled", "true or false", enabled)
    databases = NetworkSettings.databases
    if "databases" in raw:
        databases = _parse_databases(raw["databases"], f"{where}.databases", check)
    cache_size = raw.get("cache_size", NetworkSettings.cache_size)
    if isinstance(cache_size, bool) or not isinstance(cache_size, int) or not 0 <= cache_size <= 10_000_000:
        check.fail(f"{where}.cache_size", "a number of addresses from 0 to 10000000", cache_size)
        cache_size = NetworkSettings.cache_size
    countries = {}
    for code, value in check.mapping(raw.get("countries"), f"{where}.countries").items():
        if not isinstance(code, str) or len(code) != 2 or not code.isalpha():
            check.fail(f"{where}.countries", "two-letter ISO country codes such as DE", code)
            continue
        points = _points(value, f"{where}.countries.{code}", check)
        if points is not None:
            countries[code.upper()] = points
    asns = {}
    for key, value in check.mapping(raw.get("asns"), f"{where}.asns").items():
        number = _parse_asn(key)
        if number is None:
            check.fail(f"{where}.asns", "autonomous system numbers such as 16509 or AS16509", key)
            continue
        points = _points(value, f"{where}.asns.{key}", check)
        if points is not None:
            asns[number] = points
    return NetworkSettings(bool(enabled), databases, cache_size, countries, asns)


register_section("network", parse_network_section, NetworkSettings)


def open_configured(settings: NetworkSettings) -> list[OpenDatabase]:
    """Open every configured database. A required one that fails raises (naming the file); an
    optional one that fails is logged and left out."""
    opened = []
    for entry in settings.databases:
        try:
            opened.append(open_database(entry.path))
        except NetworkDatabaseError as exc:
            if not entry.optional:
                raise
            log.warning("%s — it is optional, so network lookups go on without it", exc)
    if settings.databases and not opened:
        log.warning("no network database could be opened; the network signal is off")
    return opened


# ---- the signal -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkView:
    """What one address contributes to every request from it, computed once and cached."""

    facts: NetworkFacts
    attrs: dict[str, Any]
    evidence: tuple[tuple[str, dict[str, Any]], ...]
    weighted: tuple[tuple[str, float, dict[str, Any]], ...]


def view_of(facts: NetworkFacts, settings: NetworkSettings) -> NetworkView:
    attrs: dict[str, Any] = {"net.info": facts}
    for name, value in (("net.country", facts.country), ("net.asn", facts.asn),
                        ("net.asn_org", facts.asn_org), ("net.provider", facts.provider),
                        ("net.kind", facts.kind), ("net.crawler", facts.crawler)):
        if value is not None:
            attrs[name] = value
    evidence = []
    code = _KIND_EVIDENCE.get(facts.kind or "")
    if code is not None:
        # One finding per address: a VPN exit in a datacenter is one fact (the person hides behind a
        # VPN), not two that would add up past a threshold neither deserves alone.
        detail: dict[str, Any] = {"kind": facts.kind}
        for name in ("provider", "anonymizer", "asn", "asn_org"):
            value = getattr(facts, name)
            if value is not None:
                detail[name] = value
        evidence.append((code, detail))
    weighted = []
    if facts.country is not None and facts.country in settings.countries:
        weighted.append(("net.country", settings.countries[facts.country], {"country": facts.country}))
    if facts.asn is not None and facts.asn in settings.asns:
        weighted.append(("net.asn", settings.asns[facts.asn], {"asn": facts.asn, "asn_org": facts.asn_org}))
    return NetworkView(facts, attrs, tuple(evidence), tuple(weighted))


class NetworkSignal:
    """Per-address lookups in the configured databases, cached (bounded LRU) per process."""

    name = "network"
    lane = "address"  # plans are per client address; configure() makes the engine forget them

    def __init__(self, settings: NetworkSettings | None = None) -> None:
        self._explicit = settings
        self.settings: NetworkSettings | None = None
        self.lookup: NetworkLookup | None = None
        self._cached_view: Any = None
        self._engine: Any = None

    def bind(self, engine: Any) -> None:
        """Open the databases at engine start, so a missing or corrupt file fails here, not per request."""
        self._engine = engine
        self.configure(self._explicit or engine.policy.section("network"))

    def configure(self, settings: NetworkSettings) -> None:
        databases = open_configured(settings) if settings.enabled else []
        self.settings = settings
        self.lookup = NetworkLookup(databases)
        self._cached_view = lru_cache(maxsize=settings.cache_size)(self._view_uncached)
        if self._engine is not None:
            self._engine.forget_plans()  # plans carry what the old databases said about addresses

    def _view_uncached(self, client_ip: str) -> NetworkView | None:
        if not self.lookup.databases:
            return None
        facts = self.lookup.facts(client_ip)
        if facts is None or not facts.sources:
            return None  # not an address, or no database knows it: nothing to add
        return view_of(facts, self.settings)

    def _ensure_configured(self) -> None:
        """A signal made outside an engine (no bind) opens its databases on first use."""
        if self.lookup is None:
            self.configure(self._explicit or NetworkSettings())

    def view(self, client_ip: str) -> NetworkView | None:
        """The cached answer for an address (None: nothing known, not an address, or the signal is off)."""
        self._ensure_configured()
        return self._cached_view(client_ip)

    def lane_address(self, client_ip: str) -> bool:
        """Nothing to say of this address (no database knows it): `inspect` adds nothing for it.
        The same answer as `view(client_ip) is None`, without making a view: the lane asks this once
        per new client, and a plain one's view would only fill the cache."""
        self._ensure_configured()
        return not self.lookup.knows(client_ip)

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        view = self.view(facts.client_ip)
        if view is None:
            return
        inspection.attrs.update(view.attrs)
        for code, detail in view.evidence:
            inspection.add(code, **detail)
        for code, weight, detail in view.weighted:
            inspection.add_weighted(code, weight, **detail)


# Crawlers whose address ranges the shipped database holds: for these, a claimed name can be checked
# against `net.crawler` (a "Googlebot" outside the googlebot ranges is a fake crawler).
PUBLISHED_CRAWLERS = frozenset(p.name for p in PROVIDERS if p.kind == "crawler")


def published_crawler(attrs: dict[str, Any]) -> str | None:
    """The crawler whose published range holds this request's address (None: no crawler range)."""
    return attrs.get("net.crawler")
