"""nginx terminating TLS in front of forward auth: the README's nginx site, on https, sends the
check the cipher suites each client offered (`X-TLS-Ciphers: $ssl_ciphers`), and
`shieldware proxy --auth-only --tls-fingerprint-header x-tls-ciphers` holds them against the
browser the User-Agent claims. Real nginx, real Chromium, an HTTP library with Chrome's headers;
certificates made by openssl for the test."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.proxy.test_forward_auth_edges import MISSING, NGINX, NGINX_CONF, decision_of, snippet, with_ports
from tests.proxy.test_proxy_tls import OPENSSL, _self_signed
from tests.proxy_support import chromium_browser, proxy_process, roomy_policy
from tests.signals.test_headers import FIREFOX_UA
from tests.support import CHROME_NAVIGATION, CHROME_UA, free_port


@pytest.fixture(scope="module")
def shield(tmp_path_factory):
    where = tmp_path_factory.mktemp("shield")
    decisions = where / "decisions.jsonl"
    policy_path = roomy_policy(where / "policy.yaml")
    policy = yaml.safe_load(policy_path.read_text())
    policy["decision_log"] = {"all": True}  # allowed decisions too: their reasons are what is checked
    policy_path.write_text(yaml.safe_dump(policy))
    with proxy_process("--auth-only", "--monitor", "--decision-log", str(decisions), "--policy", str(policy_path),
                       "--tls-fingerprint-header", "x-tls-ciphers") as server:
        server.decisions = decisions
        yield server


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


@contextlib.contextmanager
def nginx_over_https(tmp: Path, shield: int, shop: int) -> Iterator[tuple[str, Path]]:
    """The README's nginx site with `listen ... ssl` and the test's certificate; its https URL."""
    cert, key = _self_signed(tmp, "shop", "-addext", "subjectAltName=DNS:shop.example,IP:127.0.0.1")
    port = free_port()
    site = with_ports(snippet("nginx site"), shield, shop).replace(
        "listen 80;", f"listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};")
    site = site.replace("/var/log/nginx/", f"{tmp}/")
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, site=site), encoding="utf-8")
    process = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/.shieldware/health", verify=trusting(cert), timeout=1,
                             headers={"host": "shop.example"}).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not serve https: {(tmp / 'error.log').read_text(errors='replace')}")
            time.sleep(0.05)
        yield url, cert
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def edge(shop, shield, tmp_path_factory):
    if MISSING["nginx"]:
        pytest.skip(MISSING["nginx"])
    if OPENSSL is None:
        pytest.skip("openssl not installed; scripts/setup.sh installs Debian openssl")
    with nginx_over_https(tmp_path_factory.mktemp("nginx"), shield.port, shop.port) as running:
        yield running


def tls_reasons(shield, page_json: str) -> list[dict]:
    ref = dict(json.loads(page_json)["headers"])["x-shield-ref"]
    return [r for r in decision_of(shield, ref)["reasons"] if r["code"] == "tls.mismatch"]


def test_a_library_with_chromes_headers_is_told_by_the_ciphers_it_offered(edge, shield):
    url, cert = edge
    with httpx.Client(headers=CHROME_NAVIGATION, verify=trusting(cert), timeout=10) as client:
        page = client.get(url + "/echo-headers", headers={"host": "shop.example"})
        # a copy of the header the client sends itself is replaced by nginx's own
        forged = client.get(url + "/echo-headers", headers={"host": "shop.example",
                                                             "x-tls-ciphers": "0x0A0A:TLS_AES_128_GCM_SHA256"})
    for response in (page, forged):
        assert response.status_code == 200  # monitor mode: let through, the reasons logged
        mismatch = tls_reasons(shield, response.text)
        assert [r["detail"]["tls_client"] for r in mismatch] == ["no-grease"]


def chromium_page(edge, user_agent: str) -> str:
    url, _ = edge
    with chromium_browser("--host-resolver-rules=MAP shop.example 127.0.0.1") as chromium:
        context = chromium.new_context(user_agent=user_agent, ignore_https_errors=True)
        try:
            page = context.new_page()
            page.goto(url.replace("127.0.0.1", "shop.example") + "/echo-headers")
            return page.inner_text("body")
        finally:
            context.close()


def test_chromium_offers_grease_as_its_user_agent_says(edge, shield):
    assert tls_reasons(shield, chromium_page(edge, CHROME_UA)) == []


def test_a_chromium_claiming_to_be_firefox_is_told_by_its_grease(edge, shield):
    mismatch = tls_reasons(shield, chromium_page(edge, FIREFOX_UA))
    assert [r["detail"]["tls_client"] for r in mismatch] == ["grease"]
