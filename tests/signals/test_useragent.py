"""User-agent classification: browsers, devices, bots by category, tools, odd input, the evidence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shieldware
from shieldware.decision import Verdict
from shieldware.engine import Engine
from shieldware.evidence import Weights
from shieldware.facts import facts_from_headers
from shieldware.policy import default_policy
from shieldware.signals.base import Inspection
from shieldware.signals.useragent import UserAgentSignal, classify_user_agent

BROWSERS = [
    # (UA, browser, major, os, device, engine)
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
        "Safari/537.36",
        "chrome",
        120,
        "Windows",
        "desktop",
        "blink",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.2 "
        "Safari/605.1.15",
        "safari",
        17,
        "Mac OS X",
        "desktop",
        "webkit",
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "firefox",
        121,
        "Ubuntu",
        "desktop",
        "gecko",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
        "Safari/537.36 Edg/120.0.2210.91",
        "edge",
        120,
        "Windows",
        "desktop",
        "blink",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Mobile/15E148 Safari/604.1",
        "safari",
        17,
        "iOS",
        "mobile",
        "webkit",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
        "chrome-ios",
        120,
        "iOS",
        "mobile",
        "webkit",
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile "
        "Safari/537.36",
        "chrome",
        120,
        "Android",
        "mobile",
        "blink",
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "samsung",
        23,
        "Android",
        "mobile",
        "blink",
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 "
        "Mobile/15E148 Safari/604.1",
        "safari",
        16,
        "iOS",
        "tablet",
        "webkit",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 Instagram 312.0.0.32.112 (iPhone14,5; iOS 17_0; en_US; en; scale=3.00; "
        "1170x2532; 548339486)",
        "in-app",
        312,
        "iOS",
        "mobile",
        "webkit",
    ),
]


@pytest.mark.parametrize(("ua", "browser", "major", "os_family", "device", "engine"), BROWSERS)
def test_real_browsers_are_parsed_and_not_bots(ua, browser, major, os_family, device, engine):
    info = shieldware.classify_user_agent(ua)
    assert not info.is_bot
    assert info.category == "browser"
    assert (info.browser, info.browser_version, info.os, info.device, info.engine) == (
        browser,
        major,
        os_family,
        device,
        engine,
    )


BOTS = [
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "search-engine",
        "Googlebot",
    ),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "search-engine", "bingbot"),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "ai-crawler",
        "GPTBot",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
        "+claudebot@anthropic.com)",
        "ai-crawler",
        "ClaudeBot",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko); compatible; ChatGPT-User/1.0; "
        "+https://openai.com/bot",
        "ai-assistant",
        "ChatGPT-User",
    ),
    (
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "social-preview",
        "facebookexternalhit",
    ),
    ("curl/8.4.0", "http-library", "curl"),
    ("python-requests/2.31.0", "http-library", "python-requests"),
    ("Scrapy/2.11.0 (+https://scrapy.org)", "scraper-framework", "scrapy"),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.28 "
        "Safari/537.36",
        "headless-browser",
        "headless-chrome",
    ),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "seo", "AhrefsBot"),
    ("Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", "monitoring", "UptimeRobot"),
    ("Mozilla/5.0 zgrab/0.x", "scanner", "zgrab"),
]


@pytest.mark.parametrize(("ua", "category", "name"), BOTS)
def test_known_bots_and_tools_get_their_category_and_name(ua, category, name):
    info = classify_user_agent(ua)
    assert info.is_bot and info.device == "bot"
    assert info.category == category
    assert info.name == name


def test_ai_robots_operator_is_carried():
    assert classify_user_agent("GPTBot/1.2").operator == "OpenAI"


@pytest.mark.parametrize(
    "ua",
    [
        "Mozilla/5.0 (compatible; TotallyNewCrawler/0.1; +https://crawler.example)",
        "SomeFetcher/3.0",
        "Mozilla/5.0 (compatible; ShopWatch/1.0)",
        "my-scraper (contact: ops@example.org)",
    ],
)
def test_unlisted_bots_are_caught_by_their_shape(ua):
    assert classify_user_agent(ua).is_bot


def test_native_app_stacks_are_apps_not_bots():
    for ua in (
        "ShopApp/4.2 CFNetwork/1410.0.3 Darwin/22.6.0",
        "Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7 Build/TQ3A.230901.001)",
    ):
        info = classify_user_agent(ua)
        assert not info.is_bot and info.category == "app", ua


@pytest.mark.parametrize("ua", ["Mozilla/5.0", "Mozilla/5.0 (compatible)", "Mozilla/4.0",
                                "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/5.0 (X11; Linux x86_64)",
                                "mozilla/5.0 (windows nt 10.0; win64; x64) applewebkit/537.36 (khtml, like gecko) "
                                "chrome/131.0.0.0 safari/537.36", "MOZILLA/5.0"])
def test_a_bare_mozilla_user_agent_is_a_disguise(ua):
    """What scripts set to pass for a browser: it names no browser and no engine, as none does."""
    info = classify_user_agent(ua)
    assert info.is_bot and info.category == "disguised", ua
    assert [(e.code, e.weight) for e in _inspect(ua).evidence] == [("ua.disguised", 60.0)]


@pytest.mark.parametrize("ua", [
    # iOS WKWebView in a shop's app, a console, old IE and old Opera: browsers that name their engine
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)",
    "Opera/9.80 (Windows NT 6.1) Presto/2.12.388 Version/12.16",
])
def test_browsers_that_name_only_their_engine_are_not_disguised(ua):
    info = classify_user_agent(ua)
    assert not info.is_bot and info.category != "disguised", ua


async def test_the_shipped_policy_challenges_a_script_in_that_disguise():
    engine = Engine(default_policy())
    headers = [("host", "shop"), ("user-agent", "Mozilla/5.0"), ("accept", "*/*"), ("accept-encoding", "gzip")]
    decision = await engine.decide(facts_from_headers("203.0.113.50", "GET", "/product/1", 1.79e9, headers))
    await engine.close()
    assert decision.verdict is Verdict.CHALLENGE and decision.reason_codes == ("ua.disguised",)


def test_empty_user_agent_is_a_bot_with_unknown_category():
    info = classify_user_agent("   ")
    assert info.is_bot and info.category == "unknown"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=3000))
def test_any_text_classifies_without_raising(text):
    info = classify_user_agent(text)
    assert info.device in ("desktop", "mobile", "tablet", "bot", "other")


def test_classification_is_cached_per_string():
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0 cache-probe"
    first = classify_user_agent(ua)
    hits_before = classify_user_agent.cache_info().hits
    assert classify_user_agent(ua) is first
    assert classify_user_agent.cache_info().hits == hits_before + 1
    assert classify_user_agent.cache_info().maxsize is not None  # bounded


def _inspect(ua: str | None) -> Inspection:
    headers = [("user-agent", ua)] if ua is not None else []
    facts = facts_from_headers("198.51.100.7", "GET", "/product/1", 0.0, headers)
    inspection = Inspection(facts, None, Weights())
    UserAgentSignal().inspect(facts, inspection)
    return inspection


@pytest.mark.parametrize(
    ("ua", "code"),
    [
        (None, "ua.missing"),
        ("curl/8.4.0", "ua.tool"),
        ("Scrapy/2.11 (+https://scrapy.org)", "ua.tool"),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0 Safari/537.36", "ua.headless"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "ua.known_bot"),
        ("sqlmap/1.7.2#stable (https://sqlmap.org)", "ua.scanner"),
        ("Widget 1.0 (Linux)", "ua.not_browser"),
    ],
)
def test_signal_emits_one_reason_per_kind_of_claim(ua, code):
    inspection = _inspect(ua)
    assert [e.code for e in inspection.evidence] == [code]
    assert inspection.attrs["ua.is_bot"] is True


def test_signal_publishes_attributes_for_browsers_without_evidence():
    inspection = _inspect(BROWSERS[0][0])
    assert inspection.evidence == []
    attrs = inspection.attrs
    assert (attrs["ua.category"], attrs["ua.browser"], attrs["ua.is_bot"], attrs["ua.device"]) == (
        "browser",
        "chrome",
        False,
        "desktop",
    )
    assert attrs["ua.info"].browser_version == 120
