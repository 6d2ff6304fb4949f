"""Header fingerprint and consistency checks: real browsers' exact headers pass, libraries are named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from shieldware.datafiles import load_json
from shieldware.demo import build_demo_app
from shieldware.evidence import Weights
from shieldware.facts import TrustedProxies, facts_from_headers, facts_from_scope
from shieldware.policy import default_policy
from shieldware.signals.base import Inspection
from shieldware.signals.headers import HeaderSignal, header_fingerprint
from shieldware.signals.useragent import UserAgentSignal
from tests.support import CHROME_NAVIGATION, CHROME_SUBRESOURCE, CHROME_UA, live_server, raw_get

PROFILES = load_json("fingerprints", "header-profiles.json")["families"]
NAVIGATIONS = [
    (family, nav["version"], [tuple(h) for h in nav["headers"]])
    for family, profile in PROFILES.items()
    for nav in profile["navigations"]
]
FIREFOX_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"
SAFARI_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Safari/605.1.15"
)
# python-requests 2.x sends exactly these, in this order, after Host.
REQUESTS_DEFAULTS = [("accept-encoding", "gzip, deflate"), ("accept", "*/*"), ("connection", "keep-alive")]


def inspect(headers, host="shop.example", scheme="https", method="GET", path="/product/1", tls=None):
    facts = facts_from_headers(
        "198.51.100.7", method, path, 0.0, [("host", host), *headers], scheme=scheme, tls_fingerprint=tls
    )
    inspection = Inspection(facts, None, Weights())
    UserAgentSignal().inspect(facts, inspection)
    HeaderSignal().inspect(facts, inspection)
    return inspection


def header_codes(inspection):
    return sorted(e.code for e in inspection.evidence if e.code.startswith(("hdr.", "tls.")))


# ---- real browsers pass ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "version", "headers"), NAVIGATIONS, ids=[f"{f}-{v}" for f, v, _ in NAVIGATIONS]
)
def test_captured_browser_navigations_pass_every_check(family, version, headers):
    inspection = inspect(headers)
    assert inspection.attrs["ua.browser"] in (family, "chrome"), inspection.attrs["ua.browser"]
    assert header_codes(inspection) == []


@pytest.mark.parametrize(
    ("family", "version", "headers"), NAVIGATIONS[:6], ids=[f"{f}-{v}" for f, v, _ in NAVIGATIONS[:6]]
)
def test_proxies_inserting_headers_do_not_disturb_a_real_browser(family, version, headers):
    front = [("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https"), ("via", "1.1 cdn")]
    back = [("x-request-id", "abc"), ("cf-connecting-ip", "203.0.113.9"), ("x-real-ip", "203.0.113.9")]
    assert header_codes(inspect(front + list(headers) + back)) == []
    assert header_codes(inspect(list(headers[:2]) + back + list(headers[2:]))) == []


@pytest.mark.parametrize("family", ["chrome", "edge", "firefox", "safari"])
def test_http1_orders_from_browser_headers_data_pass(family):
    """The HTTP/1.1 order of browser-headers/headers-order.json, with a captured navigation's values."""
    values = dict(next(h for f, _, h in NAVIGATIONS if f == family))
    values.update(
        {
            "host": "shop.example",
            "connection": "keep-alive",
            "referer": "https://shop.example/",
            "cookie": "shop_session=abc",
        }
    )
    order = PROFILES[family]["orders"][0]
    headers = [(name, values[name]) for name in order if name in values and name != "host"]
    assert header_codes(inspect(headers)) == []


CAPTURED = PROFILES["chrome"]["captured_chromium"]["requests"]


@pytest.mark.parametrize("kind", sorted(CAPTURED))
def test_captured_chromium_navigation_subresources_and_fetches_pass(kind):
    headers = [tuple(h) for h in CAPTURED[kind] if h[0] != "host"]
    method = "POST" if kind == "fetch-post" else "GET"
    assert header_codes(inspect(headers, method=method, host="127.0.0.1:8000", scheme="http")) == []
    assert header_codes(inspect(headers, method=method, scheme="https")) == []


