"""Verified crawlers: range matcher, signal, default-policy verdicts, FCrDNS and a live server."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldware import Engine, Verdict, facts_from_headers
from shieldware.demo import build_demo_app
from shieldware.evidence import Weights
from shieldware.policy import default_policy
from shieldware.signals.base import Inspection
from shieldware.signals.crawlers import (
    CrawlerDefinition,
    CrawlerRegistry,
    ForwardConfirmedDNS,
    RangeSet,
    VerifiedCrawlerSignal,
    shipped_registry,
)
from tests.support import live_server

GOOGLEBOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GOOGLEBOT_SMARTPHONE_UA = (
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Chrome/120.0.6099.71 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
    "+http://www.google.com/bot.html)"
)
BINGBOT_UA = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
GOOGLE_CRAWLER_IP = "66.249.66.1"  # googlebot.json: 66.249.64.0/27 … 66.249.79.224/27
GOOGLE_CRAWLER_IP6 = "2001:4860:4801:10::7"
AWS_IP = "3.4.12.4"  # aws.json ip_prefix 3.4.12.4/32 (eu-west-1)
BING_IP = "157.55.39.10"  # bing ipv4 list: 157.55.39.0/24


# ---- the range matcher ---------------------------------------------------------------------------

CIDRS = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "192.0.2.0/25",
    "192.0.2.128/25",
    "198.51.100.7/32",
    "2001:db8::/48",
    "2001:db8:0:1::/64",
    "2001:db8:ffff::/120",
]
NETWORKS = [ipaddress.ip_network(c) for c in CIDRS]


def _reference(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == n.version and addr in n for n in NETWORKS)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(str),
        st.sampled_from(NETWORKS).flatmap(
            lambda n: st.integers(int(n.network_address) - 2, int(n.broadcast_address) + 2).map(
                lambda i: str(
                    ipaddress.ip_address(max(i, 0) % (2**n.max_prefixlen))
                    if n.version == 6
                    else ipaddress.IPv4Address(max(i, 0) % 2**32)
                )
            )
        ),
    )
)
def test_range_set_agrees_with_ipaddress(ip):
    assert RangeSet(CIDRS).contains(ip) == _reference(ip)


def test_range_set_merges_overlaps_and_judges_edges_and_junk():
    ranges = RangeSet(CIDRS)
    assert len(ranges) == 5  # 10/8 swallows 10.1/16, the two /25 join, the /64 sits inside the /48
    assert ranges.contains("192.0.2.0") and ranges.contains("192.0.2.255")
    assert not ranges.contains("192.0.3.0") and not ranges.contains("198.51.100.8")
    assert ranges.contains("::ffff:198.51.100.7")  # IPv4-mapped IPv6 is judged as IPv4
    for junk in ("", "not-an-ip", "300.1.1.1", "1.2.3", "::g"):
        assert not ranges.contains(junk)


def test_shipped_ranges_cover_each_operator():
    registry = shipped_registry()
    assert registry.by_name("googlebot").ranges.contains(GOOGLE_CRAWLER_IP)
    assert registry.by_name("googlebot").ranges.contains(GOOGLE_CRAWLER_IP6)
    assert not registry.by_name("googlebot").ranges.contains(AWS_IP)
    assert registry.by_name("bingbot").ranges.contains(BING_IP)
    assert registry.by_name("applebot").ranges.contains("17.58.101.179")
    assert registry.claimed_by(GOOGLEBOT_SMARTPHONE_UA).name == "googlebot"
    assert registry.claimed_by("Mozilla/5.0 (compatible; DuckDuckBot-Https/1.1)").name == "duckduckbot"
    assert registry.claimed_by("Mozilla/5.0 (Windows NT 10.0) Chrome/120.0 Safari/537.36") is None


# ---- the signal and the default policy ------------------------------------------------------------


def _decide(ip: str, ua: str, path: str = "/product/7", policy=None):
    engine = Engine(policy or default_policy())
    facts = facts_from_headers(
        ip, "GET", path, 1_700_000_000.0, [("host", "shop.example"), ("user-agent", ua), ("accept", "*/*")]
    )
    return asyncio.run(engine.decide(facts))


@pytest.mark.parametrize(
    ("ip", "ua"),
    [
        (GOOGLE_CRAWLER_IP, GOOGLEBOT_UA),
        (GOOGLE_CRAWLER_IP6, GOOGLEBOT_UA),
        (GOOGLE_CRAWLER_IP, GOOGLEBOT_SMARTPHONE_UA),
        (BING_IP, BINGBOT_UA),
    ],
)
def test_search_engine_from_its_operators_range_is_verified_and_allowed(ip, ua):
    decision = _decide(ip, ua)
    codes = [r.code for r in decision.reasons]
    assert "ua.verified_crawler" in codes and "net.fake_crawler" not in codes
    assert decision.verdict is Verdict.ALLOW
    assert decision.rule == "preset:allow-search-engines"
    assert decision.bot_score == 0


@pytest.mark.parametrize("ua", [GOOGLEBOT_UA, GOOGLEBOT_SMARTPHONE_UA, BINGBOT_UA])
def test_same_crawler_ua_from_aws_is_a_fake_crawler_and_blocked_on_product_pages(ua):
    decision = _decide(AWS_IP, ua)
    fake = next(r for r in decision.reasons if r.code == "net.fake_crawler")
    assert fake.detail["ip"] == AWS_IP
    assert decision.verdict is Verdict.BLOCK
    assert decision.rule is None  # the score did it, not a preset


def _inspect(signal, ip, ua, now=0.0):
    facts = facts_from_headers(ip, "GET", "/", now, [("user-agent", ua)])
    inspection = Inspection(facts, None, Weights())
    inspection.attrs["ua.is_bot"] = True
    signal.inspect(facts, inspection)
    return inspection


def test_signal_attributes_for_verified_fake_and_ordinary_requests():
    signal = VerifiedCrawlerSignal()
    verified = _inspect(signal, GOOGLE_CRAWLER_IP, GOOGLEBOT_UA)
    assert verified.attrs["verified_bot"] is True and verified.attrs["crawler.claim"] == "verified"
    assert verified.evidence[0].weight < 0
    fake = _inspect(signal, AWS_IP, GOOGLEBOT_UA)
    assert fake.attrs["verified_bot"] is False and fake.attrs["crawler.claim"] == "fake"
    other = _inspect(signal, AWS_IP, "Mozilla/5.0 (compatible; SomeBot/1.0)")
    assert other.attrs["crawler.claim"] == "unlisted" and other.evidence == []


# ---- forward-confirmed reverse DNS (the machine's own resolver: 127.0.0.1 ↔ localhost) ------------


def test_fcrdns_confirms_an_address_outside_the_ranges_then_caches_it():
    crawler = CrawlerDefinition(
        "localbot", "Loopback Inc", "LocalBot", "search-engine", RangeSet([]), reverse_dns=("localhost",)
    )
    fcrdns = ForwardConfirmedDNS(timeout_seconds=5.0, ttl_seconds=60.0)
    signal = VerifiedCrawlerSignal(CrawlerRegistry([crawler]), fcrdns)
    try:
        first = _inspect(signal, "127.0.0.1", "LocalBot/1.0", now=100.0)
        assert first.attrs["crawler.claim"] == "pending" and first.evidence == []
        fcrdns.wait("127.0.0.1")
        second = _inspect(signal, "127.0.0.1", "LocalBot/1.0", now=101.0)
        assert second.attrs["crawler.claim"] == "verified"
        assert second.evidence[0].detail["by"] == "reverse-dns"
        # An address whose PTR is not under the operator's domain fails and is flagged as fake.
        other = ForwardConfirmedDNS(timeout_seconds=5.0)
        strict = VerifiedCrawlerSignal(
            CrawlerRegistry(
                [
                    CrawlerDefinition(
                        "farbot",
                        "Far",
                        "FarBot",
                        "search-engine",
                        RangeSet([]),
                        reverse_dns=("farbot.example",),
                    )
                ]
            ),
            other,
        )
        _inspect(strict, "127.0.0.1", "FarBot/1.0")
        other.wait("127.0.0.1")
        assert _inspect(strict, "127.0.0.1", "FarBot/1.0").attrs["crawler.claim"] == "fake"
        other.close()
    finally:
        fcrdns.close()


def test_fcrdns_is_off_by_default_and_switched_on_by_policy():
    assert default_policy().section("crawlers").fcrdns is False
    engine = Engine(default_policy(crawlers={"fcrdns": True, "fcrdns_timeout": 1}))
    signal = next(s for s in engine.signals if s.name == "crawlers")
    assert signal._fcrdns is not None and signal._fcrdns.timeout_seconds == 1.0
    signal._fcrdns.close()


# ---- a real server behind a trusted proxy ------------------------------------------------------


def test_live_shop_serves_real_googlebot_and_refuses_the_fake_one():
    policy = default_policy(trusted_proxies=["127.0.0.0/8"])
    with live_server(build_demo_app(policy=policy)) as server, httpx.Client(base_url=server.url) as client:
        real = client.get(
            "/product/5", headers={"user-agent": GOOGLEBOT_UA, "x-forwarded-for": GOOGLE_CRAWLER_IP}
        )
        fake = client.get("/product/5", headers={"user-agent": GOOGLEBOT_UA, "x-forwarded-for": AWS_IP})
    assert real.status_code == 200
    assert fake.status_code == 403
    assert fake.headers["x-shield-ref"] in fake.text
