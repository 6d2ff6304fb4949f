"""Lookups in MaxMind's test databases: answers match their source JSON; broken files fail at start."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from pathlib import Path

import pytest

from shieldware.engine import Engine
from shieldware.facts import facts_from_headers
from shieldware.netdb import readers
from shieldware.netdb.lookup import NetworkLookup
from shieldware.netdb.readers import NetworkDatabaseError, open_database
from shieldware.policy import default_policy
from tests.support import CHROME_NAVIGATION

MAXMIND = Path("/work/shared/data/maxmind-test")
TEST_DATA = MAXMIND / "test-data"
SOURCE_DATA = MAXMIND / "source-data"
BROKEN = (
    "GeoIP2-City-Test-Broken-Double-Format.mmdb",
    "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
    "MaxMind-DB-test-broken-pointers-24.mmdb",
    "MaxMind-DB-test-broken-search-tree-24.mmdb",
)

pytestmark = pytest.mark.skipif(not TEST_DATA.is_dir(), reason=f"MaxMind test data not found at {MAXMIND}")


def _as_lookup_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The JSON writes IPv4 networks of IPv6 databases as ::a.b.c.d/N (N >= 96)."""
    network = ipaddress.ip_network(text, strict=False)
    if network.version == 6 and network.prefixlen >= 96 and int(network.network_address) >> 32 == 0:
        return ipaddress.IPv4Network((int(network.network_address), network.prefixlen - 96))
    return network


def _unambiguous_samples(name: str, per_version: int = 12) -> list[tuple[str, dict]]:
    """(address, expected record) for networks that no other entry of the JSON overlaps, both IP versions."""
    entries = []
    for item in json.loads((SOURCE_DATA / name).read_text(encoding="utf-8")):
        (network_text, record), = item.items()
        entries.append((_as_lookup_network(network_text), record))
    samples: dict[int, list[tuple[str, dict]]] = {4: [], 6: []}
    for network, record in entries:
        if len(samples[network.version]) >= per_version:
            continue
        if any(other is not network and other.version == network.version and other.overlaps(network)
               for other, _ in entries):
            continue
        middle = network.network_address + network.num_addresses // 2
        samples[network.version].append((str(middle), record))
    return samples[4] + samples[6]


def _record(database: str, ip: str) -> dict | None:
    opened = open_database(TEST_DATA / database)
    normalised = ipaddress.ip_address(ip)
    return opened.get(str(normalised), normalised.version == 6)


@pytest.mark.parametrize("database,source", [
    ("GeoIP2-Country-Test.mmdb", "GeoIP2-Country-Test.json"),
    ("GeoIP2-City-Test.mmdb", "GeoIP2-City-Test.json"),
    ("GeoLite2-ASN-Test.mmdb", "GeoLite2-ASN-Test.json"),
    ("GeoIP2-Anonymous-IP-Test.mmdb", "GeoIP2-Anonymous-IP-Test.json"),
    ("GeoIP2-ISP-Test.mmdb", "GeoIP2-ISP-Test.json"),
    ("GeoIP-Residential-Proxy-Test.mmdb", "GeoIP-Residential-Proxy-Test.json"),
])
def test_records_match_the_source_json(database, source):
    samples = _unambiguous_samples(source)
    versions = {ipaddress.ip_address(ip).version for ip, _ in samples}
    assert samples, "no unambiguous sample networks found"
    if database.startswith(("GeoIP2-Country", "GeoIP2-City")):
        assert versions == {4, 6}  # both families covered where the file has both
    for ip, expected in samples:
        assert _record(database, ip) == expected, ip


@pytest.mark.parametrize("source", ["GeoIP2-Country-Test.json", "GeoIP2-City-Test.json"])
def test_country_of_sampled_networks(source):
    database = source.replace(".json", ".mmdb")
    lookup = NetworkLookup([open_database(TEST_DATA / database)])
    checked = 0
    for ip, expected in _unambiguous_samples(source):
        iso = (expected.get("country") or {}).get("iso_code")
        facts = lookup.facts(ip)
        assert facts.country == iso, ip
        assert facts.registered_country == (expected.get("registered_country") or {}).get("iso_code")
        checked += iso is not None
    assert checked >= 5


def test_asn_and_org_of_sampled_networks():
    lookup = NetworkLookup([open_database(TEST_DATA / "GeoLite2-ASN-Test.mmdb")])
    samples = _unambiguous_samples("GeoLite2-ASN-Test.json")
    assert {ipaddress.ip_address(ip).version for ip, _ in samples} == {4, 6}
    for ip, expected in samples:
        facts = lookup.facts(ip)
        assert facts.asn == expected["autonomous_system_number"]
        assert facts.asn_org == expected.get("autonomous_system_organization")


