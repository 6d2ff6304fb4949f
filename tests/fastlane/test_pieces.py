"""Each piece of the compiled lane against the Python it stands for.

Globs against the policy's regexes, product ids against the traffic signal's, dotted quads
against the front door's, a scope's client address, route group, session and eligibility
against facts_from_scope, and the traffic triggers against TrafficSignal.assess itself.
"""

from __future__ import annotations

import asyncio
import random
import re
import struct
import time
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldware.decision import SHIELD_HEADER_PREFIXES, head_lines
from shieldware.engine import Engine
from shieldware.facts import CLIENT_IP_HEADERS, _is_canonical_ipv4, facts_from_scope
from shieldware.fastlane.lane import native
from shieldware.fastlane.plan import VALUE_FREE_HEADERS
from shieldware.middleware import ShieldMiddleware
from shieldware.policy import compile_globs, default_policy, glob_to_regex
from shieldware.signals.base import Inspection
from shieldware.signals.traffic import TrafficSignal
from shieldware.signals.traffic_keys import product_id
from shieldware.store import MemoryStore
from shieldware.store.base import WindowStats
from shieldware.windows.layout import OUT_WIDTH
from tests.fastlane.traffic import stream
from tests.support import CHROME_NAVIGATION

pytestmark = pytest.mark.skipif(native is None, reason="the fast lane's C extension is not compiled here")

PATH_CHARS = "aAbB/.-_*?0129%"
GLOB_CHARS = "aAbB/.-_*?0129"


@settings(max_examples=3000)
@given(st.lists(st.text(GLOB_CHARS, max_size=8), min_size=1, max_size=4),
       st.text(PATH_CHARS.replace("*", "").replace("?", ""), max_size=12))
def test_globs_match_as_the_policy_regex_does(patterns, path):
    assert native.globs_match(tuple(patterns), path) == (compile_globs(patterns).match(path) is not None)
    one = re.compile(glob_to_regex(patterns[0]) + r"\Z", re.IGNORECASE | re.ASCII)
    assert native.glob_match(patterns[0].lower(), path) == (one.match(path) is not None)


@pytest.mark.parametrize(("path", "matched"), [
    ("/login", True), ("/LOGIN", True), ("/Login/", True), ("/login//", False), ("/loginx", False),
    ("/Static/app.JS", True), ("/static", False), ("/a/b.CSS/", True), ("/", False), ("/CHECKOUT/", True)])
def test_globs_fold_case_and_allow_one_trailing_slash(path, matched):
    patterns = ("/login", "/static/*", "*.css", "/Checkout")
    assert native.globs_match(patterns, path) is matched
    assert (compile_globs(patterns).match(path) is not None) is matched


@settings(max_examples=3000)
@given(st.text("/0123456789-_.ab", max_size=24))
def test_product_ids_are_read_as_the_traffic_signal_reads_them(path):
    assert native.product_id(path) == product_id(path)


@pytest.mark.parametrize("path", ["/product/42", "/p/42-blue-teapot", "/p/7/", "/product/0012", "/product/123456789012",
                                  "/product/1234567890123", "/product/12a", "/product/", "42", "/a/1.", "/x/1//"])
def test_product_id_edges(path):
    assert native.product_id(path) == product_id(path)


@settings(max_examples=2000)
@given(st.one_of(st.text("0123456789.", max_size=16),
                 st.tuples(*[st.integers(0, 300)] * 4).map(lambda q: ".".join(map(str, q)))))
def test_dotted_quads_are_recognised_as_the_front_door_recognises_them(text):
    assert native.canonical_ipv4(text) == _is_canonical_ipv4(text)


_MIDDLEWARE: dict[str, ShieldMiddleware] = {}


def lane_middleware(client_ip_header: str = "x-forwarded-for") -> ShieldMiddleware:
    """One middleware (with its lane) per client address header for the whole module: the pieces
    tested keep no state."""
    if client_ip_header not in _MIDDLEWARE:
        policy = default_policy(mode="monitor", trusted_proxies=["127.0.0.1/32", "10.0.0.0/8", "2001:db8:ff::/48"],
                                client_ip_header=client_ip_header)
        _MIDDLEWARE[client_ip_header] = ShieldMiddleware(lambda scope, receive, send: None, policy=policy,
                                                         store=MemoryStore(capacity=64))
    assert _MIDDLEWARE[client_ip_header].lane is not None
    return _MIDDLEWARE[client_ip_header]


