"""A shop written in anything, behind the reverse proxy: outcomes come from status rules and X-Shield-Event."""

from __future__ import annotations

import httpx
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shieldware.demo import build_shop
from shieldware.policy import default_policy_text, policy_from_mapping
from shieldware.proxy import ProxySettings, build_proxy_app
from tests.support import CHROME_NAVIGATION, live_server


def without_hard_limits():
    """The shipped policy minus per-IP request limits, which a fast test client would hit first
    (this test runs on the real clock: the proxy builds its own middleware)."""
    raw = yaml.safe_load(default_policy_text())
    for group in raw["groups"]:
        group.pop("limits", None)
    return policy_from_mapping(raw, "<test policy>")


def test_stuffing_through_the_proxy_is_caught_from_upstream_statuses():
    # The bare shop reports nothing to shieldware: only its 401s say a login failed.
    with live_server(build_shop()) as shop:
        proxy_app = build_proxy_app(ProxySettings(upstream=shop.url), policy=without_hard_limits())
        with live_server(proxy_app) as proxy, httpx.Client(base_url=proxy.url, headers=CHROME_NAVIGATION) as client:
            verdicts = []
            for i in range(15):
                response = client.post("/login", data={"username": f"leaked{i}", "password": "p"})
                verdicts.append(response.headers.get("x-shield-verdict", "allow"))
    assert verdicts[:4] == ["allow"] * 4
    assert "block" in verdicts  # five accounts → challenged; ten, all failing → blocked


async def upstream_login(request: Request) -> Response:
    form = await request.form()
    return Response("nope", status_code=200, headers={"x-shield-event": f"login_failed; account={form['username']}"})


def test_upstream_x_shield_event_is_honoured_and_never_reaches_the_client():
    upstream = Starlette(routes=[Route("/login", upstream_login, methods=["POST"])])
    with live_server(upstream) as shop:
        proxy_app = build_proxy_app(ProxySettings(upstream=shop.url))
        seen: list[tuple[str | None, dict]] = []

        async def listener(decision, now, status, event, fields):
            if event is not None:
                seen.append((event, dict(fields)))

        proxy_app.engine.on_event(listener)
        with live_server(proxy_app) as proxy, httpx.Client(base_url=proxy.url, headers=CHROME_NAVIGATION) as client:
            response = client.post("/login", data={"username": "zoe", "password": "secret"})
    assert response.status_code == 200 and "x-shield-event" not in response.headers
    assert seen == [("login_failed", {"account": "zoe"})]
