"""Forward-auth: the check endpoint on its own (tests/proxy/test_forward_auth_edges.py puts real edges in front)."""

from __future__ import annotations

import asyncio
import http.client
from dataclasses import replace

import pytest
import requests

from shieldware.decision import Decision, Verdict
from shieldware.facts import TrustedProxies, facts_from_headers, facts_from_scope
from shieldware.middleware import ShieldMiddleware
from shieldware.policy import default_policy
from shieldware.proxy.forward_auth import ForwardAuthEndpoint, original_request, original_scope, plain_call
from tests.proxy_support import forward_auth_checks, proxy_process
from tests.support import CHROME_NAVIGATION


@pytest.fixture(scope="module")
def auth_server():
    with proxy_process("--auth-only") as proxy:  # no --trusted-proxy: loopback edges are trusted
        yield proxy


def check(server, headers, path="/.shieldware/check"):
    return requests.get(server.url + path, headers=headers, allow_redirects=False, timeout=10)


def edge_headers(client_headers, uri="/product/7", method="GET", host="shop.example"):
    return {**dict(client_headers), "X-Original-URI": uri, "X-Original-Method": method,
            "X-Forwarded-Host": host, "X-Forwarded-For": "198.51.100.20", "X-Forwarded-Proto": "https"}


# ---- the endpoint --------------------------------------------------------------------------------


def test_browser_request_is_allowed_with_shield_headers(auth_server):
    response = check(auth_server, edge_headers(CHROME_NAVIGATION))
    assert response.status_code == 200
    assert response.headers["x-shield-verdict"] == "allow"
    assert response.headers["x-shield-ref"]
    assert int(response.headers["x-shield-score"]) < 50


def test_scraper_is_refused_with_a_reference(auth_server):
    response = check(auth_server, edge_headers({"User-Agent": "python-requests/2.31"}))
    assert response.status_code == 403
    assert response.headers["x-shield-verdict"] == "block"
    assert response.headers["x-shield-ref"] in response.text


def test_suspicious_browser_gets_a_challenge_redirect_target(auth_server):
    # Chrome's own headers in Chrome's order, but without Accept-Language, which every browser sends:
    # suspicious, not certainly a bot. http.client keeps the order exactly as given.
    browser = [(k, v) for k, v in CHROME_NAVIGATION if k != "accept-language"]
    headers = browser + list(edge_headers({}, uri="/product/7?colour=red&size=m").items())
    connection = http.client.HTTPConnection("127.0.0.1", int(auth_server.url.rsplit(":", 1)[1]), timeout=10)
    connection.putrequest("GET", "/.shieldware/check", skip_accept_encoding=True)
    for name, value in headers:
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    assert response.status == 401
    assert response.getheader("x-shield-verdict") == "challenge"
    target = "/.shieldware/challenge?return=/product/7%3Fcolour%3Dred%26size%3Dm"
    # Absolute on the client's host: Traefik would resolve a relative one against shieldware's address.
    assert response.getheader("location") == "https://shop.example" + target
    assert response.getheader("x-shield-challenge") == target
    assert "http-equiv=\"refresh\"" in body


def test_traefik_style_headers_are_understood(auth_server):
    headers = {**dict(CHROME_NAVIGATION), "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/search?q=tea",
               "X-Forwarded-Host": "shop.example", "X-Forwarded-Proto": "https",
               "X-Forwarded-For": "192.0.2.4"}
    assert check(auth_server, headers).status_code == 200
    headers["User-Agent"] = "curl/8.5.0"
    assert check(auth_server, headers).status_code == 403


def test_missing_original_uri_is_a_clear_400(auth_server):
    response = check(auth_server, dict(CHROME_NAVIGATION))
    assert response.status_code == 400
    assert "X-Original-URI" in response.text