def test_anonymous_ip_flags_become_one_kind():
    lookup = NetworkLookup([open_database(TEST_DATA / "GeoIP2-Anonymous-IP-Test.mmdb")])
    everything = lookup.facts("81.2.69.1")  # every flag set in the source JSON
    assert everything.kinds == {"vpn", "hosting", "proxy", "residential-proxy", "tor"}
    assert everything.kind == "tor"
    assert lookup.facts("71.160.223.7").kind == "hosting"
    assert lookup.facts("186.30.236.9").kind == "proxy"
    assert lookup.facts("1.2.3.4").kind == "vpn"  # ::1.2.0.0/112 → 1.2.0.0/16
    assert lookup.facts("::ffff:1.2.3.4").kind == "vpn"  # IPv4-mapped IPv6 is the same client
    assert lookup.facts("8.8.8.8").kind is None


def test_residential_proxy_database_marks_its_networks():
    lookup = NetworkLookup([open_database(TEST_DATA / "GeoIP-Residential-Proxy-Test.mmdb")])
    facts = lookup.facts("6.0.42.17")
    assert facts.kind == "residential-proxy"
    assert facts.anonymizer == "novada"


def test_several_databases_merge_into_one_answer():
    names = ("GeoIP2-City-Test.mmdb", "GeoLite2-ASN-Test.mmdb", "GeoIP2-Anonymous-IP-Test.mmdb")
    lookup = NetworkLookup([open_database(TEST_DATA / name) for name in names])
    facts = lookup.facts("81.2.69.160")
    assert (facts.country, facts.kind) == ("GB", "tor")
    report = lookup.report("81.2.69.160")
    types = [entry["type"] for entry in report["databases"]]
    assert types == ["GeoIP2-City", "GeoLite2-ASN", "GeoIP2-Anonymous-IP"]
    assert report["databases"][0]["network"] == "81.2.69.160/27"


@pytest.mark.parametrize("name", BROKEN)
def test_broken_databases_fail_at_open_naming_the_file(name):
    with pytest.raises(NetworkDatabaseError) as caught:
        open_database(TEST_DATA / name)
    assert str(TEST_DATA / name) in str(caught.value)


@pytest.mark.parametrize("name", BROKEN)
def test_engine_refuses_to_start_with_a_broken_required_database(name):
    policy = default_policy(network={"databases": [{"path": str(TEST_DATA / name)}]})
    with pytest.raises(NetworkDatabaseError, match=name):
        Engine(policy)


async def test_optional_broken_database_is_left_out_with_a_warning(caplog):
    policy = default_policy(network={"databases": [
        {"path": str(TEST_DATA / BROKEN[0]), "optional": True},
        {"path": str(TEST_DATA / "GeoIP2-Anonymous-IP-Test.mmdb"), "optional": True},
    ]})
    with caplog.at_level(logging.WARNING, logger="shieldware.network"):
        engine = Engine(policy)
    assert BROKEN[0] in caplog.text and "optional" in caplog.text
    decision = await engine.decide(facts_from_headers("71.160.223.7", "GET", "/", 0.0, CHROME_NAVIGATION))
    assert "net.hosting" in [e.code for e in decision.reasons]


async def test_only_optional_databases_all_broken_turns_the_signal_off(caplog):
    missing = {"path": "/nonexistent/GeoLite2-ASN.mmdb", "optional": True}
    policy = default_policy(network={"databases": [missing]})
    with caplog.at_level(logging.WARNING, logger="shieldware.network"):
        engine = Engine(policy)
    assert "/nonexistent/GeoLite2-ASN.mmdb" in caplog.text
    assert "signal is off" in caplog.text
    decision = await engine.decide(facts_from_headers("3.5.140.1", "GET", "/", 0.0, CHROME_NAVIGATION))
    assert not [e for e in decision.reasons if e.code.startswith("net.")]


def test_missing_required_database_names_the_file():
    policy = default_policy(network={"databases": ["/nonexistent/GeoIP2-City.mmdb"]})
    with pytest.raises(NetworkDatabaseError, match=re.escape("/nonexistent/GeoIP2-City.mmdb")):
        Engine(policy)


async def test_a_record_corrupt_beyond_the_start_check_never_raises_per_request(monkeypatch, caplog):
    # Skip the start-up walk so the broken file opens, as a huge file whose bad record lies past the
    # walked part would; requests from the bad network must still be decided.
    monkeypatch.setattr(readers, "VERIFY_NETWORKS", 0)
    broken = TEST_DATA / "GeoIP2-City-Test-Broken-Double-Format.mmdb"
    monkeypatch.setattr(readers, "_OPEN", {})
    engine = Engine(default_policy(network={"databases": [str(broken)]}))
    with caplog.at_level(logging.WARNING, logger="shieldware.network"):
        for _ in range(3):
            facts = facts_from_headers("81.2.69.160", "GET", "/", 0.0, CHROME_NAVIGATION)
            decision = await engine.decide(facts)
            assert decision.verdict.value == "allow"
            assert "signal.error" not in [e.code for e in decision.reasons]
    database = open_database(broken)
    assert database.errors >= 1
    assert caplog.text.count("failed a lookup") == 1  # warned once, not per request