def python_view(middleware: ShieldMiddleware, scope: dict) -> dict | None:
    """What the Python path reads from a scope where the lane reads the same, or None where the
    front door notes something (the lane must then hand the request over)."""
    facts = facts_from_scope(scope, 0.0, middleware.trusted, middleware.tls_header)
    if facts.notes:
        return None
    traffic = next(s for s in middleware.engine.signals if isinstance(s, TrafficSignal))
    group = middleware.policy.route_table.group_for(facts.method, facts.path)
    groups = [g.name for g in middleware.policy.route_table.groups]
    return {"client_ip": facts.client_ip, "group": groups.index(group.name), "session": traffic._session_id(facts)}


def check_scan(middleware: ShieldMiddleware, scope: dict) -> str:
    outcome, seen = middleware.lane.native.scan(scope)
    expected = python_view(middleware, scope)
    if outcome == "lane":
        assert expected is not None, f"the lane took a request the front door notes: {scope['headers']}"
        assert {k: seen[k] for k in ("client_ip", "group", "session")} == expected
    return outcome


def test_scans_of_a_mixed_stream_agree_with_the_front_door():
    middleware = lane_middleware()
    outcomes = [check_scan(middleware, scope) for _, scope in stream(11, 4000, clients_count=300)]
    assert outcomes.count("lane") > 3000
    assert {"headers", "cookie"} <= set(outcomes)


COOKIE_PIECES = st.sampled_from(["shop_session=abc", "session=", "sessionid=x1", 'shop_session="q"', "shop_session=",
                                 " theme = dark ", "=nameless", "novalue", "a=b=c", "PHPSESSID=p", ";", " ",
                                 "shieldware_clearance=t", "shop_session=second", "JSESSIONID=j"])


@settings(max_examples=1500, deadline=None)  # the first example may build the middleware
@given(st.lists(COOKIE_PIECES, max_size=8), st.sampled_from(["; ", ";", " ;", ";;"]))
def test_session_cookies_are_read_as_the_traffic_signal_reads_them(pieces, separator):
    middleware = lane_middleware()
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]
    headers.append((b"cookie", separator.join(pieces).encode()))
    check_scan(middleware, scope_with(headers))


ADDRESSES = st.sampled_from(["198.51.100.7", " 198.51.100.7", "10.1.2.3", "10.0.0.1", "2001:db8::1", "::ffff:10.9.9.9",
                             "2001:db8:ff::5", "[2001:db8::2]:443", "198.51.100.7:5555", "unknown", "", "300.1.1.1",
                             "010.1.1.1", "127.0.0.1"])


# scope["client"] as servers give it, and as odd as it may come: the lane keeps the last peer's
# reading, so a run of examples also checks that one peer's reading never stands for another's.
CLIENTS = st.one_of(st.sampled_from(["127.0.0.1", "198.51.100.1", "::1", "testclient", "10.2.2.2", " 10.2.2.2",
                                     "127.0.0.1 "]).map(lambda peer: (peer, 4000)),
                    st.sampled_from([None, (), ["10.2.2.2", 1], ("127.0.0.1",), (5, 1), ("10.2.2.\u00e9", 1)]))


@settings(max_examples=1500, deadline=None)  # the first example may build the middleware
@given(st.sampled_from(CLIENT_IP_HEADERS), st.lists(ADDRESSES, max_size=5), CLIENTS,
       st.sets(st.sampled_from([b"x-real-ip", b"x-forwarded-for", b"forwarded"]), max_size=3))
def test_client_addresses_resolve_as_the_front_door_resolves_them(client_ip_header, hops, client, sent):
    # Whichever forwarding headers come, only the one the trusted proxies write may name the client.
    middleware = lane_middleware(client_ip_header)
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]
    for name in sorted(sent):
        value = ",".join(hops) if name != b"forwarded" else ", ".join(f"for={hop}" for hop in hops)
        headers.append((name, value.encode()))
    outcome = check_scan(middleware, scope_with(headers, client=client))
    if client_ip_header != "forwarded" and {b"forwarded"} == sent and client == ("127.0.0.1", 4000):
        assert outcome == "lane", "a client's own Forwarded header sent the request to Python"