def test_checks_are_counted_by_answer_and_by_how_the_call_was_read(auth_server):
    before = forward_auth_checks(auth_server.url)
    assert check(auth_server, edge_headers(CHROME_NAVIGATION)).status_code == 200  # plain
    assert check(auth_server, dict(CHROME_NAVIGATION)).status_code == 400  # no URI
    conflicting = {**edge_headers(CHROME_NAVIGATION, uri="/login", method="POST"), "X-Forwarded-Method": "GET"}
    assert check(auth_server, conflicting).status_code == 403
    after = forward_auth_checks(auth_server.url)
    added = {labels: n - before.get(labels, 0) for labels, n in after.items() if n != before.get(labels, 0)}
    assert added == {("200", "plain"): 1, ("400", "full"): 1, ("403", "full"): 1}


def test_untrusted_caller_cannot_ask():
    with proxy_process("--auth-only", "--trusted-proxy", "10.0.0.0/8") as server:
        response = check(server, edge_headers(CHROME_NAVIGATION))
    assert response.status_code == 403
    assert "not a trusted proxy" in response.text
    assert "x-shield-verdict" not in response.headers


def test_original_request_is_rebuilt_from_edge_headers():
    headers = [("host", "auth.internal:9000"), *((k.lower(), v) for k, v in edge_headers(
        CHROME_NAVIGATION, uri="/a%20b?x=1", method="post").items())]
    facts = facts_from_headers("127.0.0.1", "GET", "/.shieldware/check", 1000.0, headers, peer_ip="127.0.0.1")
    original, raw_uri = original_request(facts, TrustedProxies(["127.0.0.0/8"]))
    assert (original.method, original.path, original.query, raw_uri) == ("POST", "/a b", "x=1", "/a%20b?x=1")
    assert original.host == "shop.example" and original.scheme == "https"
    assert original.client_ip == "198.51.100.20"
    names = [name for name, _ in original.headers]
    assert "x-original-uri" not in names and "x-forwarded-for" not in names
    assert names[0] == "host" and original.header_map["host"] == "shop.example"
    # Headers that are not the edge's keep their arrival order.
    assert names[1:] == [name for name, _ in CHROME_NAVIGATION if name != "connection"]


@pytest.mark.parametrize("uri", ["HTTP://shop.example/Login/?next=1", "https://shop.example/static/..;/login?next=1",
                                 "/static%2F..%2Flogin?next=1", "/login;jsessionid=9?next=1"])
def test_an_original_uri_in_any_spelling_of_the_login_routes_as_the_login(uri):
    """nginx's $request_uri keeps a client's absolute-form target and its percent-encoding."""
    headers = [(k.lower(), v) for k, v in edge_headers(CHROME_NAVIGATION, uri=uri, method="post").items()]
    facts = facts_from_headers("127.0.0.1", "GET", "/.shieldware/check", 1000.0, headers, peer_ip="127.0.0.1")
    original, _ = original_request(facts, TrustedProxies(["127.0.0.0/8"]))
    assert default_policy().route_table.group_for(original.method, original.path).name == "login"
    assert original.query == "next=1"


@pytest.mark.parametrize("forged", [{"X-Forwarded-Uri": "/static/app.css"}, {"X-Forwarded-Method": "GET"}])
def test_a_client_copy_of_the_other_header_family_is_a_forged_original(forged):
    """nginx writes X-Original-*, and passes a client's own X-Forwarded-Uri on untouched (Traefik and
    Caddy the other way round): a disagreement means the client tried to be judged as another request."""
    headers = [(k.lower(), v) for k, v in {**edge_headers(CHROME_NAVIGATION, uri="/login", method="POST"),
                                          **forged}.items()]
    facts = facts_from_headers("127.0.0.1", "GET", "/.shieldware/check", 1000.0, headers, peer_ip="127.0.0.1")
    original, raw_uri = original_request(facts, TrustedProxies(["127.0.0.0/8"]))
    assert (original.method, original.path, raw_uri) == ("POST", "/login", "/login")
    expected = "forward_auth.conflicting_uri" if "X-Forwarded-Uri" in forged else "forward_auth.conflicting_method"
    assert expected in original.notes
    decision = asyncio.run(ShieldMiddleware(lambda *a: None).engine.decide(original))
    assert decision.verdict == Verdict.BLOCK
    assert decision.reasons[0].code == "req.forged_original"


