"""What the configured network databases say about one address, folded into one NetworkFacts.

Works with any mix of MaxMind-format files: GeoIP2/GeoLite2 Country, City, Enterprise (country and
traits), ASN and ISP (autonomous system), Anonymous-IP / Anonymous-Plus / IP-Risk (VPN, Tor, proxy,
hosting flags), Residential-Proxy, and the shipped shieldware hosting database (provider and kind).
Fields are read by name, so a database type we have not seen still contributes what it shares.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shieldware.netdb.readers import OpenDatabase

# The single "kind" of a network, most telling first. A published crawler range is the crawler
# itself; Tor and proxies say more than "some VPN", which says more than "some datacenter".
KIND_ORDER = ("crawler", "tor", "residential-proxy", "proxy", "vpn", "relay", "hosting")

_FLAG_KINDS = (
    ("is_tor_exit_node", "tor"),
    ("is_residential_proxy", "residential-proxy"),
    ("is_public_proxy", "proxy"),
    ("is_anonymous_vpn", "vpn"),
    ("is_hosting_provider", "hosting"),
)

# Top-level keys of MaxMind records this module reads.
_MAXMIND_FIELDS = frozenset({
    "country", "registered_country", "traits", "autonomous_system_number", "autonomous_system_organization",
    "isp", "user_type", "provider_name", *(flag for flag, _ in _FLAG_KINDS),
})


@dataclass(slots=True)
class NetworkFacts:
    """Everything known about a client address. `kinds` holds every kind any database reported.

    Shared by every request from the address (it is cached): treat it as read-only. Not a frozen
    dataclass only because frozen construction costs ~2 µs, a tenth of the uncached lookup budget.
    """

    ip: str
    country: str | None = None
    registered_country: str | None = None
    asn: int | None = None
    asn_org: str | None = None
    isp: str | None = None
    provider: str | None = None
    kind: str | None = None
    kinds: frozenset[str] = frozenset()
    anonymizer: str | None = None  # the VPN/proxy service a MaxMind database names
    crawler: str | None = None  # the operator whose published crawler range holds the address
    sources: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = {
            "ip": self.ip, "country": self.country, "registered_country": self.registered_country,
            "asn": self.asn, "asn_org": self.asn_org, "isp": self.isp, "provider": self.provider,
            "kind": self.kind, "kinds": sorted(self.kinds), "anonymizer": self.anonymizer,
            "crawler": self.crawler, "sources": list(self.sources),
        }
        return {k: v for k, v in out.items() if v not in (None, [], ())}


_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


def normalise_address(text: str) -> tuple[str, bool] | None:
    """(canonical address, is IPv6) with IPv4-mapped IPv6 folded to IPv4; None when not an address.

    socket.inet_pton/inet_ntop (C) rather than the ipaddress module: this runs for every new client
    address, and ipaddress's pure-Python IPv6 parser alone would use most of the lookup budget.
    """
    try:
        if ":" not in text:
            text = text.strip()
            packed = socket.inet_pton(socket.AF_INET, text)
            # inet_pton takes dotted decimal only, so text without an octet that starts with 0 is
            # already what inet_ntop would write back (and inet_ntop, through sprintf, costs more
            # than the rest of a lookup's normalising).
            if text[0] != "0" and ".0" not in text and text.count(".") == 3:
                return text, False
            return socket.inet_ntop(socket.AF_INET, packed), False
        packed = socket.inet_pton(socket.AF_INET6, text.strip())
    except (OSError, ValueError, TypeError):
        return None
    if packed[:12] == _MAPPED_PREFIX:
        return socket.inet_ntop(socket.AF_INET, packed[12:]), False
    return socket.inet_ntop(socket.AF_INET6, packed), True


class _Collector:
    """Accumulates fields from several records; the first database to answer a field wins."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.kinds: set[str] = set()
        self.sources: list[str] = []

    def put(self, name: str, value: Any) -> None:
        if value not in (None, "") and name not in self.fields:
            self.fields[name] = value

    def absorb(self, record: dict, database: OpenDatabase) -> None:
        self.sources.append(database.name)
        kind, provider = record.get("kind"), record.get("provider")
        if isinstance(kind, str) and isinstance(provider, str):
            # The shieldware hosting database: {provider, kind, source}.
            self.kinds.add(kind)
            self.put("provider", provider)
            if kind == "crawler":
                self.put("crawler", provider)
        if "Residential-Proxy" in database.database_type:
            self.kinds.add("residential-proxy")
        if not _MAXMIND_FIELDS.isdisjoint(record):  # skip the field-by-field walk for our own records
            self._absorb_maxmind(record)

    def _absorb_maxmind(self, record: dict) -> None:
        traits = record.get("traits") if isinstance(record.get("traits"), dict) else {}
        country = record.get("country")
        if isinstance(country, dict):
            self.put("country", country.get("iso_code"))
        registered = record.get("registered_country")
        if isinstance(registered, dict):
            self.put("registered_country", registered.get("iso_code"))
        for source in (record, traits):
            self.put("asn", source.get("autonomous_system_number"))
            self.put("asn_org", source.get("autonomous_system_organization"))
            self.put("isp", source.get("isp"))
            for flag, flag_kind in _FLAG_KINDS:
                if source.get(flag) is True:
                    self.kinds.add(flag_kind)
            if source.get("user_type") == "hosting":
                self.kinds.add("hosting")
        if isinstance(record.get("provider_name"), str):
            self.put("anonymizer", record["provider_name"])

    def facts(self, ip: str) -> NetworkFacts:
        kind = next((k for k in KIND_ORDER if k in self.kinds), None)
        asn = self.fields.get("asn")
        return NetworkFacts(
            ip=ip,
            country=self.fields.get("country"),
            registered_country=self.fields.get("registered_country"),
            asn=asn if isinstance(asn, int) else None,
            asn_org=self.fields.get("asn_org"),
            isp=self.fields.get("isp"),
            provider=self.fields.get("provider"),
            kind=kind,
            kinds=frozenset(self.kinds),
            anonymizer=self.fields.get("anonymizer"),
            crawler=self.fields.get("crawler"),
            sources=tuple(self.sources),
        )