def test_chrome_subresource_and_fetch_orders_pass():
    assert header_codes(inspect(CHROME_SUBRESOURCE, path="/static/app.css")) == []
    fetch = [
        ("content-length", "12"),
        ("sec-ch-ua-platform", '"Windows"'),
        ("user-agent", CHROME_UA),
        ("sec-ch-ua", '"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"'),
        ("content-type", "application/json"),
        ("sec-ch-ua-mobile", "?0"),
        ("accept", "*/*"),
        ("origin", "https://shop.example"),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-dest", "empty"),
        ("referer", "https://shop.example/cart"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("cookie", "shop_session=abc"),
    ]
    assert header_codes(inspect(fetch, method="POST", path="/api/cart")) == []


def test_plain_http_shop_does_not_expect_fetch_metadata_or_client_hints():
    """Browsers send neither to a non-localhost http:// origin: a real Chrome there sends only this."""
    plain = [
        ("upgrade-insecure-requests", "1"),
        ("user-agent", CHROME_UA),
        ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ("accept-encoding", "gzip, deflate"),
        ("accept-language", "en-GB,en;q=0.9"),
    ]
    assert header_codes(inspect(plain, host="shop.example", scheme="http")) == []
    assert "hdr.no_fetch_metadata" in header_codes(inspect(plain, host="shop.example", scheme="https"))
    assert "hdr.no_fetch_metadata" in header_codes(inspect(plain, host="localhost:8000", scheme="http"))


def test_android_chrome_in_desktop_site_mode_is_not_a_mismatch():
    ua = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
        "Safari/537.36"
    )
    headers = [(n, v) for n, v in CHROME_NAVIGATION if n != "user-agent"]
    headers = [(n, '"Android"' if n == "sec-ch-ua-platform" else v) for n, v in headers]
    headers.insert(5, ("user-agent", ua))
    assert header_codes(inspect(headers)) == []


# ---- libraries and lies are named ---------------------------------------------------------------


@pytest.mark.parametrize("ua", [CHROME_UA, FIREFOX_UA, SAFARI_UA])
def test_browser_ua_with_python_requests_defaults_is_flagged_with_reasons(ua):
    codes = header_codes(inspect([("user-agent", ua), *REQUESTS_DEFAULTS]))
    assert "hdr.order_mismatch" in codes
    assert "hdr.browser_missing" in codes
    evidence = {e.code: e for e in inspect([("user-agent", ua), *REQUESTS_DEFAULTS]).evidence}
    assert evidence["hdr.browser_missing"].detail["missing"] == ["accept-language"]
    assert (
        evidence["hdr.order_mismatch"].detail["sent_first"],
        evidence["hdr.order_mismatch"].detail["expected_first"],
    ) == ("accept", "accept-encoding")


def _reorder_like_go(headers):
    """Go's net/http writes User-Agent first, then the other headers sorted by name."""
    ua = [h for h in headers if h[0] == "user-agent"]
    return ua + sorted(h for h in headers if h[0] != "user-agent")


def _reorder_like_undici(headers):
    """Node's fetch (undici) puts its own accept/accept-language/sec-fetch-mode before user-agent."""
    first = [h for h in headers if h[0] in ("accept", "accept-language", "sec-fetch-mode")]
    return first + [h for h in headers if h not in first]


@pytest.mark.parametrize("reorder", [_reorder_like_go, _reorder_like_undici, sorted])
@pytest.mark.parametrize("family", ["chrome", "firefox", "safari"])
def test_real_header_set_reordered_like_a_library_is_flagged(reorder, family):
    headers = next(h for f, _, h in NAVIGATIONS if f == family)
    inspection = inspect(reorder(list(headers)))
    mismatch = [e for e in inspection.evidence if e.code == "hdr.order_mismatch"]
    assert mismatch, header_codes(inspection)
    assert mismatch[0].detail["sent_first"] != mismatch[0].detail["expected_first"]


def _chrome_with(**replace):
    return [(n, replace.get(n.replace("-", "_"), v)) for n, v in CHROME_NAVIGATION]


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"sec_ch_ua_platform": '"macOS"'}, "sec-ch-ua-platform is macOS"),
        ({"sec_ch_ua_mobile": "?1"}, "says mobile"),
        ({"sec_ch_ua": '"Not_A Brand";v="8", "Chromium";v="119", "Google Chrome";v="119"'}, "Chromium 119"),
        ({"sec_ch_ua": '"Microsoft Edge";v="120", "Chromium";v="120", "Not_A Brand";v="8"'}, "names no Edge"),
        # hints forged to match an old UA: that Chrome never sent any
        ({"user_agent": CHROME_UA.replace("120.0.0.0", "79.0.3945.130"),
          "sec_ch_ua": '"Chromium";v="79", "Google Chrome";v="79"'}, "older than client hints (Chrome 84)"),
    ],
)
def test_client_hints_contradicting_the_ua_are_flagged(changes, fragment):
    inspection = inspect(_chrome_with(**changes))
    mismatch = next(e for e in inspection.evidence if e.code == "hdr.client_hint_mismatch")
    assert any(fragment in p for p in mismatch.detail["problems"])