def test_both_header_families_naming_one_request_is_no_conflict():
    # An edge behind another may send both; percent-encoding and the absolute form may differ.
    headers = [(k.lower(), v) for k, v in {**edge_headers(CHROME_NAVIGATION, uri="/a%20b?x=%41"),
                                          "X-Forwarded-Uri": "https://shop.example/a b?x=A",
                                          "X-Forwarded-Method": "get"}.items()]
    facts = facts_from_headers("127.0.0.1", "GET", "/.shieldware/check", 1000.0, headers, peer_ip="127.0.0.1")
    original, _ = original_request(facts, TrustedProxies(["127.0.0.0/8"]))
    assert not original.notes


@pytest.mark.parametrize(("host", "location"), [
    ("shop.example:8443", "https://shop.example:8443/.shieldware/challenge?return=/p"),
    ("[2001:db8::1]", "https://[2001:db8::1]/.shieldware/challenge?return=/p"),
    ("evil.example/x", "/.shieldware/challenge?return=/p"),
    ("a b", "/.shieldware/challenge?return=/p"),
])
def test_the_challenge_location_is_absolute_only_on_a_plain_host(host, location):
    endpoint = ForwardAuthEndpoint(ShieldMiddleware(lambda *a: None), TrustedProxies(["127.0.0.0/8"]))
    facts = replace(facts_from_headers("203.0.113.1", "GET", "/p", 1000.0, CHROME_NAVIGATION), host=host,
                    scheme="https")
    decision = Decision(ref="test-ref", verdict=Verdict.CHALLENGE, bot_score=60.0, reasons=(),
                        route_group="product", time=1000.0, client_ip="203.0.113.1", method="GET", path="/p")
    status, headers, _ = endpoint.answer(decision, lambda: facts, "/p", nginx_style=False)
    assert status == 401
    assert dict(headers)[b"location"] == location.encode()
    assert dict(headers)[b"x-shield-challenge"] == b"/.shieldware/challenge?return=/p"


def test_nginx_style_turns_throttle_into_403_and_keeps_the_verdict():
    endpoint = ForwardAuthEndpoint(ShieldMiddleware(lambda *a: None), TrustedProxies(["127.0.0.0/8"]))
    facts = facts_from_headers("203.0.113.1", "GET", "/search", 1000.0, CHROME_NAVIGATION)
    decision = Decision(ref="test-ref", verdict=Verdict.THROTTLE, bot_score=30.0, reasons=(),
                        route_group="search", time=1000.0, client_ip="203.0.113.1", method="GET",
                        path="/search", retry_after=12.0)
    status, headers, _ = endpoint.answer(decision, lambda: facts, "/search", nginx_style=False)
    assert status == 429 and (b"retry-after", b"12") in headers
    status, headers, _ = endpoint.answer(decision, lambda: facts, "/search", nginx_style=True)
    assert status == 403
    assert (b"x-shield-verdict", b"throttle") in headers and (b"retry-after", b"12") in headers


# ---- plain calls: the client's scope read straight from the edge's call ---------------------------

TRUSTED = TrustedProxies(["127.0.0.0/8"])
NGINX_CALL = [("host", "shieldware.internal:9000"), *((k.lower(), v) for k, v in CHROME_NAVIGATION
                                                      if k.lower() != "host"),
              ("cookie", "shop_session=s1"), ("x-forwarded-for", "198.51.100.20"),
              ("x-original-uri", "/product/7?colour=red"), ("x-original-method", "GET"),
              ("x-forwarded-host", "shop.example"), ("x-forwarded-proto", "https")]


def with_headers(*changes, drop=()):
    """NGINX_CALL with `drop`ped names taken out and each (name, value) of `changes` put in place of
    the first header of that name (appended when there is none; a name given twice, twice)."""
    headers = [(name, value) for name, value in NGINX_CALL if name not in drop]
    for name, value in changes:
        at = next((n for n, (other, _) in enumerate(headers) if other == name), None)
        if at is None or any(other == name for other, _ in changes[:changes.index((name, value))]):
            headers.append((name, value))
        else:
            headers[at] = (name, value)
    return headers