def scope_with(headers, path="/product/3", client=("127.0.0.1", 4000)) -> dict:
    return {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
            "query_string": b"", "headers": headers, "client": client}


@settings(max_examples=500, deadline=None)  # the first example may build the middleware
@given(st.one_of(st.text("/abcdeprot.0123456789-_", min_size=1, max_size=30),
                 st.sampled_from(["/static/app.js", "/favicon.ico", "/img/a.png", "/assets/x", "/robots.txt"])),
       st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS", "get", "GETS"]))
def test_route_groups_are_found_as_the_route_table_finds_them(path, method):
    middleware = lane_middleware()
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]
    scope = {**scope_with(headers, path="/" + path.lstrip("/")), "method": method}
    check_scan(middleware, scope)


def plain_header_name(name: bytes) -> bool:
    """The names the lane reads itself: what servers hand over (lower-case printable ASCII, no
    space), 1 to 64 bytes; anything else goes to the Python front door."""
    return 1 <= len(name) <= 64 and all(0x21 <= c <= 0x7e and not 0x41 <= c <= 0x5a for c in name)


SPECIAL_NAMES = {b"cookie", b"x-forwarded-for", b"x-real-ip", b"forwarded", *(n.encode() for n, _ in CHROME_NAVIGATION)}


@settings(max_examples=4000, deadline=None)  # the first example builds the middleware
@given(st.one_of(st.binary(max_size=70), st.text(st.characters(min_codepoint=0x1f, max_codepoint=0x80),
                                                  max_size=70).map(lambda t: t.encode("latin-1"))))
def test_header_names_are_taken_exactly_when_plain(name):
    if name in SPECIAL_NAMES or name.startswith(SHIELD_HEADER_PREFIXES):
        return  # read for what they say, or handed over whatever their bytes
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION] + [(name, b"v")]
    outcome, _ = lane_middleware().lane.native.scan(scope_with(headers))
    assert (outcome != "headers") == plain_header_name(name), name


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 40), st.sampled_from([0x7e, 0x7f, 0x80, 0xff, 0x20, 0x00]),
       st.sampled_from([b"x-test", b"referer", b"priority"]))
def test_header_values_past_ascii_are_handed_over(value, at, byte, name):
    """Whether or not the value goes into the shape (referer's and priority's do not)."""
    value = value[:at] + bytes([byte]) + value[at:]  # a byte either side of the line, anywhere
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION] + [(name, value)]
    outcome, _ = lane_middleware().lane.native.scan(scope_with(headers))
    assert (outcome == "headers") == any(b >= 0x7f for b in value), value


async def test_a_planned_shape_still_hands_over_names_and_values_that_are_not_plain():
    """Names and values are judged only when their shape is new (a planned shape was judged when it
    was planned): a request that differs from a planned one by an upper-case name, a space in a name
    or a byte past ASCII in a value never matches it, and is handed over."""
    middleware = ShieldMiddleware(recording_app([]), policy=default_policy(mode="monitor"),
                                  store=MemoryStore(capacity=64))
    chrome = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]

    def scope(extra: tuple[bytes, bytes]) -> dict:
        return scope_with([*chrome, extra], path="/about", client=("198.51.100.6", 4000))

    for _ in range(3):
        await middleware.handle(scope((b"x-test", b"plain")), no_body, discard)
    native = middleware.lane.native
    assert native.decide(scope((b"x-test", b"plain")), time.time()).__class__ is dict  # planned
    handed_over = native.counts()["headers"]
    for odd in ((b"X-Test", b"plain"), (b"x test", b"plain"), (b"x-test", b"pl\xe4in"), (b"x-test", b"plain\x7f")):
        assert native.decide(scope(odd), time.time()) is None, odd
    assert native.counts()["headers"] == handed_over + 4


PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40)


@settings(max_examples=2000, deadline=None)
@given(PRINTABLE, PRINTABLE, st.sampled_from(["x-test", "x-t", "x-test-with-a-longer-name"]))
def test_shapes_differ_exactly_when_a_header_value_does(first, second, name):
    """Every byte of a name and value reaches the shape: pieces are copied a word at a time, the last
    bytes as an overlapping word, and short ones four bytes or one byte at a time."""
    def shape(value: str) -> bytes:
        headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION] + [(name.encode(), value.encode())]
        outcome, seen = lane_middleware().lane.native.scan(scope_with(headers, client=("203.0.113.9", 4000)))
        assert outcome == "lane", (value, outcome)
        return seen["shape"]

    assert (shape(first) == shape(second)) == (first == second)
    piece = b"".join(struct.pack("<H", len(text)) + text.encode() for text in (name, first))  # length, bytes
    assert piece in shape(first)  # no byte changed on the way


