"""Traffic signals against the demo shop on a real uvicorn server, with simulated time.

The middleware reads time from the `clock=` it is given; the tests move that clock forward
between requests, so minutes of browsing take a fraction of a second and every run is the same.
"""

from __future__ import annotations

import math
import random

import httpx
import pytest

from shieldware.demo import build_demo_app
from shieldware.policy import default_policy
from shieldware.store import MemoryStore
from tests.support import CHROME_NAVIGATION, CHROME_SUBRESOURCE, SimulatedClock, live_server


@pytest.fixture
def shop():
    clock = SimulatedClock(1_700_000_000.0)
    app = build_demo_app(policy=default_policy(), store=MemoryStore(capacity=4096), clock=clock)
    decisions = []
    record = app.engine.record

    def record_and_keep(decision):
        record(decision)
        decisions.append(decision)

    app.engine.record = record_and_keep  # every decision passes here (the fast lane's too): watch, change nothing
    with live_server(app) as server:
        server.clock = clock
        server.decisions = decisions
        yield server


def refused(response: httpx.Response) -> bool:
    return response.status_code in (403, 429) and "x-shield-verdict" in response.headers


def test_steady_20_per_second_walker_is_throttled_with_exact_retry_after(shop):
    fetched = 0
    with httpx.Client(base_url=shop.url, headers=CHROME_NAVIGATION) as client:
        for pid in range(1, 501):
            response = client.get(f"/product/{pid}")
            if refused(response):
                break
            assert response.status_code == 200
            fetched += 1
            shop.clock.advance(0.05)
    assert fetched < 100, "the walker fetched 100 products without being stopped"
    assert response.status_code == 429
    assert response.headers["x-shield-verdict"] == "throttle"
    # product: 4/s per IP. After the burst of 4 at 20 req/s the next conforming slot is at most
    # 250 ms away; Retry-After is that wait rounded up to whole seconds.
    assert response.headers["retry-after"] == "1"
    assert fetched <= 8
    assert "rate.ip.limit" in shop.decisions[-1].reason_codes


def test_walker_stopped_by_behaviour_alone_when_under_the_rate_limits(shop):
    # One product a second: far below 4/s and 120/min, so only behaviour can stop it —
    # machine-regular gaps, ids in order, no assets, no listing pages.
    fetched = 0
    verdict = None
    with httpx.Client(base_url=shop.url, headers=CHROME_NAVIGATION) as client:
        for pid in range(1, 101):
            response = client.get(f"/product/{pid}")
            if refused(response):
                verdict = response.headers["x-shield-verdict"]
                break
            fetched += 1
            shop.clock.advance(1.0)
    assert verdict in ("challenge", "block"), f"never stopped after {fetched} products"
    assert fetched < 60
    codes = shop.decisions[-1].reason_codes
    assert {"behav.regular_timing", "behav.enumeration", "behav.no_assets"} <= set(codes), codes
    assert not any(code.startswith("rate.") for code in codes)


def test_person_browsing_50_products_is_never_throttled(shop):
    rng = random.Random(20240611)
    seen_statuses: list[int] = []
    sub = dict(CHROME_SUBRESOURCE)

    def page(client: httpx.Client, path: str, referer: str | None) -> None:
        headers = {"referer": f"{shop.url}{referer}", "sec-fetch-site": "same-origin"} if referer else {}
        seen_statuses.append(client.get(path, headers=headers).status_code)
        shop.clock.advance(rng.uniform(0.05, 0.3))
        for asset in ("/static/app.css", "/static/app.js"):
            response = client.get(asset, headers={**sub, "referer": f"{shop.url}{path}"})
            seen_statuses.append(response.status_code)
        if path.startswith("/product/"):
            img = f"/static/img/{path.rsplit('/', 1)[1]}.svg"
            seen_statuses.append(client.get(img, headers={**sub, "accept": "image/avif,image/webp,*/*",
                                                          "sec-fetch-dest": "image",
                                                          "referer": f"{shop.url}{path}"}).status_code)

    def think() -> None:
        # Reading a page: log-normal, a few seconds to half a minute, never a metronome.
        shop.clock.advance(min(60.0, math.exp(rng.gauss(math.log(7.0), 0.7))))

    with httpx.Client(base_url=shop.url, headers=CHROME_NAVIGATION) as client:
        page(client, "/", None)
        current = "/"
        for n in range(50):
            think()
            if n % 3 == 0:
                listing = f"/products?page={rng.randint(1, 40)}"
                page(client, listing, current)
                current = listing
                think()
            elif n % 5 == 1:
                search = f"/search?q={rng.choice(['teapot', 'lamp', 'mug', 'scarf'])}"
                page(client, search, current)
                current = search
                think()
            product = f"/product/{rng.randint(1, 1000)}"
            page(client, product, current)
            current = product
        assert client.cookies.get("shop_session"), "the person kept the shop's session cookie"
    assert 429 not in seen_statuses
    assert set(seen_statuses) == {200}, f"a person was refused: {sorted(set(seen_statuses))}"
    behaviour = {code for d in shop.decisions for code in d.reason_codes
                 if code.startswith(("behav.", "rate."))}
    assert not behaviour, f"a person drew behaviour evidence: {behaviour}"


def test_probing_for_missing_pages_is_noticed(shop):
    with httpx.Client(base_url=shop.url, headers=CHROME_NAVIGATION) as client:
        statuses = []
        for pid in range(2000, 2040):  # ids past the catalogue: every one a 404
            response = client.get(f"/product/{pid}")
            statuses.append(response.status_code)
            if refused(response):
                break
            shop.clock.advance(1.7 + (pid % 7) * 0.9)
    assert statuses[0] == 404
    assert refused(response), f"40 404s and never refused: {statuses}"
    probing = next(e for e in shop.decisions[-1].reasons if e.code == "behav.probing")
    assert probing.detail["recent_errors"] >= 8 and probing.detail["error_share"] >= 0.85


@pytest.mark.parametrize(("path", "cookie"), [("/product", None), ("/product", "consent=yes; _ga=GA1.1.42"),
                                              ("/api/product", None)],
                         ids=["no cookie", "cookies but no session", "the JSON API"])
def test_a_walk_through_rotating_proxies_is_challenged_behind_a_trusted_edge(path, cookie):
    # A residential proxy pool behind the shop's edge: each page from another address, Chrome's
    # headers, the shop's session cookie never sent back (other cookies may be). Per address there
    # is one request; the stack is the tell.
    clock = SimulatedClock(1_700_000_000.0)
    app = build_demo_app(policy=default_policy(trusted_proxies=["127.0.0.1/32"]), store=MemoryStore(capacity=4096),
                         clock=clock)
    decisions, record = [], app.engine.record
    app.engine.record = lambda decision: (record(decision), decisions.append(decision))
    statuses = []
    with live_server(app) as server, httpx.Client(base_url=server.url, headers=CHROME_NAVIGATION) as client:
        for n in range(40):
            client.cookies.clear()
            headers = {"x-forwarded-for": f"198.51.{n}.{n + 7}", **({"cookie": cookie} if cookie else {})}
            response = client.get(f"{path}/{700 + n}", headers=headers)
            statuses.append(response.status_code)
            if refused(response):
                break
            clock.advance(0.7)
    assert 20 <= len(statuses) - 1 <= 25 and set(statuses[:-1]) == {200}, statuses
    assert response.headers["x-shield-verdict"] == "challenge"
    assert decisions[-1].reason_codes == ("behav.distributed_walk",)
    assert decisions[-1].ref == response.headers["x-shield-ref"]
