"""RequestFacts from ASGI scopes: client IP trust, header order, defensive cookies."""

from __future__ import annotations

import pytest

from shieldware.facts import (
    RequestFacts,
    TrustedProxies,
    facts_from_scope,
    normalise_ip,
    parse_cookies,
    remove_dot_segments,
    route_path,
)


def scope(headers, client=("198.51.100.9", 5555), path="/"):
    return {
        "type": "http", "method": "GET", "path": path, "query_string": b"a=1",
        "headers": [(k.encode("latin-1"), v.encode("latin-1")) if isinstance(k, str) else (k, v) for k, v in headers],
        "client": client, "scheme": "http", "http_version": "1.1",
    }


def test_headers_keep_arrival_order_and_lowercase_names():
    facts = facts_from_scope(scope([("Host", "shop"), ("User-Agent", "x"), ("Accept", "*/*")]), now=5.0)
    assert facts.header_names == ("host", "user-agent", "accept")
    assert facts.user_agent == "x"
    assert facts.now == 5.0
    assert facts.url == "/?a=1"


def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored():
    trusted = TrustedProxies(["10.0.0.0/8"])
    facts = facts_from_scope(scope([("x-forwarded-for", "1.2.3.4")]), 0.0, trusted)
    assert facts.client_ip == "198.51.100.9"


def test_forwarded_for_from_trusted_proxy_is_honoured():
    trusted = TrustedProxies(["10.0.0.0/8"])
    facts = facts_from_scope(scope([("x-forwarded-for", "1.2.3.4")], client=("10.1.2.3", 1)), 0.0, trusted)
    assert facts.client_ip == "1.2.3.4"


def test_chain_stops_at_first_untrusted_hop():
    # The client wrote "6.6.6.6" itself; our proxy appended the real client 1.2.3.4 and an inner proxy.
    trusted = TrustedProxies(["10.0.0.0/8"])
    headers = [("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.9.9.9")]
    facts = facts_from_scope(scope(headers, client=("10.1.2.3", 1)), 0.0, trusted)
    assert facts.client_ip == "1.2.3.4"


def test_rfc7239_forwarded_and_x_real_ip_when_the_proxies_write_them():
    forwarded = TrustedProxies(["10.0.0.0/8"], header="Forwarded")
    fwd = facts_from_scope(scope([("forwarded", 'for="[2001:db8::7]:443";proto=https')], client=("10.0.0.1", 1)),
                           0.0, forwarded)
    assert fwd.client_ip == "2001:db8::7"
    real_ip = TrustedProxies(["10.0.0.0/8"], header="x-real-ip")
    real = facts_from_scope(scope([("x-real-ip", "203.0.113.5")], client=("10.0.0.1", 1)), 0.0, real_ip)
    assert real.client_ip == "203.0.113.5"


@pytest.mark.parametrize("header", ["x-forwarded-for", "forwarded", "x-real-ip"])
def test_only_the_header_the_proxies_write_names_the_client(header):
    # nginx appends the client to X-Forwarded-For and passes the client's own Forwarded and
    # X-Real-IP on untouched: had either been believed, any client could name its own address
    # (a verified crawler's, or a new one per request past every per-address limit).
    written = {"x-forwarded-for": ("x-forwarded-for", "66.249.66.1, 198.51.100.9"),
               "forwarded": ("forwarded", "for=66.249.66.1, for=198.51.100.9"),
               "x-real-ip": ("x-real-ip", "198.51.100.9")}
    forged = {"x-forwarded-for": ("x-forwarded-for", "66.249.66.2"), "forwarded": ("forwarded", "for=66.249.66.3"),
              "x-real-ip": ("x-real-ip", "66.249.66.4")}
    headers = [written[header]] + [pair for name, pair in forged.items() if name != header]
    trusted = TrustedProxies(["10.0.0.0/8"], header=header)
    for order in (headers, headers[::-1]):
        assert facts_from_scope(scope(order, client=("10.0.0.1", 1)), 0.0, trusted).client_ip == "198.51.100.9"
    # The proxy itself, with nothing in its header, is the client (its own health checks).
    only_forged = [pair for name, pair in forged.items() if name != header]
    assert facts_from_scope(scope(only_forged, client=("10.0.0.1", 1)), 0.0, trusted).client_ip == "10.0.0.1"


def test_a_client_ip_header_that_is_not_one_of_the_three_is_refused():
    with pytest.raises(ValueError, match="x-forwarded-for, forwarded, x-real-ip"):
        TrustedProxies(["10.0.0.0/8"], header="cf-connecting-ip")


def test_broken_forwarding_headers_are_noted_not_raised():
    forwarded = TrustedProxies(["10.0.0.0/8"], header="forwarded")
    facts = facts_from_scope(scope([("forwarded", "for")], client=("10.0.0.1", 1)), 0.0, forwarded)
    assert facts.client_ip == "10.0.0.1"
    assert "forwarded.malformed" in facts.notes
    trusted = TrustedProxies(["10.0.0.0/8"])
    facts = facts_from_scope(scope([("forwarded", "for"), ("x-forwarded-for", "not-an-ip")], client=("10.0.0.1", 1)),
                             0.0, trusted)
    assert facts.client_ip == "10.0.0.1"
    assert facts.notes == ("forwarded.bad_address",)  # the client's own Forwarded is not read at all