def test_endpoints_added_after_the_lane_is_built_are_theirs():
    async def health(scope, receive, send, facts):
        return None

    middleware = ShieldMiddleware(lambda scope, receive, send: None, policy=default_policy(mode="monitor"),
                                  store=MemoryStore(capacity=64))
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]
    paths = ["/healthz", "/status/ready", "/h\u00e9alth", "/" + "x" * 70]  # new lengths, a non-ASCII one, a long one
    assert [middleware.lane.native.scan(scope_with(headers, path=path))[0] for path in paths] == [
        "lane", "lane", "path", "lane"]  # the non-ASCII path is never the lane's
    for path in paths:
        middleware.add_endpoint(path, health)
        assert middleware.lane.native.scan(scope_with(headers, path=path))[0] == "path", path
    assert middleware.lane.native.scan(scope_with(headers, path="/product/7"))[0] == "lane"


# Names a value-free lookup could mistake for one of the list: near misses in length and letters.
NEAR_NAMES = ["user-agent", "accept", "sec-fetch-mode", "x-forwarded-fo", "cookies", "referrer", "x-request-ids",
              "pragma-", "priorit", "cache-contro", "if-match", "tracestat", "x-amzn-trace-ie", "content-lengtH"]


@settings(max_examples=600, deadline=None)  # the first example may build the middleware
@given(st.sampled_from(sorted(VALUE_FREE_HEADERS) + NEAR_NAMES), st.sampled_from(["a=1", "a=2", "b=1"]),
       st.sampled_from(["a=1", "a=2", "b=1"]))
def test_only_value_free_headers_leave_their_values_out_of_the_shape(name, first, second):
    def shape(value: str) -> bytes:
        headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION if n != name]
        outcome, seen = lane_middleware().lane.native.scan(scope_with([*headers, (name.encode(), value.encode())],
                                                                       client=("203.0.113.9", 4000)))
        assert outcome == "lane", (name, value, outcome)
        return seen["shape"]

    if name.lower() != name:  # not a name a server hands over: never the lane's
        return
    assert (shape(first) == shape(second)) == (name in VALUE_FREE_HEADERS or first == second)


def recording_app(seen: list) -> Any:
    """A one-line ASGI app that keeps the scope and the send of every request it serves."""

    async def app(scope, receive, send):
        seen.append((scope, send))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def no_body() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: dict) -> None:
    return None


async def test_a_held_window_lock_hands_the_request_over_and_observes_nothing():
    app, receive, send = recording_app([]), no_body, discard
    clock = iter(range(1_800_000_000_0, 1_800_000_100_0))  # tenths of a second
    middleware = ShieldMiddleware(app, policy=default_policy(mode="monitor"), store=MemoryStore(capacity=64),
                                  clock=lambda: next(clock) / 10)
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION] + [(b"cookie", b"shop_session=s1")]
    for _ in range(3):  # the first is decided in Python and drafts the plan the others follow
        await middleware(scope_with(headers), receive, send)
    native_lane = middleware.lane.native
    assert native_lane.counts()["hit"] >= 1
    windows = middleware.engine.store.windows
    before = windows.state.copy()
    with windows._lock:  # as a Python-path kernel run holds it, with the GIL let go
        assert native_lane.decide(scope_with(headers), 1_800_000_001.0) is None
    assert native_lane.counts()["busy"] == 1
    assert (windows.state == before).all()  # nothing observed while another run might be
    assert native_lane.decide(scope_with(headers), 1_800_000_001.1).__class__ is dict


# ---- triggers ------------------------------------------------------------------------------------

# Values around every threshold of the default traffic settings, and some others.
INTERESTING = [0.0, 0.02, 0.03, 0.031, 0.1, 0.2, 0.25, 0.2499, 0.3, 0.5, 0.6, 0.59, 0.9, 0.91, 1.0, 2.0, 7.9, 8.0,
               11.0, 11.99, 12.0, 12.5, 15.9, 16.0, 19.9, 20.0, 24.9, 25.0, 26.0, 399.0, 400.0, 1499.0, 1500.0,
               2000.0]


