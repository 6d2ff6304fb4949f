"""Hoarding, sign-up floods, step-up for the app, and the fingerprint/ASN attributes other signals publish."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shieldware.decision import Verdict
from shieldware.demo import build_shop
from shieldware.engine import Engine
from shieldware.facts import facts_from_headers
from shieldware.metrics import Metrics
from shieldware.middleware import ShieldMiddleware
from shieldware.outcomes import form_field
from shieldware.policy import default_policy
from shieldware.signals import default_signals
from shieldware.store import MemoryStore
from tests.support import CHROME_NAVIGATION, SimulatedClock, live_server


@pytest.fixture
def shop():
    """The demo shop with every signal but the traffic ones (rate/behaviour), which would catch these
    scripted clients first: here we look at what the shop-abuse signals do on their own."""
    clock = SimulatedClock()
    policy = default_policy(trusted_proxies=["127.0.0.1/32"])
    engine = Engine(policy, signals=[s for s in default_signals() if s.name != "traffic"], metrics=Metrics())
    with live_server(ShieldMiddleware(build_shop(), engine=engine, clock=clock)) as server, \
            httpx.Client(base_url=server.url, headers=dict(CHROME_NAVIGATION), timeout=10) as client:
        server.clock, server.client = clock, client
        yield server


def verdict_of(response: httpx.Response) -> str:
    return response.headers.get("x-shield-verdict", "allow")


def test_add_to_cart_velocity_is_throttled_with_the_exact_wait(shop):
    shop.client.get("/cart")
    rng = random.Random(3)
    verdicts, reasons = [], set()
    for i in range(45):
        shop.clock.now += rng.uniform(0.2, 0.4)
        response = shop.client.post("/cart/add", data={"product_id": str(i + 1), "quantity": "1"})
        verdicts.append(verdict_of(response))
        if response.status_code == 429:
            reasons.add(response.headers.get("retry-after"))
    # A burst of 30 goes through, then one add per two seconds (GCRA, 30/min) with the exact wait.
    assert verdicts[:30] == ["allow"] * 30
    assert verdicts[30:].count("throttle") >= 9 and verdicts.count("allow") <= 36
    assert reasons and all(1 <= int(wait) <= 2 for wait in reasons)
    shop.clock.now += 10
    assert verdict_of(shop.client.post("/cart/add", data={"product_id": "5", "quantity": "1"})) == "allow"


def test_hoarding_large_quantities_is_challenged(shop):
    shop.client.get("/cart")
    verdicts = []
    for i in range(6):
        shop.clock.now += 30
        verdicts.append(verdict_of(shop.client.post("/cart/add", data={"product_id": str(i + 1), "quantity": "99"})))
    # 99 items per add, fed back by the shop's cart_add report: the third add crosses 200 in the hour.
    assert verdicts[:3] == ["allow"] * 3 and set(verdicts[3:]) == {"challenge"}


def test_signup_flood_from_one_ip_is_throttled(shop):
    verdicts = []
    for i in range(8):
        shop.clock.now += 60
        verdicts.append(verdict_of(shop.client.post("/register", data={"username": f"new{i}"},
                                                    headers={"x-forwarded-for": "203.0.113.200"})))
    assert verdicts[:5] == ["allow"] * 5 and verdicts[5:] == ["throttle"] * 3
    assert verdict_of(shop.client.post("/register", data={"username": "x"},
                                       headers={"x-forwarded-for": "203.0.113.201"})) == "allow"


async def whoami(request: Request) -> JSONResponse:
    form = await request.form()
    shield = request.state.shield
    ok = form.get("password") == "right"
    shield.report("login_succeeded" if ok else "login_failed", account=form.get("username"))
    return JSONResponse({"step_up": bool(shield.extra.get("login.step_up"))}, status_code=200 if ok else 401)


def test_the_app_is_told_to_step_up_a_login_after_failures():
    clock = SimulatedClock()
    app = ShieldMiddleware(Starlette(routes=[Route("/login", whoami, methods=["POST"])]),
                           engine=Engine(default_policy(), metrics=Metrics()), clock=clock)
    with live_server(app) as server, httpx.Client(base_url=server.url, headers=dict(CHROME_NAVIGATION)) as client:
        answers = []
        for password in ("no", "nope", "still no", "right"):
            clock.now += 20
            answers.append(client.post("/login", data={"username": "alice", "password": password}).json())
    assert [a["step_up"] for a in answers] == [False, False, False, True]


class FakeNetworkAndFingerprint:
    """Stands in for the fingerprint (issue 4) and network (issue 5) signals: publishes their attributes."""

    name = "fake-upstream"

    def inspect(self, facts, inspection):
        inspection.attrs["fingerprint"] = facts.header_map.get("x-test-fp", "")
        inspection.attrs["net.asn"] = 64500


def test_real_fingerprint_and_asn_attributes_key_the_login_windows():
    policy = default_policy()
    signals = default_signals()
    at = next(i for i, s in enumerate(signals) if s.name == "account")
    signals.insert(at, FakeNetworkAndFingerprint())  # overrides the header fingerprint, like a JA4 edge would
    engine = Engine(policy, MemoryStore(), signals=signals, metrics=Metrics())

    async def spray() -> list:
        decisions, now = [], 1_800_000_000.0
        for i in range(40):
            now += 1.0
            facts = facts_from_headers(f"100.{64 + i}.{i}.9", "POST", "/login", now,
                                       [*CHROME_NAVIGATION, ("x-test-fp", "t13d1516h2_deadbeef")],
                                       form_fields=(("account", f"victim{i}"),))
            decision = await engine.decide(facts)
            decisions.append(decision)
            if decision.verdict is Verdict.ALLOW:
                await engine.feedback(decision, now, event="login_failed", fields={})
        return decisions

    decisions = asyncio.run(spray())
    login = decisions[0].extra["login"]
    assert (login["account"], login["fingerprint"], login["asn"]) == ("victim0", "t13d1516h2_deadbeef", "64500")
    codes = {code for d in decisions for code in d.reason_codes}
    assert "ato.fingerprint_spray" in codes and "ato.asn_spray" in codes
    assert all(d.verdict is not Verdict.BLOCK for d in decisions)  # a shared fingerprint is challenged, not banned
    assert form_field(facts_from_headers("1.2.3.4", "GET", "/", 0.0), "account") is None
