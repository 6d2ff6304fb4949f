"""Real headless Chromium against the demo shop: its own headers pass every header check."""

from __future__ import annotations

import json
import shutil

import pytest

from shieldware.demo import build_demo_app
from shieldware.policy import default_policy
from tests.support import CHROMIUM, CHROMIUM_ARGS, live_server

ARGS = CHROMIUM_ARGS

pytestmark = pytest.mark.chromium


@pytest.fixture(scope="module")
def browser():
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def _user_agent(major: str) -> str:
    return (
        f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 "
        "Safari/537.36"
    )


def _visit(browser, user_agent, tmp_path):
    log = tmp_path / "decisions.jsonl"
    policy = default_policy(decision_log={"path": str(log), "all": True})
    with live_server(build_demo_app(policy=policy)) as server:
        context = browser.new_context(user_agent=user_agent)
        page = context.new_page()
        response = page.goto(f"{server.url}/product/4")
        page.wait_for_load_state("load")
        page.evaluate("fetch('/api/product/4').then(r => r.text())")
        page.wait_for_timeout(300)
        context.close()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return response.status, records


def test_chromium_with_its_own_version_passes_every_header_check(browser, tmp_path):
    major = browser.version.split(".")[0]
    status, records = _visit(browser, _user_agent(major), tmp_path)
    assert status == 200
    paths = {r["path"] for r in records}
    assert {"/product/4", "/static/app.css", "/api/product/4"} <= paths
    for record in records:
        codes = [reason["code"] for reason in record["reasons"]]
        assert not [c for c in codes if c.startswith("hdr.")], (record["path"], codes)


def test_a_ua_claiming_another_chrome_version_than_the_client_hints_is_named(browser, tmp_path):
    major = int(browser.version.split(".")[0])
    _, records = _visit(browser, _user_agent(str(major - 20)), tmp_path)
    product = next(r for r in records if r["path"] == "/product/4")
    mismatch = next(r for r in product["reasons"] if r["code"] == "hdr.client_hint_mismatch")
    assert any(f"Chromium {major}" in problem for problem in mismatch["detail"]["problems"])


# Every kind of request a shop page makes, each tagged by its path so the log says which it was.
REQUEST_KINDS = """
fetch('/kind/fetch-head', {method: 'HEAD'});
navigator.sendBeacon('/kind/beacon', 'x');
new Image().src = '/kind/image';
const frame = document.createElement('iframe'); frame.src = '/kind/iframe'; document.body.append(frame);
try { new Worker('/kind/worker'); new SharedWorker('/kind/shared-worker'); } catch (e) {}
navigator.serviceWorker.register('/kind/service-worker').catch(() => {});
const rules = document.createElement('script'); rules.type = 'speculationrules';
rules.textContent = JSON.stringify({prefetch: [{source: 'list', urls: ['/kind/prefetch']}],
                                    prerender: [{source: 'list', urls: ['/kind/prerender']}]});
document.head.append(rules);
try { new WebSocket('ws://' + location.host + '/kind/websocket'); } catch (e) {}
const link = document.createElement('a'); link.id = 'go'; link.href = '/kind/link'; link.textContent = 'go';
document.body.append(link);
"""


def test_chromium_requests_of_every_kind_pass_the_fetch_metadata_checks(browser, tmp_path):
    """Frames, beacons, workers and WebSocket handshakes (no client hints, an order of their own),
    speculative prefetches and prerenders, HEAD fetches, clicked links and posted forms: Sec-Fetch-*
    as a real browser sends them never reads as forged, and no other header check fires on any."""
    log = tmp_path / "decisions.jsonl"
    policy = default_policy(decision_log={"path": str(log), "all": True})
    major = browser.version.split(".")[0]
    with live_server(build_demo_app(policy=policy)) as server:
        context = browser.new_context(user_agent=_user_agent(major))
        page = context.new_page()
        page.goto(f"{server.url}/product/4")
        page.evaluate(REQUEST_KINDS)
        page.wait_for_timeout(500)
        with page.expect_navigation():
            page.click("#go")
        page.set_content('<form method="post" action="/kind/form"><input name="q" value="x">'
                         '<button id="send">send</button></form>')
        with page.expect_navigation():
            page.click("#send")
        context.close()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    seen = {(r["method"], r["path"]) for r in records}
    wanted = {("HEAD", "/kind/fetch-head"), ("POST", "/kind/beacon"), ("GET", "/kind/image"),
              ("GET", "/kind/iframe"), ("GET", "/kind/worker"), ("GET", "/kind/shared-worker"),
              ("GET", "/kind/service-worker"), ("GET", "/kind/prefetch"), ("GET", "/kind/prerender"),
              ("GET", "/kind/websocket"), ("GET", "/kind/link"), ("POST", "/kind/form")}
    assert wanted <= seen, wanted - seen
    for record in records:
        codes = [reason["code"] for reason in record["reasons"]]
        assert "hdr.fetch_metadata_forged" not in codes, (record["method"], record["path"], record["reasons"])
        assert not [c for c in codes if c.startswith("hdr.")], (record["method"], record["path"], codes)