def product_plan(middleware: ShieldMiddleware, cookie: bool = True) -> tuple[Engine, TrafficSignal, Inspection, int]:
    """A product-page inspection of a Chrome client, its observations queued but not yet made;
    without a cookie, it observes the client software's walk too (one row more)."""
    engine = middleware.engine
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION] + ([(b"cookie", b"shop_session=s1")] if cookie
                                                                           else [])
    facts = facts_from_scope(scope_with(headers), 1_800_000_000.0, middleware.trusted)
    group = engine.policy.route_table.group_for("GET", "/product/3")
    inspection = Inspection(facts, group, engine.policy.weights, engine.policy)
    inspectors, _, _ = engine.plan(group)
    for signal in inspectors:
        signal.inspect(facts, inspection)
    traffic = next(s for s in inspectors if isinstance(s, TrafficSignal))
    groups = [g.name for g in engine.policy.route_table.groups]
    return engine, traffic, inspection, groups.index(group.name)


def assess_speaks(traffic: TrafficSignal, inspection: Inspection, rows: list[list[float]]) -> bool:
    evidence, demands = len(inspection.evidence), len(inspection.demands)
    inspection.stats = [WindowStats(row) for row in rows]
    traffic.assess(inspection.facts, inspection)
    spoke = len(inspection.evidence) > evidence or len(inspection.demands) > demands
    del inspection.evidence[evidence:], inspection.demands[demands:]
    return spoke


@pytest.mark.parametrize(("cookie", "set_by"), [(True, True), (False, False), (True, False), (False, True)],
                         ids=["cookie", "no cookie", "cookie, group set without", "no cookie, group set with"])
def test_triggers_fire_exactly_when_assess_speaks(cookie, set_by):
    """A route group's triggers are set from its first plan's part, with a cookie or without: either
    way they fire exactly when assess speaks, for plans of the other kind too (one row fewer or more)."""
    middleware = lane_middleware()
    _, traffic, inspection, group = product_plan(middleware, cookie)
    _, setter, set_from, _ = product_plan(middleware, set_by)
    part = setter.lane_part(set_from.facts, set_from)
    middleware.lane.native.set_triggers(group, [[(a.row, a.field, a.op, a.field2, a.value) for a in t]
                                                for t in part.triggers])
    rows_count = len(inspection.observations)
    rng = random.Random(5)
    fired = 0
    for _ in range(20000):
        rows = [[rng.choice(INTERESTING) if rng.random() < 0.3 else 0.0 for _ in range(OUT_WIDTH)]
                for _ in range(rows_count)]
        packed = struct.pack(f"={rows_count * OUT_WIDTH}d", *(v for row in rows for v in row))
        expected = assess_speaks(traffic, inspection, rows)
        assert bool(middleware.lane.native.triggered(group, packed)) == expected, rows
        fired += expected
    assert 2000 < fired < 18000  # both answers were exercised


def assess_findings(traffic: TrafficSignal, inspection: Inspection, rows: list[list[float]]) -> tuple:
    """The findings assess adds for these window answers: reason codes (with the pattern, where a code
    has two) and the verdicts it demands, without the numbers."""
    evidence, demands = len(inspection.evidence), len(inspection.demands)
    inspection.stats = [WindowStats(row) for row in rows]
    traffic.assess(inspection.facts, inspection)
    found = (tuple(sorted((e.code, str(e.detail.get("pattern", ""))) for e in inspection.evidence[evidence:])),
             tuple(sorted(str(verdict) for verdict, _ in inspection.demands[demands:])))
    del inspection.evidence[evidence:], inspection.demands[demands:]
    return found


