"""Clients that run no JavaScript never get challenged content; people with JS off have a slow path."""

from __future__ import annotations

import shutil
import subprocess

import aiohttp
import httpx
import pytest
from curl_cffi import requests as curl_requests

from shieldware.actions.challenge import install_challenges
from shieldware.demo import build_demo_app
from tests.challenge_support import challenge_policy, keyring, meta_refresh, pixel_url
from tests.support import CHROME_NAVIGATION, SimulatedClock, live_server

CONTENT = "Add to cart"


@pytest.fixture(scope="module")
def clock():
    return SimulatedClock()


@pytest.fixture(scope="module")
def shop(clock):
    app = build_demo_app(policy=challenge_policy(difficulty=8), clock=clock)
    install_challenges(app, keyring=keyring("k1"))
    with live_server(app) as server:
        yield server


def test_curl_never_gets_the_content(shop):
    if shutil.which("curl") is None:
        pytest.skip("curl binary not installed (scripts/setup.sh installs it)")
    done = subprocess.run(["curl", "-s", "-L", "-w", "\n%{http_code}", f"{shop.url}/product/7"],
                          capture_output=True, text=True, timeout=10)
    body, _, status = done.stdout.rpartition("\n")
    assert status == "403"
    assert CONTENT not in body and "Checking your browser" in body


def test_httpx_never_gets_the_content(shop):
    for headers in ({}, dict(CHROME_NAVIGATION)):
        response = httpx.get(f"{shop.url}/product/7", headers=headers, follow_redirects=True)
        assert response.status_code == 403
        assert CONTENT not in response.text


async def test_aiohttp_never_gets_the_content(shop):
    async with aiohttp.ClientSession() as session, session.get(f"{shop.url}/product/7") as response:
        body = await response.text()
    assert response.status == 403
    assert CONTENT not in body


def test_curl_cffi_impersonating_chrome_never_gets_the_content(shop):
    response = curl_requests.get(f"{shop.url}/product/7", impersonate="chrome", allow_redirects=True,
                                 timeout=10)
    assert response.status_code == 403
    assert CONTENT not in response.text
    assert response.headers["x-shield-verdict"] == "challenge"


def test_tools_over_the_no_js_threshold_get_no_meta_refresh(shop):
    response = httpx.get(f"{shop.url}/product/7")  # python-httpx UA: far over nojs_max_score
    assert meta_refresh(response.text) is None
    assert "needs JavaScript" in response.text


def test_people_with_javascript_off_pass_after_the_wait_and_the_page_load(shop, clock):
    """The meta-refresh path: too early and without loading the page's image, it is refused."""
    with httpx.Client(base_url=shop.url, headers=CHROME_NAVIGATION) as browser:
        page = browser.get("/product/11")
        assert page.status_code == 403
        wait, target = meta_refresh(page.text)
        assert wait >= 5 and target.startswith("/.shieldware/challenge/nojs?t=")
        early = browser.get(target)
        assert early.status_code == 403 and early.headers["x-shield-reason"] == "challenge.too_early"
        clock.advance(wait)
        no_image = browser.get(target)
        assert no_image.headers["x-shield-reason"] == "challenge.nojs_incomplete"
        assert browser.get(pixel_url(page.text)).headers["content-type"] == "image/gif"
        passed = browser.get(target)
        assert passed.status_code == 303 and passed.headers["location"] == "/product/11"
        assert "Max-Age=900" in passed.headers["set-cookie"]
        assert CONTENT in browser.get("/product/11").text
        replay = browser.get(target)
        assert replay.headers["x-shield-reason"] == "challenge.replayed"


def test_no_js_path_can_be_closed_by_policy(clock):
    app = build_demo_app(policy=challenge_policy(nojs_max_score=None), clock=clock)
    with live_server(app) as server:
        response = curl_requests.get(f"{server.url}/product/7", impersonate="chrome", timeout=10)
    assert response.status_code == 403
    assert meta_refresh(response.text) is None and CONTENT not in response.text
