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