def test_headless_brand_and_missing_hints_and_foreign_hints():
    headless = _chrome_with(sec_ch_ua='"HeadlessChrome";v="120", "Chromium";v="120", "Not_A Brand";v="8"')
    assert "hdr.headless_hint" in header_codes(inspect(headless))
    no_hints = [(n, v) for n, v in CHROME_NAVIGATION if not n.startswith("sec-ch-ua")]
    assert header_codes(inspect(no_hints)) == ["hdr.no_client_hints"]
    firefox = next(h for f, _, h in NAVIGATIONS if f == "firefox")
    with_hints = [("sec-ch-ua", '"Chromium";v="120"'), *firefox]
    assert "hdr.client_hint_mismatch" in header_codes(inspect(with_hints))


def test_navigation_without_text_html_in_accept():
    assert header_codes(inspect(_chrome_with(accept="*/*"))) == ["hdr.accept_not_browser"]


def _navigation(family: str, user_agent: str) -> list[tuple[str, str]]:
    """The newest captured navigation of `family`, its User-Agent replaced."""
    headers = [nav for f, _, nav in NAVIGATIONS if f == family][-1]
    return [(n, user_agent if n == "user-agent" else v) for n, v in headers]


@pytest.mark.parametrize(("family", "old_ua"), [
    ("chrome", CHROME_UA.replace("120.0.0.0", "49.0.2623.112")),
    ("chrome", CHROME_UA.replace("120.0.0.0", "75.0.3770.142")),
    ("firefox", FIREFOX_UA.replace("121.0", "60.0")),
    ("firefox", FIREFOX_UA.replace("121.0", "89.0")),
])
def test_sec_fetch_under_a_browser_older_than_sec_fetch_is_a_newer_client_in_disguise(family, old_ua):
    # A modern engine's header set under a UA from a list: the browser named never sent Sec-Fetch-*.
    headers = _navigation(family, old_ua)
    if family == "chrome":  # an old Chrome UA sends no hints either; only Sec-Fetch-* gives it away
        headers = [(n, v) for n, v in headers if not n.startswith("sec-ch-ua")]
    mismatch = [e for e in inspect(headers).evidence if e.code == "hdr.version_mismatch"]
    assert len(mismatch) == 1 and "Sec-Fetch" in mismatch[0].detail["problem"]


def test_sec_fetch_from_the_first_versions_that_sent_it_and_old_browsers_without_it_pass():
    chrome_76 = [(n, v) for n, v in _navigation("chrome", CHROME_UA.replace("120.0.0.0", "76.0.3809.100"))
                 if not n.startswith("sec-ch-ua")]
    firefox_90 = _navigation("firefox", FIREFOX_UA.replace("121.0", "90.0"))
    old_chrome = [(n, v) for n, v in chrome_76 if not n.startswith("sec-fetch")]
    old_chrome = [(n, CHROME_UA.replace("120.0.0.0", "49.0.2623.112") if n == "user-agent" else v)
                  for n, v in old_chrome]
    for headers in (chrome_76, firefox_90, old_chrome):
        assert "hdr.version_mismatch" not in header_codes(inspect(headers))
    safari = [nav for f, _, nav in NAVIGATIONS if f == "safari"][-1]  # Safari 15 sends none
    with_fetch = [*safari, ("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document")]
    assert "hdr.version_mismatch" in header_codes(inspect(with_fetch))


def _replaced(headers, **values):
    """Headers with Sec-Fetch-* values replaced (None drops one), in place, order kept."""
    names = {f"sec-fetch-{key}": value for key, value in values.items()}
    return [(n, names.get(n, v)) for n, v in headers if names.get(n, v) is not None]


CHROME_IMAGE = [(n, "image/avif,image/webp,*/*" if n == "accept" else v) for n, v in CHROME_SUBRESOURCE]