def test_ipv4_mapped_ipv6_is_folded():
    assert normalise_ip("::ffff:192.0.2.1") == "192.0.2.1"
    assert normalise_ip("[2001:db8::1]:8443") == "2001:db8::1"
    assert normalise_ip("192.0.2.1:80") == "192.0.2.1"
    assert normalise_ip("garbage") is None


def test_duplicate_headers_combine_and_cookie_headers_merge():
    facts = facts_from_scope(scope([("cookie", "a=1"), ("accept", "x"), ("cookie", "b=2"), ("accept", "y")]), 0.0)
    assert facts.cookies == {"a": "1", "b": "2"}
    assert facts.header_map["accept"] == "x, y"
    assert facts.header_names == ("cookie", "accept", "cookie", "accept")


def test_cookie_parsing_is_lenient_and_notes_oddities():
    cookies, notes = parse_cookies('a=1; junk; =x; b="quoted"; a=2')
    assert cookies == {"a": "1", "b": "quoted"}
    assert "cookie.malformed" in notes


def test_huge_cookie_header_is_bounded_and_noted():
    raw = "; ".join(f"c{i}={'v' * 20}" for i in range(5000))  # ~130 KB
    facts = facts_from_scope(scope([("cookie", raw)]), 0.0)
    assert len(facts.cookies) == 64
    assert "cookie.oversized" in facts.notes and "cookie.too_many" in facts.notes


def test_invalid_utf8_bytes_are_kept_and_noted():
    facts = facts_from_scope(scope([(b"user-agent", b"Mozilla\xff\xfe"), (b"x", b"ok")]), 0.0)
    assert facts.user_agent == "Mozilla\xff\xfe"
    assert "header.non_ascii" in facts.notes


def test_missing_client_does_not_raise():
    facts = facts_from_scope({"type": "http", "headers": []}, 0.0)
    assert facts.client_ip == "0.0.0.0" and facts.path == "/" and facts.method == "GET"


@pytest.mark.parametrize("path, resolved", [
    ("/login", "/login"),
    ("/static/../login", "/login"),
    ("/a/./b/../c", "/a/c"),
    ("/../../etc/passwd", "/etc/passwd"),  # never above the root
    ("/a/b/..", "/a/"),
    ("/a/.", "/a/"),
    ("/a/%2e%2E/b", "/b"),  # as URL parsers read an encoded dot
    ("/a/.%2e/b", "/b"),
    ("/.well-known/x", "/.well-known/x"),  # a name that starts with a dot is no dot segment
    ("/a/...", "/a/..."),
    ("*", "*"),
])
def test_dot_segments_are_resolved(path, resolved):
    assert remove_dot_segments(path) == resolved


def test_route_paths_merge_slashes_and_note_dot_segments():
    notes = []
    assert route_path("/product/7", notes) == "/product/7" and notes == []
    assert route_path("//login", notes) == "/login" and notes == []  # browsers do send these as linked
    assert route_path("/x//..//login", notes) == "/login" and notes == ["path.dot_segments"]
    facts = facts_from_scope({"type": "http", "path": "/static/../login", "headers": []}, 0.0)
    assert facts.path == "/login" and "path.dot_segments" in facts.notes


@pytest.mark.parametrize("path, routed, crafted", [
    ("/login;jsessionid=A1B2", "/login", False),  # Java servlet containers drop path parameters
    ("/static/..;/login", "/login", True),  # ... so "..;" climbs like ".."
    ("/account;x/login;y", "/account/login", False),
    ("/static\\..\\login", "/login", True),  # IIS and ASP.NET read a backslash as a slash
    ("\\login", "/login", False),
    ("/product/42;v=2", "/product/42", False),
])
def test_route_paths_read_path_parameters_and_backslashes_as_loose_servers_do(path, routed, crafted):
    notes = []
    assert route_path(path, notes) == routed
    assert notes == (["path.dot_segments"] if crafted else [])


@pytest.mark.parametrize("scheme, headers, expected", [
    ("https", {}, True),
    ("wss", {}, True),
    ("http", {"x-forwarded-proto": "https"}, True),  # TLS ended at a load balancer in front
    ("http", {"x-forwarded-proto": "HTTPS"}, True),
    ("http", {"forwarded": "for=198.51.100.8;Proto=https"}, True),
    ("http", {}, False),
    ("http", {"x-forwarded-proto": "http"}, False),
    ("ws", {"forwarded": "for=198.51.100.8;proto=http"}, False),
])
def test_over_https_takes_the_scheme_or_a_proxy_that_ended_tls(scheme, headers, expected):
    facts = RequestFacts(client_ip="198.51.100.8", method="GET", path="/", now=0.0, scheme=scheme,
                         header_map=headers)
    assert facts.over_https is expected
