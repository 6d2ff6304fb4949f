"""Forward-auth: the check endpoint on its own, and a real nginx using it through auth_request."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import requests

from shieldware.decision import Decision, Verdict
from shieldware.facts import TrustedProxies, facts_from_headers
from shieldware.middleware import ShieldMiddleware
from shieldware.policy import default_policy
from shieldware.proxy.forward_auth import ForwardAuthEndpoint, original_request
from tests.proxy_support import UpstreamRecorder, build_upstream, proxy_process
from tests.support import CHROME_NAVIGATION, free_port, live_server

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


@pytest.fixture(scope="module")
def upstream():
    recorder = UpstreamRecorder()
    with live_server(build_upstream(recorder)) as server:
        server.recorder = recorder
        yield server


@pytest.fixture(scope="module")
def auth_server():
    with proxy_process("--auth-only") as proxy:  # no --trusted-proxy: loopback edges are trusted
        yield proxy


def check(server, headers, path="/.shieldware/check"):
    return requests.get(server.url + path, headers=headers, allow_redirects=False, timeout=10)


def raw_get(base: str, path: str, headers: list[tuple[str, str]]) -> tuple[int, str]:
    """GET with exactly these headers in exactly this order (http.client adds only Host)."""
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("GET", path, skip_accept_encoding=True)
    for name, value in headers:
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status, response.getheader("location") or ""


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
    assert response.getheader("location") == target
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


def test_nginx_style_turns_throttle_into_403_and_keeps_the_verdict():
    endpoint = ForwardAuthEndpoint(ShieldMiddleware(lambda *a: None), TrustedProxies(["127.0.0.0/8"]))
    facts = facts_from_headers("203.0.113.1", "GET", "/search", 1000.0, CHROME_NAVIGATION)
    decision = Decision(ref="test-ref", verdict=Verdict.THROTTLE, bot_score=30.0, reasons=(),
                        route_group="search", time=1000.0, client_ip="203.0.113.1", method="GET",
                        path="/search", retry_after=12.0)
    status, headers, _ = endpoint.answer(decision, facts, "/search", nginx_style=False)
    assert status == 429 and (b"retry-after", b"12") in headers
    status, headers, _ = endpoint.answer(decision, facts, "/search", nginx_style=True)
    assert status == 403
    assert (b"x-shield-verdict", b"throttle") in headers and (b"retry-after", b"12") in headers


# ---- a real nginx with auth_request --------------------------------------------------------------

NGINX_CONF = """
worker_processes 1;
daemon off;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 128; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{site}
}}
"""


def nginx_site(listen_port: int, shieldware_port: int, shop_port: int) -> str:
    """The server block from docs/proxy.md, with this test's ports filled in."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "proxy.md").read_text(encoding="utf-8")
    start = text.index("# --- nginx site: begin ---")
    end = text.index("# --- nginx site: end ---")
    return (text[start:end].replace("127.0.0.1:8080", f"127.0.0.1:{shieldware_port}")
            .replace("127.0.0.1:8000", f"127.0.0.1:{shop_port}")
            .replace("listen 80;", f"listen 127.0.0.1:{listen_port};"))


@contextlib.contextmanager
def nginx_server(tmp_path: Path, site: str, port: int):
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp_path, site=site), encoding="utf-8")
    command = [NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {process.stderr.read().decode()}")
            with contextlib.suppress(requests.ConnectionError):
                requests.get(f"http://127.0.0.1:{port}/.shieldware/health", timeout=1)
                break
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start within 15 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.skipif(NGINX is None, reason="nginx binary not installed (Debian package nginx-light)")
def test_real_nginx_auth_request_blocks_scraper_and_passes_browser(upstream, tmp_path):
    with proxy_process("--auth-only") as shield:
        port = free_port()
        site = nginx_site(port, shield.port, upstream.port)
        with nginx_server(tmp_path, site, port) as edge:
            hits = upstream.recorder.hits
            scraped = requests.get(edge + "/product/3", timeout=10)
            assert scraped.status_code == 403
            assert scraped.headers["x-shield-ref"] and scraped.headers["x-shield-ref"] in scraped.text
            assert upstream.recorder.hits == hits, "the scraper reached the shop"
            with httpx.Client(headers=CHROME_NAVIGATION) as browser:
                page = browser.get(edge + "/echo-headers?from=nginx")
            assert page.status_code == 200
            assert upstream.recorder.hits == hits + 1
            seen = dict(page.json()["headers"])
            assert seen["x-shield-verdict"] == "allow"
            assert seen["x-shield-ref"]
            # Chrome's headers without Accept-Language: suspicious, so challenged (order kept by http.client).
            status, location = raw_get(edge, "/product/4?x=1",
                                       [(k, v) for k, v in CHROME_NAVIGATION if k != "accept-language"])
            assert status == 302
            assert location.endswith("/.shieldware/challenge?return=/product/4%3Fx%3D1")
            assert upstream.recorder.hits == hits + 1