@pytest.mark.parametrize(("headers", "method", "fragment"), [
    (_replaced(CHROME_NAVIGATION, mode="Navigate"), "GET", "Sec-Fetch-Mode is 'Navigate'"),
    (_replaced(CHROME_NAVIGATION, dest="document, image"), "GET", "Sec-Fetch-Dest is 'document, image'"),
    (_replaced(CHROME_NAVIGATION, user="?0"), "GET", "browsers send ?1 or nothing"),
    (_replaced(CHROME_NAVIGATION, dest="image"), "GET", "a navigation for a sub-resource (image)"),
    (_replaced(CHROME_NAVIGATION, dest="empty"), "GET", "a navigation for a sub-resource (empty)"),
    (CHROME_NAVIGATION, "HEAD", "a navigation with HEAD"),
    (CHROME_NAVIGATION, "PUT", "a navigation with PUT"),
    (_replaced(CHROME_NAVIGATION, dest=None), "GET", "no Sec-Fetch-Dest"),
    (_replaced(CHROME_NAVIGATION, site=None, mode=None), "GET", "no Sec-Fetch-Site, Sec-Fetch-Mode"),
    # the navigation template pasted onto every request, the user flag with it
    ([*CHROME_SUBRESOURCE[:8], ("sec-fetch-user", "?1"), *CHROME_SUBRESOURCE[8:]], "GET",
     "Sec-Fetch-User on a no-cors request"),
])
def test_sec_fetch_headers_no_browser_sends_together_are_named(headers, method, fragment):
    forged = [e for e in inspect(headers, method=method).evidence if e.code == "hdr.fetch_metadata_forged"]
    assert len(forged) == 1, header_codes(inspect(headers, method=method))
    assert any(fragment in problem for problem in forged[0].detail["problems"]), forged[0].detail


def test_sec_fetch_sets_real_browsers_send_pass():
    nested = _replaced(CHROME_NAVIGATION, mode="nested-navigate", dest="iframe", user=None)
    chrome_79 = [(n, CHROME_UA.replace("120.0.0.0", "79.0.3945.130") if n == "user-agent" else v)
                 for n, v in _replaced(CHROME_NAVIGATION, dest=None) if not n.startswith("sec-ch-ua")]
    safari = [nav for f, _, nav in NAVIGATIONS if f == "safari"][-1]
    safari_17 = [(n, SAFARI_UA if n == "user-agent" else v) for n, v in safari]
    cases = [
        (CHROME_NAVIGATION, "POST"),  # a form submitted by a click
        (_replaced(CHROME_NAVIGATION, user=None, site="same-origin"), "GET"),  # a scripted navigation
        (_replaced(CHROME_NAVIGATION, dest="iframe", user=None), "GET"),
        (nested, "GET"),  # Chrome 76-79 named frame navigations so
        (chrome_79, "GET"),  # Site, Mode and User: Dest came with Chrome 80
        (CHROME_IMAGE, "GET"),
        (_replaced(CHROME_SUBRESOURCE, mode="cors", dest="empty"), "HEAD"),  # fetch(url, {method: "HEAD"})
        ([*safari_17, ("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate")], "GET"),  # no set held
    ]
    for headers, method in cases:
        assert "hdr.fetch_metadata_forged" not in header_codes(inspect(headers, method=method)), headers


