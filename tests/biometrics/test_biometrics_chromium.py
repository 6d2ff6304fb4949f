"""Acceptance in real headless Chromium: the collector loads cleanly, driver input reaches the
endpoint, and the server measures what the driver did."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shieldware.biometrics.endpoint import RECORD_KIND
from shieldware.demo import build_demo_app
from shieldware.store.memory import MemoryStore
from tests.biometrics.test_biometrics_endpoint import shop_policy
from tests.support import CHROME_UA, CHROMIUM, CHROMIUM_ARGS, live_server

ARGS = CHROMIUM_ARGS

pytestmark = pytest.mark.chromium
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


def session_record(store: MemoryStore, session_id: str, keys: int = 0, wait_s: float = 10.0) -> dict:
    """Poll the store until the beacon's batch has been recorded (beacons are asynchronous).

    Playwright's sync API owns this thread's event loop, so the store is read from another thread.
    """
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        with ThreadPoolExecutor(1) as pool:
            record = pool.submit(asyncio.run, store.get_record(RECORD_KIND, session_id, time.time())).result()
        if record is not None and record["session"]["keys.count"] >= keys:
            return record
        time.sleep(0.1)
    raise AssertionError("the telemetry did not reach the endpoint")


@pytest.fixture(scope="module")
def shop():
    store = MemoryStore()
    app = build_demo_app(policy=shop_policy(biometrics={"inject_groups": ["login"]}), store=store)
    with live_server(app) as server:
        server.store = store
        yield server


def person_ua(browser) -> str:
    """Chrome's desktop UA at the real Chromium's version: the client hints then agree with it."""
    major = browser.version.split(".")[0]
    return CHROME_UA.replace("Chrome/120.0.0.0", f"Chrome/{major}.0.0.0")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def test_driver_drag_arrives_and_measures_straight(shop, browser):
    context = browser.new_context(user_agent=person_ua(browser), viewport={"width": 1200, "height": 800})
    # The demo shop has no favicon; Chromium's automatic request for it is not the page's doing.
    context.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text} at {m.location}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    try:
        page.goto(f"{shop.url}/login")
        page.wait_for_function("window.shieldware && window.shieldware.version === 1")
        # A straight drag at constant speed, then a click in the user field and five typed keys.
        page.mouse.move(100, 600)
        page.mouse.down()
        page.mouse.move(700, 600, steps=60)
        page.mouse.up()
        page.click("input[name=username]")
        page.keyboard.type("alice")
        assert page.evaluate("window.shieldware.flush()") is True
        session_id = next(c["value"] for c in context.cookies() if c["name"] == "sw_sid")
        record = session_record(shop.store, session_id, keys=5)
    finally:
        context.close()
    # The collector's timer may cut the drag into two batches: the session totals add them up.
    measured = record["session"]
    codes = {r["code"] for r in record["reasons"]}
    assert problems == []
    assert measured["pointer.straightness_mean"] == pytest.approx(1.0, abs=0.01)
    assert measured["pointer.linear_segments"] >= 1
    assert "bio.linear_path" in codes
    assert measured["keys.count"] == 5
    assert measured["pointer.clicks"] == 2  # the drag's press and the click on the field
    assert measured["pointer.moves"] >= 10
    # The driver presses keys for a few ms, and a driven Chromium reports navigator.webdriver itself.
    assert "bio.uniform_keys" in codes
    assert "bio.automation_flag" in codes
    assert record["human"] < 0.5


def test_curved_variable_speed_path_is_not_a_ruler(shop, browser):
    context = browser.new_context(user_agent=person_ua(browser), viewport={"width": 1200, "height": 800})
    page = context.new_page()
    try:
        page.goto(f"{shop.url}/login")
        page.wait_for_function("window.shieldware && window.shieldware.version === 1")
        page.mouse.move(150, 650)
        for i in range(1, 80):
            u = i / 80
            x = 150 + 600 * u
            y = 650 - 250 * math.sin(math.pi * u) + 3 * math.sin(i * 1.7)
            page.mouse.move(x, y)
            page.wait_for_timeout(12 + (i * 7) % 15)
        page.evaluate("window.shieldware.flush()")
        session_id = next(c["value"] for c in context.cookies() if c["name"] == "sw_sid")
        record = session_record(shop.store, session_id)
    finally:
        context.close()
    measured = record["session"]
    assert measured["pointer.straightness_mean"] > 1.05
    assert "bio.linear_path" not in {r["code"] for r in record["reasons"]}


def test_leaving_the_page_sends_the_batch(browser):
    """No flush: the collector's pagehide/visibility beacon carries the last batch out."""
    store = MemoryStore()
    app = build_demo_app(policy=shop_policy(biometrics={"inject_groups": ["login"]}), store=store)
    received: list[dict] = []
    ingest = app.telemetry.ingest

    async def recording_ingest(session_id, body, facts):  # the real ingest, with a note of each batch
        received.append(json.loads(body))
        return await ingest(session_id, body, facts)

    app.telemetry.ingest = recording_ingest
    with live_server(app) as server:
        context = browser.new_context(user_agent=person_ua(browser), viewport={"width": 1200, "height": 400})
        context.route("**/favicon.ico", lambda route: route.fulfill(status=204))
        page = context.new_page()
        try:
            page.goto(f"{server.url}/login")
            page.wait_for_function("window.shieldware && window.shieldware.version === 1")
            page.wait_for_timeout(1700)  # the first timed batch goes; what follows leaves with the page
            page.mouse.move(300, 300, steps=8)
            page.click("input[name=username]")
            page.keyboard.type("bob", delay=120)
            page.goto(f"{server.url}/robots.txt")
            deadline = time.monotonic() + 10
            # Playwright's UA override does not reach unload beacons, so their batches may start a
            # record of their own; what matters here is that every key press left the page.
            while sum(len(b["keys"]) for b in received) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            context.close()
    assert sum(len(b["keys"]) for b in received) == 3
    assert all(b["page"] == "/login" for b in received)
    assert any(b["keys"] for b in received if b["seq"] > 0)
    # The page said it was hidden (focus kind 2) in a batch it sent on the way out.
    assert any(row[1] == 2 for b in received for row in b["focus"])