def test_the_triggers_that_fire_name_the_findings_assess_adds():
    """The lane holds a flagged client's assessment while the same triggers fire
    (shieldware/fastlane/holds.py): that is sound only if the bits that fire say which findings, and
    which demands, assess adds, whatever the numbers behind them."""
    middleware = lane_middleware()
    _, traffic, inspection, group = product_plan(middleware, cookie=False)
    part = traffic.lane_part(inspection.facts, inspection)
    middleware.lane.native.set_triggers(group, [[(a.row, a.field, a.op, a.field2, a.value) for a in t]
                                                for t in part.triggers])
    rows_count = len(inspection.observations)
    rng = random.Random(11)
    findings_of: dict[int, tuple] = {}
    for _ in range(20000):
        rows = [[rng.choice(INTERESTING) if rng.random() < 0.3 else 0.0 for _ in range(OUT_WIDTH)]
                for _ in range(rows_count)]
        packed = struct.pack(f"={rows_count * OUT_WIDTH}d", *(v for row in rows for v in row))
        fired = middleware.lane.native.triggered(group, packed)
        found = assess_findings(traffic, inspection, rows)
        assert findings_of.setdefault(fired, found) == found, (fired, rows)
        assert (fired == 0) == (found == ((), ())), (fired, rows)
    assert len(findings_of) > 50  # many combinations of findings were met


@pytest.mark.parametrize("headers_in_scope", [True, False])
async def test_the_front_door_hands_a_planned_request_the_apps_own_coroutine(headers_in_scope):
    """`handle` is the lane's front door in C: a request it answers reaches the app with no frame of
    ours around it, watched; the first, unplanned one goes to the Python path. Both give the app
    the X-Shield-* headers alike: in its scope's headers, or as the decision's head lines."""
    seen: list[tuple[dict, object]] = []
    app, receive = recording_app(seen), no_body
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    middleware = ShieldMiddleware(app, policy=default_policy(mode="monitor"), store=MemoryStore(capacity=64),
                                  headers_in_scope=headers_in_scope)
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]
    codes = []
    for _ in range(3):
        awaitable = middleware.handle(scope_with(headers, path="/about", client=("198.51.100.4", 4000)), receive, send)
        codes.append(awaitable.cr_code)
        await awaitable
    assert codes[0] is not app.__code__  # the Python path drafts the plan
    assert codes[-1] is app.__code__  # planned: the app's own coroutine
    for scope, _ in seen:  # the Python path's and the lane's
        decision = scope["state"]["shield"]
        if headers_in_scope:
            assert scope["headers"] == [*headers, *decision.shield_headers()] and decision.header_lines is None
        else:
            assert scope["headers"] == headers
            assert decision.header_lines == head_lines(decision.shield_headers())
            assert decision.header_lines.endswith(b"x-shield-ref: " + decision.ref.encode() + b"\r\n")
    scope, watch = seen[-1]
    assert scope["state"]["shield"].client_ip == "198.51.100.4"
    assert type(watch).__name__ == "ResponseWatch" and watch.status == 200
    assert [m["type"] for m in sent].count("http.response.start") == 3
    assert middleware.lane.counts()["hit"] >= 1


@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize("given_state", ["dict", "mapping", "none"])
async def test_the_app_gets_the_servers_own_scope_only_when_told_it_may(in_place, given_state):
    """ASGI asks middleware to copy the scope before it changes it; the proxy, which owns its server,
    says its scopes may be changed in place (`scope_in_place`). Either way, on the Python path and
    the lane's, the app's state holds what the server's held and the decision; copied, the server's
    own scope and state are left as they were."""
    seen: list[tuple[dict, object]] = []
    app, receive, send = recording_app(seen), no_body, discard
    middleware = ShieldMiddleware(app, policy=default_policy(mode="monitor"), store=MemoryStore(capacity=64),
                                  headers_in_scope=False, scope_in_place=in_place)
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]
    servers: list[dict] = []
    for _ in range(3):
        scope = scope_with(headers, path="/about", client=("198.51.100.6", 4000))
        scope.pop("state", None)
        if given_state != "none":
            state = {"shop": "kept"}
            scope["state"] = state if given_state == "dict" else types.MappingProxyType(state)
        servers.append(scope)
        awaitable = middleware.handle(scope, receive, send)
        await awaitable
    assert awaitable.cr_code is app.__code__  # the last one was decided in the lane
    for server_scope, (app_scope, _) in zip(servers, seen, strict=True):
        state = app_scope["state"]
        assert type(state) is dict and state["shield"].client_ip == "198.51.100.6"
        assert state.get("shop") == (None if given_state == "none" else "kept")
        assert app_scope["headers"] == headers
        if in_place:
            assert app_scope is server_scope
            if given_state == "dict":
                assert server_scope["state"] is state
        else:
            assert app_scope is not server_scope
            assert "shield" not in server_scope.get("state", {})


