"""The network signal in the engine: evidence, attributes for rules, the `network:` section, the CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldware.engine import Engine
from shieldware.evidence import Weights
from shieldware.facts import facts_from_headers
from shieldware.netdb.lookup import normalise_address
from shieldware.policy import PolicyError, default_policy, policy_from_text
from shieldware.signals import Inspection
from shieldware.signals.network import (
    PUBLISHED_CRAWLERS,
    DatabaseEntry,
    NetworkSettings,
    NetworkSignal,
    published_crawler,
)
from tests.support import CHROME_NAVIGATION

TEST_DATA = Path("/work/shared/data/maxmind-test/test-data")
needs_maxmind = pytest.mark.skipif(not TEST_DATA.is_dir(), reason=f"no MaxMind test data at {TEST_DATA}")


def _facts(ip: str, path: str = "/product/1"):
    return facts_from_headers(ip, "GET", path, 1_700_000_000.0, CHROME_NAVIGATION)


def _codes(decision) -> list[str]:
    return [e.code for e in decision.reasons]


async def test_hosting_address_scores_higher_than_a_home_line_but_is_not_challenged_alone():
    engine = Engine(default_policy())
    cloud = await engine.decide(_facts("3.5.140.1", "/checkout"))
    home = await engine.decide(_facts("73.15.20.1", "/checkout"))
    assert "net.hosting" in _codes(cloud) and "net.hosting" not in _codes(home)
    assert cloud.bot_score > home.bot_score
    assert cloud.verdict.value == "allow"  # 30 points: under checkout's 40 without other evidence


async def test_hosting_plus_another_finding_crosses_the_checkout_threshold():
    engine = Engine(default_policy())
    no_fetch_metadata = [(k, v) for k, v in CHROME_NAVIGATION if not k.startswith("sec-fetch-")]
    # Over https, where browsers always send Sec-Fetch-* (the header signal expects them only there).
    home = facts_from_headers("73.15.20.1", "GET", "/checkout", 0.0, no_fetch_metadata, scheme="https")
    cloud = facts_from_headers("3.5.140.1", "GET", "/checkout", 0.0, no_fetch_metadata, scheme="https")
    from_home, from_cloud = await engine.decide(home), await engine.decide(cloud)
    assert _codes(from_home) == ["hdr.no_fetch_metadata"] and from_home.verdict.value == "allow"
    assert set(_codes(from_cloud)) == {"hdr.no_fetch_metadata", "net.hosting"}
    assert from_cloud.verdict.value == "challenge"


async def test_published_crawler_range_is_not_reported_as_hosting():
    engine = Engine(default_policy(rules=[{"name": "see-crawler", "when": {"net.crawler": "googlebot"},
                                           "action": "weigh", "weight": 1}]))
    decision = await engine.decide(_facts("66.249.66.1"))
    assert not [c for c in _codes(decision) if c.startswith("net.")]
    assert "policy.weigh" in _codes(decision)  # the attribute was published for rules and other signals


def test_crawler_verification_support():
    signal = NetworkSignal()
    assert {"googlebot", "bingbot", "openai"} <= PUBLISHED_CRAWLERS
    assert published_crawler(signal.view("66.249.66.1").attrs) == "googlebot"
    assert published_crawler(signal.view("3.5.140.1").attrs) is None  # a "Googlebot" from AWS: fake


async def test_rules_match_network_attributes_on_checkout_only():
    engine = Engine(default_policy(rules=[{"name": "checkout-from-datacenters",
                                           "when": {"group": "checkout", "net.kind": "hosting"},
                                           "action": "challenge"}]))
    assert (await engine.decide(_facts("3.5.140.1", "/checkout"))).verdict.value == "challenge"
    assert (await engine.decide(_facts("3.5.140.1", "/product/2"))).verdict.value == "allow"
    assert (await engine.decide(_facts("73.15.20.1", "/checkout"))).verdict.value == "allow"


async def test_provider_attribute_rule():
    engine = Engine(default_policy(rules=[{"name": "no-hetzner-logins",
                                           "when": {"group": "login", "net.provider": ["hetzner", "ovh"]},
                                           "action": "block"}]))
    assert (await engine.decide(_facts("2a01:4f8::1", "/login"))).verdict.value == "block"
    assert (await engine.decide(_facts("3.5.140.1", "/login"))).verdict.value == "allow"


@needs_maxmind
async def test_asn_rule_and_country_and_asn_weights_with_maxmind_databases():
    network = {"databases": ["builtin:hosting", str(TEST_DATA / "GeoLite2-ASN-Test.mmdb"),
                             str(TEST_DATA / "GeoIP2-Country-Test.mmdb")],
               "asns": {"AS1221": 20}, "countries": {"GB": 12}}
    rules = [{"name": "google-asn-checkout", "when": {"group": "checkout", "net.asn": [15169]},
              "action": "challenge"}]
    engine = Engine(default_policy(network=network, rules=rules))
    telstra = await engine.decide(_facts("1.128.0.1"))  # 1.128.0.0/11 → AS1221 Telstra
    weights = {e.code: e.weight for e in telstra.reasons}
    assert weights["net.asn"] == 20
    assert (await engine.decide(_facts("1.0.0.1", "/checkout"))).verdict.value == "challenge"  # AS15169
    assert (await engine.decide(_facts("1.0.0.1", "/cart"))).verdict.value == "allow"
    british = await engine.decide(_facts("2.125.160.220"))  # GB in the Country test db
    assert {e.code: e.weight for e in british.reasons}["net.country"] == 12


@needs_maxmind
async def test_one_anonymity_finding_per_address_with_policy_weights():
    network = {"databases": [str(TEST_DATA / "GeoIP2-Anonymous-IP-Test.mmdb")]}
    engine = Engine(default_policy(network=network, weights={"net.tor": 60}))
    everything = await engine.decide(_facts("81.2.69.1"))  # VPN, hosting, proxy, residential proxy and Tor
    net = [e for e in everything.reasons if e.code.startswith("net.")]
    assert [(e.code, e.weight) for e in net] == [("net.tor", 60)]
    assert "net.proxy" in _codes(await engine.decide(_facts("186.30.236.9")))
    assert "net.vpn" in _codes(await engine.decide(_facts("1.2.3.4")))


@needs_maxmind
async def test_residential_proxy_evidence():
    database = str(TEST_DATA / "GeoIP-Residential-Proxy-Test.mmdb")
    engine = Engine(default_policy(network={"databases": [database]}))
    decision = await engine.decide(_facts("6.0.42.17"))
    reason = next(e for e in decision.reasons if e.code == "net.residential_proxy")
    assert reason.detail["anonymizer"] == "novada" and reason.weight == 55


def test_cache_is_bounded_and_serves_repeats():
    signal = NetworkSignal(NetworkSettings(cache_size=3))
    policy = default_policy()
    for i in range(10):
        inspection = Inspection(_facts(f"3.5.140.{i}"), policy.group("browse"), Weights(), policy)
        signal.inspect(inspection.facts, inspection)
        assert inspection.attrs["net.provider"] == "aws"
    info = signal._cached_view.cache_info()
    assert info.currsize == 3 and info.misses == 10
    signal.view("3.5.140.9")
    assert signal._cached_view.cache_info().hits == 1


def test_bad_client_addresses_add_nothing():
    signal = NetworkSignal()
    for text in ("", "unknown", "300.1.1.1", "::ffff:zz", "3.5.140.1:443x"):
        assert signal.view(text) is None


def test_disabled_section_turns_the_signal_off():
    signal = NetworkSignal(NetworkSettings(enabled=False))
    assert signal.view("3.5.140.1") is None


def test_policy_section_parses_and_reports_every_mistake():
    policy = default_policy(network={"databases": [{"path": "/x.mmdb", "optional": True}, "builtin:hosting"],
                                     "cache_size": 100, "asns": {"AS16509": 10, 14061: -5},
                                     "countries": {"de": 5}})
    settings = policy.section("network")
    assert settings.databases == (DatabaseEntry("/x.mmdb", True), DatabaseEntry("builtin:hosting", False))
    assert settings.asns == {16509: 10.0, 14061: -5.0} and settings.countries == {"DE": 5.0}
    text = """
