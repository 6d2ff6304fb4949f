"""`shieldware proxy --tls-cert/--tls-key`: the proxy serving https itself, on loopback, with
certificates openssl makes for the test; and an https upstream, verified against the CA file the
operator names (SSL_CERT_FILE)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import pytest
import requests

from tests.challenge_support import page_config, solve
from tests.proxy_support import ROOT, chromium_browser, proxy_process, recorded_upstream, roomy_policy
from tests.support import CHROME_NAVIGATION, CHROME_UA, free_port

OPENSSL = shutil.which("openssl")
VERIFY = "/.shieldware/challenge/verify"


@dataclass(frozen=True)
class Certificates:
    cert: Path  # the shop's: shop.example, localhost and 127.0.0.1
    key: Path
    combined: Path  # certificate and key in one file
    foreign_key: Path  # another certificate's key
    protected_key: Path  # the shop's key under a passphrase

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


def _self_signed(where: Path, name: str, *extra: str) -> tuple[Path, Path]:
    cert, key = where / f"{name}.pem", where / f"{name}.key"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert), *extra],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    if OPENSSL is None:
        pytest.skip("openssl not installed; scripts/setup.sh installs Debian openssl")
    where = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(where, "shop", "-addext", "subjectAltName=DNS:shop.example,DNS:localhost,IP:127.0.0.1")
    _, foreign_key = _self_signed(where, "other")
    combined = where / "combined.pem"
    combined.write_text(cert.read_text() + key.read_text())
    protected = where / "protected.key"
    subprocess.run([OPENSSL, "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(protected)],
                   check=True, capture_output=True)
    return Certificates(cert, key, combined, foreign_key, protected)


@pytest.fixture(scope="module")
def shop():
    with recorded_upstream(ws="websockets-sansio") as server:
        yield server


@pytest.fixture(scope="module")
def enforcing(shop, certificates, tmp_path_factory):
    policy = roomy_policy(tmp_path_factory.mktemp("policy") / "policy.yaml")
    with proxy_process("--upstream", shop.url, "--policy", str(policy),
                       "--tls-cert", str(certificates.cert), "--tls-key", str(certificates.key)) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def monitoring(shop, certificates):
    # The key in the certificate's own file, as some certificate tools write them.
    with proxy_process("--upstream", shop.url, "--monitor", "--tls-cert", str(certificates.combined)) as proxy:
        yield proxy


def browser(proxy, certificates: Certificates) -> httpx.Client:
    return httpx.Client(base_url=proxy.url, headers=CHROME_NAVIGATION, verify=certificates.client_context(),
                        timeout=10)


def test_https_is_served_and_the_shop_is_told_it_was_https(monitoring, certificates):
    with browser(monitoring, certificates) as client:
        response = client.get("/echo-headers", headers={"host": "shop.example"})
    assert response.status_code == 200
    seen = dict(response.json()["headers"])
    assert seen["x-forwarded-proto"] == "https"
    assert seen["forwarded"] == "for=127.0.0.1;proto=https;host=shop.example"
    with pytest.raises(requests.ConnectionError):  # the port speaks TLS only
        requests.get(f"http://127.0.0.1:{monitoring.port}/echo-headers", timeout=10)


def test_a_library_behind_chromes_headers_is_told_by_its_clienthello(monitoring, certificates):
    """httpx sends Chrome's headers, but its handshake is Python's OpenSSL: the proxy reads that
    from the ClientHello, and a copy of the header the client sent itself is not believed."""
    with browser(monitoring, certificates) as client:
        forged = client.get("/echo-headers", headers={"host": "shop.example",
                                                       "x-shieldware-tls": "swtls/blink grease,alps,cert-brotli,h2"})
        # again and again on one connection: the later ones are answered from the fast lane's plan
        again = [client.get("/echo-headers", headers={"host": "shop.example"}) for _ in range(3)]
    for response in (forged, *again):
        told = [value for name, value in response.json()["headers"] if name == "x-shieldware-tls"]
        assert len(told) == 1 and told[0].startswith("swtls/library ")
        seen = dict(response.json()["headers"])
        assert seen["x-shield-verdict"] == "challenge"  # monitor mode: let through, the verdict still told


def test_chromium_over_https_is_a_blink_stack_as_its_user_agent_says(monitoring, certificates):
    with chromium_browser() as chromium:
        context = chromium.new_context(user_agent=CHROME_UA, ignore_https_errors=True)
        try:
            page = context.new_page()
            page.goto(f"https://127.0.0.1:{monitoring.port}/echo-headers")
            seen = dict(json.loads(page.inner_text("body"))["headers"])
        finally:
            context.close()
    assert seen["x-shieldware-tls"].startswith("swtls/blink grease,alps")
    assert seen["x-shield-verdict"] == "allow"


def test_a_requests_scraper_is_blocked_over_https_and_never_reaches_the_shop(enforcing, shop, certificates):
    hits = shop.recorder.hits
    response = requests.get(enforcing.url + "/product/3", timeout=10, verify=str(certificates.cert))
    assert response.status_code == 403
    assert shop.recorder.hits == hits


def test_the_challenge_is_passed_over_https_with_secure_cookies(enforcing, shop, certificates):
    """Cookies set over https are marked Secure: a clearance never travels over plain http, where
    anyone on the path could copy it."""
    with browser(enforcing, certificates) as client:
        challenged = client.get("/challenge-me/4")
        assert challenged.status_code == 403 and challenged.headers["x-shield-verdict"] == "challenge"
        assert all("; Secure" in cookie for cookie in challenged.headers.get_list("set-cookie"))
        config = page_config(challenged.text)
        answer = client.post(VERIFY, headers={"accept": "application/json"}, json={
            "challenge": config["token"], "counter": solve(config["token"], config["difficulty"]),
            "url": config["url"], "solve_ms": 250, "telemetry": {}})
        assert answer.status_code == 200, answer.text
        clearance = [cookie for cookie in answer.headers.get_list("set-cookie")
                     if cookie.startswith("shield_clearance=")]
        assert len(clearance) == 1 and "; Secure" in clearance[0]
        hits = shop.recorder.hits
        cleared = client.get("/challenge-me/4")
    assert cleared.status_code == 200 and cleared.text == "page /challenge-me/4"
    assert shop.recorder.hits == hits + 1


def test_chromium_passes_the_challenge_over_https(enforcing, certificates):
    with chromium_browser("--host-resolver-rules=MAP shop.example 127.0.0.1") as chromium:
        context = chromium.new_context(user_agent=CHROME_UA, ignore_https_errors=True)
        try:
            page = context.new_page()
            target = f"https://shop.example:{enforcing.port}/challenge-me/7?x=1"
            first = page.goto(target)
            assert first is not None and first.status == 403
            page.wait_for_selector("text=page /challenge-me/7", timeout=30_000)
            assert page.url == target
            clearance = [cookie for cookie in context.cookies() if cookie["name"] == "shield_clearance"]
            assert len(clearance) == 1 and clearance[0]["secure"]
        finally:
            context.close()


async def test_websocket_echo_over_wss(monitoring, certificates):
    async with aiohttp.ClientSession() as session, session.ws_connect(
            f"wss://127.0.0.1:{monitoring.port}/ws", ssl=certificates.client_context()) as socket:
        await socket.send_str("hello")
        assert (await socket.receive(timeout=10)).data == "echo:hello"


def test_an_https_upstream_is_verified_against_the_cas_the_proxy_is_given(certificates):
    tls = {"ssl_certfile": str(certificates.cert), "ssl_keyfile": str(certificates.key)}
    with recorded_upstream(**tls) as upstream:
        address = f"https://127.0.0.1:{upstream.port}"
        trust = {"SSL_CERT_FILE": str(certificates.cert)}
        with proxy_process("--upstream", address, "--monitor", env=trust) as trusting:
            response = requests.get(trusting.url + "/echo-headers", timeout=10)
        assert response.status_code == 200
        assert dict(response.json()["headers"])["x-forwarded-proto"] == "http"  # the client's own scheme
        hits = upstream.recorder.hits
        with proxy_process("--upstream", address, "--monitor", env={"SSL_CERT_FILE": ""}) as doubting:
            refused = requests.get(doubting.url + "/echo-headers", timeout=10)
            printed = doubting.stop()
        assert refused.status_code == 502 and "could not be reached" in refused.text
        assert "CERTIFICATE_VERIFY_FAILED" in printed
        assert upstream.recorder.hits == hits


UNUSABLE = {
    "missing file": (["--tls-cert", "{where}/nope.pem"], "nope.pem: no such file"),
    "key without certificate": (["--tls-key", "{key}"], "--tls-key needs --tls-cert"),
    "certificate without key": (["--tls-cert", "{cert}"], "holds no PEM private key; give the key with --tls-key"),
    "key as certificate": (["--tls-cert", "{key}", "--tls-key", "{key}"], "holds no PEM certificate"),
    "another certificate's key": (["--tls-cert", "{cert}", "--tls-key", "{foreign_key}"],
                                  "the private key does not belong to the certificate"),
    "key under a passphrase": (["--tls-cert", "{cert}", "--tls-key", "{protected_key}"],
                               "protected by a passphrase"),
}


@pytest.mark.parametrize("case", UNUSABLE)
def test_unusable_tls_files_are_refused_before_anything_is_served(certificates, case):
    template, message = UNUSABLE[case]
    names = {"where": certificates.cert.parent, "cert": certificates.cert, "key": certificates.key,
             "foreign_key": certificates.foreign_key, "protected_key": certificates.protected_key}
    port = free_port()
    done = subprocess.run([sys.executable, "-m", "shieldware.cli", "proxy", "--upstream", "http://127.0.0.1:9",
                           "--listen", f"127.0.0.1:{port}", *(part.format(**names) for part in template)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def _tls_exchange(port: int, context: ssl.SSLContext, request: bytes) -> bytes:
    """A whole https request over a raw socket, its ClientHello sent a byte per TCP segment."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        trickle = True
        while True:
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            flight = outgoing.read()
            for piece in ([flight[i:i + 1] for i in range(len(flight))] if trickle else [flight]):
                raw.sendall(piece)
            trickle = True
            if done:
                break
            incoming.write(raw.recv(65536))
        tls.write(request)
        raw.sendall(outgoing.read())
        response = b""
        while data := raw.recv(65536):
            incoming.write(data)
            try:
                while chunk := tls.read(65536):
                    response += chunk
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLZeroReturnError:
                pass
            break  # the server's close_notify (it closes after the response): the response is whole
    return response


def test_a_clienthello_trickled_a_byte_at_a_time_is_still_read(monitoring, certificates):
    response = _tls_exchange(monitoring.port, certificates.client_context(),
                             b"GET /echo-headers HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    told = [value for name, value in json.loads(body)["headers"] if name == "x-shieldware-tls"]
    assert len(told) == 1 and told[0].startswith("swtls/library ")
