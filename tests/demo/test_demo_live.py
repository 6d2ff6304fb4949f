"""The demo shop behind shieldware on a real uvicorn server: tools are blocked, browsers pass."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import requests

from shieldware.demo import build_demo_app
from shieldware.policy import default_policy
from tests.support import CHROME_NAVIGATION, CHROME_SUBRESOURCE, live_server


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "decisions.jsonl"
    app = build_demo_app(policy=default_policy(decision_log={"path": str(log)}))
    with live_server(app) as server:
        server.decision_log = log
        yield server


def test_requests_client_gets_block_page_with_reference(shop):
    response = requests.get(f"{shop.url}/product/1", timeout=5)
    assert response.status_code == 403
    ref = response.headers["x-shield-ref"]
    assert ref in response.text
    assert "contact the shop" in response.text


def test_curl_is_blocked_and_explain_finds_the_reasons(shop):
    curl = subprocess.run(["curl", "-s", "-i", f"{shop.url}/product/2"], capture_output=True, text=True, timeout=10)
    if curl.returncode == 127:
        pytest.skip("curl binary not installed")
    assert curl.stdout.startswith("HTTP/1.1 403")
    ref = next(line.split(":", 1)[1].strip() for line in curl.stdout.splitlines()
               if line.lower().startswith("x-shield-ref:"))
    explained = subprocess.run([sys.executable, "-m", "shieldware.cli", "explain", ref, "--log",
                                str(shop.decision_log)], capture_output=True, text=True, timeout=30)
    assert explained.returncode == 0, explained.stderr
    assert ref in explained.stdout
    assert "ua.tool" in explained.stdout
    assert "curl" in explained.stdout


def test_consistent_chrome_headers_pass(shop):
    with httpx.Client(headers=CHROME_NAVIGATION) as client:
        response = client.get(f"{shop.url}/product/3")
    assert response.status_code == 200
    assert "Add to cart" in response.text


def test_static_assets_never_blocked_by_the_header_check(shop):
    # A browser UA with sub-resource (not navigation) headers, and one with almost no headers.
    with httpx.Client(headers=CHROME_SUBRESOURCE) as client:
        assert client.get(f"{shop.url}/static/app.css").status_code == 200
    sparse = {"user-agent": CHROME_NAVIGATION[5][1]}
    response = httpx.get(f"{shop.url}/static/img/4.svg", headers=sparse)
    assert response.status_code == 200


def test_json_clients_get_json_refusals(shop):
    response = requests.get(f"{shop.url}/api/product/1", headers={"accept": "application/json"}, timeout=5)
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "block" and body["ref"] == response.headers["x-shield-ref"]
    assert "ua.tool" in body["reasons"]