version: 1
network:
  databases: [{path: "", optional: maybe}, {file: a.mmdb}]
  cache_size: -1
  countries: {Germany: 5, FR: lots}
  asns: {cloud: 5}
  colour: blue
"""
    with pytest.raises(PolicyError) as caught:
        policy_from_text(text, "shop.yaml")
    problems = "\n".join(caught.value.problems)
    for expected in ("network.databases[0].path", "network.databases[1].file: unknown field",
                     "network.cache_size", "network.countries", "network.countries.FR", "network.asns",
                     "network.colour: unknown field"):
        assert expected in problems, expected


def test_default_policy_uses_the_shipped_database():
    assert default_policy().section("network").databases == (DatabaseEntry("builtin:hosting", False),)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shieldware.cli", "geoip", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_lookup_prints_one_json_object_per_address():
    done = _cli("lookup", "3.5.140.1", "::ffff:66.249.66.1", "73.15.20.1", "not-an-ip")
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["ip"] for a in answers] == ["3.5.140.1", "::ffff:66.249.66.1", "73.15.20.1", "not-an-ip"]
    assert (answers[0]["provider"], answers[0]["kind"]) == ("aws", "hosting")
    assert answers[0]["databases"][0]["record"]["provider"] == "aws"
    assert answers[1]["normalised"] == "66.249.66.1" and answers[1]["kind"] == "crawler"
    assert "provider" not in answers[2] and answers[2]["databases"][0]["record"] is None
    assert "error" in answers[3]


@needs_maxmind
def test_cli_lookup_with_several_databases_and_a_policy(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"""version: 1
network:
  databases:
    - {TEST_DATA / 'GeoIP2-City-Test.mmdb'}
    - {{path: {TEST_DATA / 'GeoLite2-ASN-Test.mmdb'}, optional: true}}
    - builtin:hosting