class NetworkLookup:
    """Looks an address up in every configured database, in order (earlier files win a shared field)."""

    def __init__(self, databases: Sequence[OpenDatabase]) -> None:
        self.databases = tuple(databases)

    def facts(self, client_ip: str) -> NetworkFacts | None:
        normalised = normalise_address(client_ip)
        if normalised is None:
            return None
        ip, ipv6 = normalised
        collector = None
        for database in self.databases:
            record = database.get(ip, ipv6)
            if record:
                collector = collector or _Collector()
                collector.absorb(record, database)
        # Most shoppers' addresses are in no list: skip the merging for them.
        return NetworkFacts(ip) if collector is None else collector.facts(ip)

    def knows(self, client_ip: str) -> bool:
        """Does any database hold a record for this address (as facts() would find it)? False for
        what is not an address. The fast lane asks it of every new client, and most are in no
        database: answered without the merging and the NetworkFacts that facts() makes."""
        normalised = normalise_address(client_ip)
        if normalised is None:
            return False
        ip, ipv6 = normalised
        for database in self.databases:  # noqa: SIM110 - a loop: any() and a generator cost more
            if database.get(ip, ipv6):
                return True
        return False

    def report(self, client_ip: str) -> dict[str, Any]:
        """Everything every database says about an address, raw records included (`geoip lookup`)."""
        normalised = normalise_address(client_ip)
        if normalised is None:
            return {"ip": client_ip, "error": "not an IP address"}
        ip, ipv6 = normalised
        collector = _Collector()
        answers = []
        for database in self.databases:
            record, prefix_len = database.get_with_network(ip, ipv6)
            answer: dict[str, Any] = {"database": str(database.path), "type": database.database_type}
            if record:
                collector.absorb(record, database)
                network = ipaddress.ip_network(f"{ip}/{prefix_len}", strict=False)
                answer.update(network=str(network), record=record)
            else:
                answer["record"] = None
            answers.append(answer)
        summary = collector.facts(ip).as_dict()
        out: dict[str, Any] = {"ip": client_ip}
        if ip != client_ip:
            out["normalised"] = ip
        out.update({k: v for k, v in summary.items() if k != "ip"})
        out["databases"] = answers
        return out