async def test_clearing_the_lane_retires_the_plans_in_use_and_counts_their_decisions():
    """clear() (a policy reload, new address databases) passes over the slots that hold nothing
    without writing to them; the plans that are in use still go, their decisions still counted."""
    seen: list[tuple[dict, object]] = []
    middleware = ShieldMiddleware(recording_app(seen), policy=default_policy(mode="monitor"),
                                  store=MemoryStore(capacity=64))
    native = middleware.lane.native
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]
    clients = [f"198.51.100.{n}" for n in range(10, 14)]

    async def visit(client: str) -> None:
        await middleware.handle(scope_with(headers, path="/about", client=(client, 4000)), no_body, discard)

    for _ in range(3):
        for client in clients:
            await visit(client)
    before = native.counts()
    assert before["hit"] + before["made"] >= 2 * len(clients)
    native.clear()
    retired = native.drain()[0]
    assert sum(hits for _, hits in retired) == before["hit"] + before["made"]
    await visit(clients[0])  # its plan went with the rest: the Python path decides it again
    after = native.counts()
    assert after["miss"] == before["miss"] + 1
    await visit(clients[0])  # planned again
    assert native.counts()["hit"] == after["hit"] + 1 and len(seen) == 3 * len(clients) + 2


@pytest.mark.parametrize("wall", [True, False])
async def test_the_front_door_decides_at_the_middlewares_clock(wall):
    """With time.time as the clock the front door reads the wall clock itself, as time.time does;
    any other clock is called, so a test's or a replay's time still reaches the lane's decisions."""
    seen: list[tuple[dict, object]] = []
    app, receive, send = recording_app(seen), no_body, discard
    ticks = iter(range(1_800_000_000, 1_800_000_100))
    clock = time.time if wall else (lambda: next(ticks) + 0.25)
    middleware = ShieldMiddleware(app, policy=default_policy(mode="monitor"), store=MemoryStore(capacity=64),
                                  clock=clock)
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]
    for _ in range(3):
        before = time.time()
        awaitable = middleware.handle(scope_with(headers, path="/about", client=("198.51.100.5", 4000)), receive, send)
        await awaitable
        after = time.time()
    assert awaitable.cr_code is app.__code__  # the last one was decided in the lane
    decided_at = seen[-1][0]["state"]["shield"].time
    if wall:
        assert before <= decided_at <= after
    else:
        assert decided_at == 1_800_000_002.25


async def test_a_due_switchboard_refresh_starts_from_the_front_door_and_a_change_stops_the_lane():
    """When the switchboard's refresh falls due, the front door starts it and goes on deciding in the
    lane (the switches are the same cached ones either way); once the refresh finds a switch turned
    on, the lane stands aside and the Python path applies it."""
    from shieldware.switches import REFRESH_SECONDS, set_under_attack
    from tests.support import SimulatedClock

    verdicts: list[str] = []

    async def app(scope, receive, send):
        verdicts.append(scope["state"]["shield"].verdict.value)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start" and message["status"] != 200:
            verdicts.append(str(message["status"]))

    clock = SimulatedClock()
    store = MemoryStore(capacity=64)
    middleware = ShieldMiddleware(app, policy=default_policy(), store=store, clock=clock)
    headers = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]

    async def visit() -> None:
        clock.advance(1.0)
        await middleware.handle(scope_with(headers, path="/about", client=("198.51.100.5", 4000)), receive, send)
        await asyncio.sleep(0.01)  # a background refresh, if one started, finishes

    for _ in range(6):  # until the client's plan is made and used
        await visit()
        if middleware.lane.counts()["hit"]:
            break
    counts = middleware.lane.counts()
    assert counts["hit"] == 1
    clock.advance(REFRESH_SECONDS)
    await visit()  # the refresh falls due: decided in the lane all the same
    after = middleware.lane.counts()
    assert (after["hit"] - counts["hit"], after["off"] - counts["off"]) == (1, 0)
    assert middleware.lane.board.next_refresh > clock.now

    await set_under_attack(store, middleware.engine.decision_log, "browse", True, clock.now, 600, "drill")
    clock.advance(REFRESH_SECONDS)
    await visit()  # starts the refresh that finds the switch (this request still on the cached switches)
    await visit()
    assert set(verdicts[:-1]) == {"allow"} and verdicts[-1] != "allow", verdicts
    assert middleware.lane.counts()["off"] > after["off"]