""")
    done = _cli("lookup", "--policy", str(policy), "2001:218::1", "1.128.0.1")
    assert done.returncode == 0, done.stderr
    japan, telstra = (json.loads(line) for line in done.stdout.splitlines())
    assert japan["country"] == "JP" and len(japan["databases"]) == 3
    assert telstra["asn"] == 1221 and telstra["asn_org"] == "Telstra Pty Ltd"


@needs_maxmind
def test_cli_lookup_names_a_broken_database():
    broken = TEST_DATA / "MaxMind-DB-test-broken-pointers-24.mmdb"
    done = _cli("lookup", "--db", str(broken), "1.1.1.1")
    assert done.returncode == 1
    assert str(broken) in done.stderr and "corrupt" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_update_without_internet_says_so_and_changes_nothing(tmp_path):
    out = tmp_path / "hosting.mmdb"
    ranges = tmp_path / "ranges"
    done = _cli("update", "--timeout", "3", "--out", str(out), "--ranges", str(ranges), timeout=120)
    if done.returncode == 0:  # a machine with internet: the update must have produced a working database
        assert out.stat().st_size > 100_000 and any(ranges.glob("*.txt"))
        return
    assert done.returncode == 1
    assert "cannot download https://" in done.stderr and "no internet access" in done.stderr
    assert "geoip build --from DIR" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists() and not ranges.exists()


def test_cli_build_from_a_folder_without_feeds_fails_clearly(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here\n")
    done = _cli("build", "--from", str(tmp_path), "--out", str(tmp_path / "x.mmdb"))
    assert done.returncode == 1 and "no provider ranges found" in done.stderr


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=60), st.ip_addresses().map(str),
                      st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}")))
def test_any_client_address_text_is_answered_without_raising(text):
    view = _FUZZ_SIGNAL.view(text)
    assert view is None or view.facts.ip


_FUZZ_SIGNAL = NetworkSignal(NetworkSettings(cache_size=64))


# The fast lane asks `lane_address` of every new client instead of making its view: the two must
# agree on every text, in every database the policy can name (a plan made for an address a
# database knows would skip that database's evidence).
_KNOWN_ADDRESSES = ("3.5.140.1", "::ffff:3.5.140.1", "66.249.66.1", "1.128.0.1", "1.0.0.1", "2.125.160.220",
                    "81.2.69.1", "186.30.236.9", "1.2.3.4", "6.0.42.17", "2001:218::1", "73.15.20.1", "10.0.0.1")


def _lane_signal(paths: list[str]) -> NetworkSignal:
    signal = NetworkSignal()
    signal.configure(NetworkSettings(databases=tuple(DatabaseEntry(path) for path in paths), cache_size=64))
    return signal


_LANE_SIGNALS = [NetworkSignal(NetworkSettings(cache_size=64))]
if TEST_DATA.is_dir():
    # Every well-formed GeoIP test database (names ending in -Test), and an IPv4-only one.
    _LANE_SIGNALS.append(_lane_signal(["builtin:hosting", *map(str, sorted(TEST_DATA.glob("*-Test.mmdb"))),
                                       str(TEST_DATA / "MaxMind-DB-test-ipv4-24.mmdb")]))


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.sampled_from(_KNOWN_ADDRESSES), st.text(max_size=40), st.ip_addresses().map(str),
                      st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}")))
def test_the_lanes_question_agrees_with_the_view(text):
    for signal in _LANE_SIGNALS:
        assert signal.lane_address(text) == (signal.view(text) is None), text


def test_the_lanes_question_on_addresses_a_database_knows():
    hosting = _LANE_SIGNALS[0]  # the shipped database only
    assert not hosting.lane_address("3.5.140.1") and not hosting.lane_address("::ffff:3.5.140.1")  # AWS
    assert hosting.lane_address("73.15.20.1") and hosting.lane_address("unknown")
    if len(_LANE_SIGNALS) > 1:  # the MaxMind test databases know these, the shipped one does not
        assert hosting.lane_address("2.125.160.220") and not _LANE_SIGNALS[1].lane_address("2.125.160.220")
        assert hosting.lane_address("2001:218::1") and not _LANE_SIGNALS[1].lane_address("2001:218::1")


def _normalised_by_the_socket_library(text: str) -> tuple[str, bool] | None:
    """normalise_address as it was before its IPv4 shortcut: every text through inet_pton and back."""
    try:
        if ":" not in text:
            return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text.strip())), False
        return normalise_address(text)
    except (OSError, ValueError):
        return None


_OCTET = st.one_of(st.integers(0, 300).map(str), st.integers(0, 255).map(lambda n: f"0{n}"), st.just("00"))


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(
    st.ip_addresses(v=4).map(str),
    st.lists(_OCTET, min_size=1, max_size=5).map(".".join),
    st.tuples(st.sampled_from(["", " ", "\t"]), st.ip_addresses(v=4).map(str), st.sampled_from(["", " ", "\n"])).map(
        "".join),
    st.text(alphabet="0123456789. x", max_size=20)))
def test_ipv4_shortcut_normalises_as_the_socket_library_does(text):
    assert normalise_address(text) == _normalised_by_the_socket_library(text)