# (what, the call's headers, peer, whether plain_call() takes it itself). It leaves the full path
# what that path notes, and what it reads differently from the bytes: repeats of the headers read
# (folded into one value) and names not in lower case (matched in any case).
CALLS = [
    ("nginx's call", NGINX_CALL, "127.0.0.1", True),
    ("Traefik's headers", with_headers(("x-forwarded-uri", "/product/7"), ("x-forwarded-method", "POST"),
                                       drop=("x-original-uri", "x-original-method")), "127.0.0.1", True),
    ("both families agreeing", with_headers(("x-forwarded-uri", "https://shop.example/a b?x=A"),
                                            ("x-original-uri", "/a%20b?x=%41")), "127.0.0.1", True),
    ("an absolute-form URI", with_headers(("x-original-uri", "HTTP://shop.example/p?q=1")), "127.0.0.1", True),
    ("a lower-case method", with_headers(("x-original-method", "post")), "127.0.0.1", True),
    ("no method", with_headers(drop=("x-original-method",)), "127.0.0.1", True),
    ("the host from X-Original-Host", with_headers(("x-original-host", "shop.example"),
                                                   drop=("x-forwarded-host",)), "127.0.0.1", True),
    ("the call's own host", with_headers(drop=("x-forwarded-host",)), "127.0.0.1", True),
    ("no host at all", with_headers(drop=("x-forwarded-host", "host")), "127.0.0.1", True),
    ("an odd scheme", with_headers(("x-forwarded-proto", "FTP")), "127.0.0.1", True),
    ("a chain of trusted hops", with_headers(("x-forwarded-for", "198.51.100.20, 127.0.0.5")), "127.0.0.1", True),
    ("no forwarding chain", with_headers(drop=("x-forwarded-for",)), "127.0.0.1", True),
    ("a conflicting method", with_headers(("x-forwarded-method", "POST")), "127.0.0.1", False),
    ("a conflicting URI", with_headers(("x-forwarded-uri", "/static/app.css")), "127.0.0.1", False),
    ("a method nobody has", with_headers(("x-original-method", "BREW")), "127.0.0.1", False),
    ("dot segments", with_headers(("x-original-uri", "/static/../login")), "127.0.0.1", False),
    ("a malformed chain", with_headers(("x-forwarded-for", "198.51.100.20, not-an-address")), "127.0.0.1", False),
    ("a malformed cookie", with_headers(("cookie", "shop_session")), "127.0.0.1", False),
    ("a repeated cookie", with_headers(("cookie", "a=1"), ("cookie", "b=2")), "127.0.0.1", False),
    ("a repeated URI", with_headers(("x-original-uri", "/a"), ("x-original-uri", "/b")), "127.0.0.1", False),
    ("a repeated host", with_headers(("host", "a.example"), ("host", "b.example")), "127.0.0.1", False),
    ("a non-ASCII edge header", with_headers(("x-forwarded-host", "sh\u00f6p.example")), "127.0.0.1", False),
    ("a non-ASCII client header", with_headers(("accept-language", "d\u00e9")), "127.0.0.1", False),
    ("an upper-case name", with_headers(("X-Original-URI", "/login"), drop=("x-original-uri",)), "127.0.0.1",
     False),
    ("no URI", with_headers(drop=("x-original-uri",)), "127.0.0.1", False),
    ("a caller that is no proxy of ours", NGINX_CALL, "203.0.113.9", False),
]


@pytest.mark.parametrize(("headers", "peer", "plain"), [call[1:] for call in CALLS], ids=[call[0] for call in CALLS])
def test_a_plain_call_reads_as_the_full_path_reads_it(headers, peer, plain):
    """plain_call() is the lane's way in for nearly every check: it must make exactly the scope that
    original_request() and original_scope() make, and leave every call they would note (or not
    answer with a decision) to them."""
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/.shieldware/check",
             "query_string": b"style=nginx", "client": (peer, 41000),
             "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]}
    read = plain_call(scope, TRUSTED)
    assert (read is not None) == plain
    if not plain:
        return
    original, raw_uri = original_request(facts_from_scope(scope, 1000.0, TRUSTED), TRUSTED)
    assert not original.notes
    assert read == (original_scope(scope, original, raw_uri), raw_uri)

