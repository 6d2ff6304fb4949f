"""Real headless Chromium solves the challenge, lands on the page it asked for and keeps browsing."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import pytest

from shieldware.actions.challenge import challenge_script, install_challenges
from shieldware.actions.challenge_policy import ChallengeSettings
from shieldware.demo import build_demo_app
from tests.challenge_support import PRODUCT_RULE, keyring
from tests.support import CHROME_UA, CHROMIUM, live_server
from tests.support import CHROMIUM_ARGS as BASE_ARGS

CHROMIUM_ARGS = [*BASE_ARGS,
                 # Two plain-http host names (no Web Crypto there; two sites for the framing test).
                 "--host-resolver-rules=MAP shop.test 127.0.0.1, MAP other.test 127.0.0.1"]
# A person's browser does not announce automation; the automation test leaves this out.
PERSON_ARGS = [*CHROMIUM_ARGS, "--disable-blink-features=AutomationControlled"]

if not os.path.exists(CHROMIUM):
    print(f"\nSKIP challenge browser tests: {CHROMIUM} is missing (scripts/setup.sh installs Debian "
          "'chromium')", file=sys.stderr)
MISSING = f"{CHROMIUM} not installed; scripts/setup.sh installs Debian chromium"
pytestmark = [pytest.mark.chromium, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=MISSING)]


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


def launch(playwright, args):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args)


class Shop:
    """The demo shop with /product/* always challenged; records challenge events and decisions."""

    def __init__(self, tmp_path, difficulty: int | None = None) -> None:
        from shieldware.policy import default_policy

        self.log = tmp_path / "decisions.jsonl"
        challenge = {"difficulty": difficulty} if difficulty else {}
        policy = default_policy(rules=[PRODUCT_RULE], challenge=challenge,
                                decision_log={"path": str(self.log), "all": True})
        self.app = build_demo_app(policy=policy)
        install_challenges(self.app, keyring=keyring("k1"))
        self.events: list[tuple[str, dict]] = []
        self.app.engine.on_event(self._on_event)

    async def _on_event(self, decision, now, status, event, fields) -> None:
        if event and event.startswith("challenge_"):
            self.events.append((event, fields))

    def decisions(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def challenge_documents(page) -> list[str]:
    """Collect the URLs of documents answered with a challenge, as the browser saw them."""
    seen: list[str] = []

    def on_response(response) -> None:
        document = response.request.resource_type == "document"
        if document and response.headers.get("x-shield-verdict") == "challenge":
            seen.append(response.url)

    page.on("response", on_response)
    return seen


def test_browser_solves_lands_on_its_url_and_browses_twenty_pages(playwright, tmp_path):
    shop = Shop(tmp_path)  # the shipped default difficulty
    browser = launch(playwright, PERSON_ARGS)
    try:
        with live_server(shop.app) as server:
            context = browser.new_context(user_agent=CHROME_UA)
            page = context.new_page()
            challenged = challenge_documents(page)
            target = f"{server.url}/product/5?from=home"
            first = page.goto(target)
            assert first.status == 403 and first.headers["x-shield-verdict"] == "challenge"
            page.wait_for_selector("text=Add to cart", timeout=30_000)
            assert page.url == target
            for product in range(6, 26):
                response = page.goto(f"{server.url}/product/{product}")
                assert response.status == 200
                assert page.locator("text=Add to cart").count() == 1
            assert challenged == [target]
            clearance = next(c for c in context.cookies() if c["name"] == "shield_clearance")
            assert clearance["httpOnly"] and clearance["sameSite"] == "Lax" and not clearance["secure"]
            context.close()
    finally:
        browser.close()
    solved = [fields for event, fields in shop.events if event == "challenge_solved"]
    assert len(solved) == 1
    assert solved[0]["difficulty"] == ChallengeSettings().difficulty
    assert solved[0]["telemetry"]["webdriver"] is False and solved[0]["telemetry"]["web_crypto"] is True
    assert solved[0]["url"] == "/product/5?from=home"


def test_plain_http_host_without_web_crypto_solves_with_the_fallback(playwright, tmp_path):
    shop = Shop(tmp_path, difficulty=12)
    browser = launch(playwright, PERSON_ARGS)
    try:
        with live_server(shop.app) as server:
            page = browser.new_context(user_agent=CHROME_UA).new_page()
            target = f"http://shop.test:{server.port}/product/3"
            page.goto(target)
            page.wait_for_selector("text=Add to cart", timeout=30_000)
            assert page.url == target
            assert page.evaluate("window.isSecureContext") is False
    finally:
        browser.close()
    solved = [fields for event, fields in shop.events if event == "challenge_solved"]
    assert solved and solved[0]["telemetry"]["web_crypto"] is False


def test_fallback_sha256_matches_python(playwright):
    browser = launch(playwright, CHROMIUM_ARGS)
    try:
        page = browser.new_page()
        page.add_script_tag(content=challenge_script())
        for size in (0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 128, 300):
            text = "".join(chr(97 + (i * 7) % 26) for i in range(size))
            got = page.evaluate("s => ShieldChallenge.sha256Hex(new TextEncoder().encode(s))", text)
            assert got == hashlib.sha256(text.encode()).hexdigest(), size
        token = "k1.eyJ0ZXN0IjoxfQ.c2ln"
        for force_fallback in (True, False):
            solve = "([t, f]) => ShieldChallenge.solve(t, 12, null, f)"
            counter = page.evaluate(solve, [token, force_fallback])
            digest = hashlib.sha256(f"{token}:{counter}".encode()).digest()
            assert int.from_bytes(digest, "big") >> (256 - 12) == 0
    finally:
        browser.close()


def test_automation_is_reported_and_weighed(playwright, tmp_path):
    shop = Shop(tmp_path, difficulty=10)
    browser = launch(playwright, CHROMIUM_ARGS)  # no flag: navigator.webdriver is true
    try:
        with live_server(shop.app) as server:
            page = browser.new_context(user_agent=CHROME_UA).new_page()
            page.goto(f"{server.url}/product/2")
            page.wait_for_selector("text=Add to cart", timeout=30_000)
            page.goto(f"{server.url}/product/4")
    finally:
        browser.close()
    solved = [fields for event, fields in shop.events if event == "challenge_solved"]
    assert solved[0]["telemetry"]["webdriver"] is True and solved[0]["automation"] is True
    later = [d for d in shop.decisions() if d["path"] == "/product/4"][-1]
    codes = {reason["code"] for reason in later["reasons"]}
    assert {"clearance.valid", "clearance.automation"} <= codes


def serve_embedding_page(app):
    """The shop plus /embed: a page of another site that frames the shop's product page."""

    async def with_embed(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/embed":
            body = f'<iframe src="http://shop.test:{scope["server"][1]}/product/5"></iframe>'.encode()
            headers = [(b"content-type", b"text/html")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return with_embed


def test_browser_that_cannot_keep_the_cookie_is_told_so_instead_of_looping(playwright, tmp_path):
    """Framed by another site, Chromium refuses SameSite=Lax cookies: the page must say so and stop."""
    shop = Shop(tmp_path, difficulty=10)
    browser = launch(playwright, PERSON_ARGS)
    try:
        with live_server(serve_embedding_page(shop.app)) as server:
            page = browser.new_context(user_agent=CHROME_UA).new_page()
            challenged = challenge_documents(page)
            page.goto(f"http://other.test:{server.port}/embed")
            status = page.frame_locator("iframe").locator("#shield-status")
            status.filter(has_text="did not keep the cookie").wait_for(timeout=30_000)
            time.sleep(1.0)  # give a looping page time to show itself (this is not a speed bound)
            assert len(challenged) == 1
            assert page.frame_locator("iframe").locator("text=Add to cart").count() == 0
    finally:
        browser.close()
    failed = [fields for event, fields in shop.events if event == "challenge_failed"]
    assert [f["reason"] for f in failed] == ["challenge.cookies_disabled"]