def test_challenge_solution_carries_the_collectors_telemetry(browser):
    """The challenge page runs the collector; its batch rides with the solution and is scored."""
    from shieldware.actions.challenge import install_challenges
    from tests.challenge_support import PRODUCT_RULE, keyring

    store = MemoryStore()
    app = build_demo_app(policy=shop_policy(rules=[PRODUCT_RULE]), store=store)
    install_challenges(app, keyring=keyring("k1"))
    solutions: list[dict] = []
    with live_server(app) as server:
        context = browser.new_context(user_agent=person_ua(browser))
        page = context.new_page()
        page.on("request", lambda r: solutions.append(r.post_data_json)
                if r.url.endswith("/challenge/verify") else None)
        try:
            first = page.goto(f"{server.url}/product/3")
            assert first.headers["x-shield-verdict"] == "challenge"
            page.wait_for_selector("text=Add to cart", timeout=30_000)
            session_id = next(c["value"] for c in context.cookies() if c["name"] == "sw_sid")
            with ThreadPoolExecutor(1) as pool:
                record = pool.submit(asyncio.run, store.get_record(RECORD_KIND, session_id, time.time())).result()
        finally:
            context.close()
    batch = solutions[0]["collector"]
    assert batch["v"] == 1 and batch["env"]["webdriver"] is True
    assert record is not None
    assert "bio.automation_flag" in {r["code"] for r in record["reasons"]}
    # A glance at the interstitial is not "no input": the page was open for well under 8 s.
    assert "bio.no_input" not in {r["code"] for r in record["reasons"]}