# Chromium 156 fetching a worker's and a service worker's script (captured; UA made Windows Chrome).
WORKER_SCRIPT = [
    ("accept", "*/*"), ("user-agent", CHROME_UA), ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "same-origin"), ("sec-fetch-dest", "worker"), ("referer", "https://shop.example/"),
    ("accept-encoding", "gzip, deflate, br, zstd"), ("accept-language", "en-US,en;q=0.9"), ("cookie", "s=1"),
]
SERVICE_WORKER_SCRIPT = [
    ("cache-control", "max-age=0"), ("accept", "*/*"), ("service-worker", "script"),
    ("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "same-origin"), ("sec-fetch-dest", "serviceworker"),
    ("referer", "https://shop.example/"), ("user-agent", CHROME_UA), ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-US,en;q=0.9"), ("cookie", "s=1"),
]


def test_worker_scripts_without_client_hints_in_their_own_order_pass():
    assert header_codes(inspect(WORKER_SCRIPT, path="/static/worker.js")) == []
    assert header_codes(inspect(_replaced(WORKER_SCRIPT, dest="sharedworker"), path="/static/w.js")) == []
    assert header_codes(inspect(SERVICE_WORKER_SCRIPT, path="/sw.js")) == []


def test_worker_orders_apply_to_worker_scripts_only():
    as_page = _replaced(WORKER_SCRIPT, mode="no-cors", dest="script")
    assert {"hdr.no_client_hints", "hdr.order_mismatch"} <= set(header_codes(inspect(as_page)))
    reordered = [WORKER_SCRIPT[1], WORKER_SCRIPT[0], *WORKER_SCRIPT[2:]]  # user-agent before accept
    assert header_codes(inspect(reordered)) == ["hdr.order_mismatch"]


# Chromium 156's WebSocket handshake and a page prerendered by speculation rules (captured).
WEBSOCKET_HANDSHAKE = [
    ("connection", "Upgrade"), ("pragma", "no-cache"), ("cache-control", "no-cache"), ("user-agent", CHROME_UA),
    ("upgrade", "websocket"), ("origin", "https://shop.example"), ("sec-websocket-version", "13"),
    ("accept-encoding", "gzip, deflate, br, zstd"), ("accept-language", "en-US,en;q=0.9"), ("cookie", "s=1"),
    ("sec-websocket-key", "S6lncAgqvVHg3thyiqvvHQ=="),
    ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"),
]
PRERENDER = [
    ("upgrade-insecure-requests", "1"), ("sec-purpose", "prefetch;prerender"), ("sec-speculation-tags", "null"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    *[h for h in CHROME_NAVIGATION if h[0].startswith("sec-ch-ua")], ("user-agent", CHROME_UA),
    ("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document"),
    ("referer", "https://shop.example/"), ("accept-encoding", "gzip, deflate, br, zstd"),
    ("accept-language", "en-US,en;q=0.9"), ("cookie", "s=1"),
]


@pytest.mark.parametrize("scheme", ["wss", "ws", "https"])  # https: a forward-auth check of a handshake
def test_a_browser_websocket_handshake_passes(scheme):
    assert header_codes(inspect(WEBSOCKET_HANDSHAKE, scheme=scheme, path="/live")) == []


def test_an_upgrade_header_alone_does_not_make_a_page_request_a_handshake():
    # A script adding "Upgrade: websocket" to a page request must not escape the page checks.
    plain = [h for h in WEBSOCKET_HANDSHAKE if not h[0].startswith("sec-websocket")]
    assert {"hdr.browser_missing", "hdr.no_client_hints", "hdr.no_fetch_metadata"} <= set(header_codes(inspect(plain)))
    assert header_codes(inspect(WEBSOCKET_HANDSHAKE, method="POST")) != []  # handshakes are GETs
    assert header_codes(inspect(WEBSOCKET_HANDSHAKE)) == []


def test_a_library_websocket_handshake_under_a_browser_ua_is_named():
    # the order the Python websockets library sends, with a Chrome UA pasted in
    library = [("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-key", "x"),
               ("sec-websocket-version", "13"), ("sec-websocket-extensions", "permessage-deflate"),
               ("user-agent", CHROME_UA)]
    codes = header_codes(inspect(library, scheme="wss", path="/live"))
    assert "hdr.browser_missing" in codes and "hdr.order_mismatch" in codes


def test_speculative_prerender_passes_and_its_order_is_kept_to_speculation():
    assert header_codes(inspect(PRERENDER)) == []
    assert header_codes(inspect(_replaced(PRERENDER, mode="navigate"), method="GET")) == []
    without_purpose = [h for h in PRERENDER if h[0] not in ("sec-purpose", "sec-speculation-tags")]
    assert header_codes(inspect(without_purpose)) == ["hdr.order_mismatch"]


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIREFOX_REQUESTS = json.loads((FIXTURES / "firefox_requests.json").read_text())["requests"]


@pytest.mark.parametrize("request_", FIREFOX_REQUESTS, ids=[f"{r['method']} {r['path']}" for r in FIREFOX_REQUESTS])
def test_every_request_kind_real_firefox_makes_passes(request_):
    """Held out: the checks were written against Chromium's captures and the browsers' documents;
    Firefox ESR's own requests (scripts/capture_firefox_headers.py) never fed them."""
    facts = facts_from_headers("198.51.100.7", request_["method"], request_["path"], 0.0,
                               [tuple(h) for h in request_["headers"]], scheme=request_["scheme"])
    inspection = Inspection(facts, None, Weights())
    UserAgentSignal().inspect(facts, inspection)
    HeaderSignal().inspect(facts, inspection)
    assert inspection.attrs["ua.browser"] == "firefox"
    assert header_codes(inspection) == []


def test_the_firefox_capture_covers_every_kind():
    kinds = {(r["method"], r["path"]) for r in FIREFOX_REQUESTS}
    assert {("GET", "/k/websocket"), ("GET", "/k/worker.js"), ("GET", "/k/sw.js"), ("HEAD", "/k/fetch-head"),
            ("POST", "/k/beacon"), ("POST", "/k/form"), ("GET", "/k/iframe"), ("GET", "/k/link")} <= kinds


def test_bots_and_tools_get_no_browser_checks_but_a_fingerprint():
    inspection = inspect([("user-agent", "curl/8.4.0"), ("accept", "*/*")])
    assert header_codes(inspection) == []
    assert re.fullmatch(r"ge11nn02xx_[0-9a-f]{12}", inspection.attrs["fingerprint"])


# ---- the fingerprint ------------------------------------------------------------------------------


def _fingerprint(headers, **kwargs):
    return header_fingerprint(facts_from_headers("198.51.100.7", "GET", "/", 0.0, headers, **kwargs))


def test_fingerprint_is_stable_across_values_and_proxies_but_not_order():
    base = _fingerprint(CHROME_NAVIGATION)
    other_values = [(n, v + " x" if n == "user-agent" else v) for n, v in CHROME_NAVIGATION]
    proxied = [("x-forwarded-for", "203.0.113.1"), ("via", "1.1 lb"), *CHROME_NAVIGATION, ("cf-ray", "1")]
    assert _fingerprint(other_values) == base == _fingerprint(proxied)
    assert _fingerprint(list(reversed(CHROME_NAVIGATION))) != base
    # 13 headers minus `connection` (a proxy rewrites it) = 12 names.
    assert base.startswith("ge11nn12en_")
    assert _fingerprint([*CHROME_NAVIGATION, ("cookie", "a=1")]).startswith("ge11cn13en_")
    assert _fingerprint(CHROME_NAVIGATION, http_version="2").startswith("ge20nn12en_")


# ---- TLS fingerprint passthrough ------------------------------------------------------------------

TLS = {
    e["family"] + ":" + e["kind"]: e["value"]
    for e in load_json("fingerprints", "tls-fingerprints.json")["fingerprints"]
    if e.get("client", "browser") == "browser"
}


def test_tls_fingerprint_of_the_claimed_browser_passes_and_another_is_flagged():
    chrome_ja4 = TLS["chrome:ja4"]
    assert inspect(CHROME_NAVIGATION, tls=chrome_ja4).attrs["tls.client"] == "chrome"
    assert header_codes(inspect(CHROME_NAVIGATION, tls=chrome_ja4)) == []
    flagged = inspect(CHROME_NAVIGATION, tls=TLS["firefox:ja4"])
    assert header_codes(flagged) == ["tls.mismatch"]
    assert flagged.evidence[-1].detail["tls_client"] == "firefox"
    tool = next(
        e for e in load_json("fingerprints", "tls-fingerprints.json")["fingerprints"] if e["client"] == "tool"
    )
    by_tool = inspect(CHROME_NAVIGATION, tls=tool["value"].upper())
    assert header_codes(by_tool) == ["tls.mismatch"] and by_tool.evidence[-1].detail["kind"] == "tool"
    unknown = inspect(CHROME_NAVIGATION, tls="t13d9999h2_000000000000_000000000000")
    assert header_codes(unknown) == [] and unknown.attrs["tls.client"] == "unknown"


def test_tls_header_is_read_only_from_a_trusted_edge_on_a_live_server(tmp_path):
    log = tmp_path / "decisions.jsonl"
    policy = default_policy(
        trusted_proxies=["127.0.0.0/8"],
        tls_fingerprint_header="x-ja4",
        decision_log={"path": str(log), "all": True},
    )
    with live_server(build_demo_app(policy=policy)) as server:
        ok = requests.get(
            f"{server.url}/product/2",
            headers=dict(CHROME_NAVIGATION) | {"x-ja4": TLS["chrome:ja4"]},
            timeout=5,
        )
        lie = requests.get(
            f"{server.url}/product/2",
            headers=dict(CHROME_NAVIGATION) | {"x-ja4": TLS["firefox:ja4"]},
            timeout=5,
        )
    assert ok.status_code == 200
    records = [json.loads(line) for line in log.read_text().splitlines()]
    reasons = [[r["code"] for r in rec["reasons"]] for rec in records if rec["path"] == "/product/2"]
    assert "tls.mismatch" not in reasons[0] and "tls.mismatch" in reasons[1]
    assert lie.status_code in (200, 403)  # the score decides; the reason is what this test is about


# ---- the TLS stack the proxy read from the ClientHello -------------------------------------------

IE11_UA = "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko"
IPHONE_CHROME_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                    "CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1")


def _with_ua(user_agent: str) -> list[tuple[str, str]]:
    return [(name, user_agent if name == "user-agent" else value) for name, value in CHROME_NAVIGATION]


@pytest.mark.parametrize(("user_agent", "stack", "mismatch"), [
    (CHROME_UA, "blink", False),
    (CHROME_UA, "webkit", False),  # Chrome before 83 had neither of Chromium's marks: not held against it
    (CHROME_UA, "gecko", True),
    (CHROME_UA, "library", True),  # a script with Chrome's headers
    (FIREFOX_UA, "gecko", False),
    (FIREFOX_UA, "blink", True),  # a Chromium driven with Firefox's UA
    (FIREFOX_UA, "library", True),
    (SAFARI_UA, "webkit", False),
    (SAFARI_UA, "blink", True),
    (IPHONE_CHROME_UA, "webkit", False),  # every iOS browser is WebKit, TLS included
    (IE11_UA, "library", False),  # Windows' own TLS has no mark: not judged
])
def test_the_stack_read_from_the_clienthello_is_checked_against_the_claimed_engine(user_agent, stack, mismatch):
    inspection = inspect(_with_ua(user_agent), tls=f"swtls/{stack} h2")
    assert inspection.attrs["tls.client"] == stack
    assert ("tls.mismatch" in header_codes(inspection)) == mismatch


# In the form of nginx's $ssl_ciphers: OpenSSL's names, suites it does not know (GREASE) in hex.
# tests/proxy/test_forward_auth_nginx_tls.py reads the real ones of Chromium and httpx through nginx.
CHROMIUM_CIPHERS = ("0x2A2A:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"
                    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA:AES256-SHA")
OPENSSL_CIPHERS = ("TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:"
                   "ECDHE-ECDSA-AES256-GCM-SHA384")


@pytest.mark.parametrize(("user_agent", "ciphers", "mismatch"), [
    (CHROME_UA, CHROMIUM_CIPHERS, False),
    (CHROME_UA, OPENSSL_CIPHERS, True),  # a script with Chrome's headers, behind nginx's TLS
    (SAFARI_UA, CHROMIUM_CIPHERS, False),  # GREASE alone cannot tell Chromium from Safari
    (FIREFOX_UA, OPENSSL_CIPHERS, False),  # nor, without it, Firefox from a library
    (FIREFOX_UA, CHROMIUM_CIPHERS, True),
])
def test_nginxs_cipher_list_is_checked_for_grease_against_the_claimed_engine(user_agent, ciphers, mismatch):
    inspection = inspect(_with_ua(user_agent), tls=ciphers)
    assert inspection.attrs["tls.client"] == ("grease" if "0x2A2A" in ciphers else "no-grease")
    assert ("tls.mismatch" in header_codes(inspection)) == mismatch


def _scope(peer: str, headers: list[tuple[str, str]]) -> dict:
    return {"type": "http", "method": "GET", "path": "/", "headers": [(n.encode(), v.encode()) for n, v in headers],
            "client": (peer, 50000), "scheme": "https"}


def test_the_proxys_tls_header_is_believed_only_when_it_read_the_hello_from_the_client_itself():
    header = [("user-agent", CHROME_UA), ("x-shieldware-tls", "swtls/library -")]
    edge = TrustedProxies(["10.0.0.0/8"])
    assert facts_from_scope(_scope("198.51.100.7", header), 0.0, edge, own_tls=True).tls_fingerprint == \
        "swtls/library -"
    # From a trusted edge the handshake was the edge's own: only the edge's header may say the client's
    assert facts_from_scope(_scope("10.0.0.2", header), 0.0, edge, own_tls=True).tls_fingerprint is None
    assert facts_from_scope(_scope("10.0.0.2", [*header, ("x-ja4", "t13")]), 0.0, edge, "x-ja4",
                            own_tls=True).tls_fingerprint == "t13"
    # Not served over the proxy's own https (the middleware in a shop, plain http): a client's header
    assert facts_from_scope(_scope("198.51.100.7", header), 0.0, edge).tls_fingerprint is None


def _facts_over(version: str, peer: str, headers: list[tuple[str, str]], own_connections: bool = True):
    edge = TrustedProxies(["10.0.0.0/8"])
    return facts_from_scope({**_scope(peer, headers), "http_version": version}, 0.0, edge,
                            own_connections=own_connections)


def _judged(facts) -> list[str]:
    inspection = Inspection(facts, None, Weights())
    UserAgentSignal().inspect(facts, inspection)
    HeaderSignal().inspect(facts, inspection)
    return header_codes(inspection)


@pytest.mark.parametrize(("version", "peer", "own_connections", "flagged"), [
    ("1.0", "198.51.100.7", True, True),  # the client itself spoke HTTP/1.0 to the proxy
    ("1.1", "198.51.100.7", True, False),
    ("1.0", "10.0.0.2", True, False),  # a trusted edge's connection: its version, not the client's
    ("1.0", "198.51.100.7", False, False),  # the middleware in a shop: a server in front may have rewritten it
])
def test_a_browser_claim_over_http10_is_flagged_only_on_the_clients_own_connection(version, peer, own_connections,
                                                                                   flagged):
    facts = _facts_over(version, peer, [("host", "shop.example"), *CHROME_NAVIGATION], own_connections)
    assert facts.own_connection == (own_connections and peer == "198.51.100.7")
    assert ("hdr.http10_browser" in _judged(facts)) == flagged
    assert _judged(facts) == (["hdr.http10_browser"] if flagged else [])  # nothing else in Chrome's headers


def test_a_tool_over_http10_is_not_a_browser_claim():
    facts = _facts_over("1.0", "198.51.100.7", [("host", "shop.example"), ("user-agent", "ApacheBench/2.3"),
                                                 ("accept", "*/*")])
    assert "hdr.http10_browser" not in _judged(facts)


# ---- replay over a real server, header order exactly as given ------------------------------------


def test_live_replay_real_browsers_pass_and_python_requests_is_named(tmp_path):
    log = tmp_path / "decisions.jsonl"
    policy = default_policy(decision_log={"path": str(log), "all": True})
    replays = [
        next(h for f, _, h in NAVIGATIONS if f == family) for family in ("chrome", "firefox", "safari")
    ]
    with live_server(build_demo_app(policy=policy)) as server:
        host = ("host", f"127.0.0.1:{server.port}")
        statuses = [
            raw_get(server.port, f"/product/{i}", [host, *h]) for i, h in enumerate(replays, start=1)
        ]
        impostor = requests.get(f"{server.url}/product/9", headers={"user-agent": CHROME_UA}, timeout=5)
    assert statuses == [200, 200, 200]
    records = {rec["path"]: rec for rec in map(json.loads, log.read_text().splitlines())}
    for i in (1, 2, 3):
        assert not [r for r in records[f"/product/{i}"]["reasons"] if r["code"].startswith("hdr.")]
    impostor_codes = {r["code"] for r in records["/product/9"]["reasons"]}
    assert {
        "hdr.order_mismatch",
        "hdr.browser_missing",
        "hdr.no_fetch_metadata",
        "hdr.no_client_hints",
    } <= impostor_codes
    assert impostor.status_code == 403


def test_log_lines_are_not_judged_on_headers_they_never_kept():
    facts = facts_from_headers(
        "198.51.100.7", "GET", "/product/1", 0.0, [("user-agent", CHROME_UA)], source="log"
    )
    inspection = Inspection(facts, None, Weights())
    UserAgentSignal().inspect(facts, inspection)
    HeaderSignal().inspect(facts, inspection)
    assert inspection.evidence == [] and "fingerprint" not in inspection.attrs
