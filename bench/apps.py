"""App factories for the benchmarks (loaded by uvicorn with --factory --app-dir bench)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from shieldware.demo import build_shop
from shieldware.middleware import ShieldMiddleware
from shieldware.policy import default_policy


async def _hello(request):
    return PlainTextResponse("hello")


def minimal_app() -> Starlette:
    """The cheapest possible Starlette app: the worst case for a middleware's relative cost."""
    return Starlette(routes=[Route("/product/{pid}", _hello), Route("/static/img/{name}", _hello), Route("/", _hello)])


def _monitor_policy():
    # SHIELDWARE_BENCH_CLIENTS=many: the load generator names its clients in X-Forwarded-For, so the
    # policy trusts loopback as a proxy and every client gets its own windows (a crowd of shoppers
    # instead of one address flooding).
    trusted = ["127.0.0.1/32"] if os.environ.get("SHIELDWARE_BENCH_CLIENTS") == "many" else []
    return default_policy(mode="monitor", store=os.environ.get("SHIELDWARE_BENCH_STORE", "memory://"),
                          trusted_proxies=trusted)


def shop_bare():
    return build_shop()


def _protected(app, signals: str | None = None):
    """ShieldMiddleware in monitor mode. SHIELDWARE_BENCH_SIGNALS (or `signals`) picks the signals:
    `all` (default), `foundation` (request sanity, user agent, headers: what later ones cost), or
    `none` (the middleware and the engine deciding on no evidence: the floor every signal adds to)."""
    chosen = signals or os.environ.get("SHIELDWARE_BENCH_SIGNALS", "all")
    if chosen == "all":
        return ShieldMiddleware(app, policy=_monitor_policy())
    from shieldware.engine import Engine

    if chosen == "none":
        return ShieldMiddleware(app, engine=Engine(_monitor_policy(), signals=[]))
    from shieldware.signals.headers import HeaderSignal
    from shieldware.signals.request import RequestSanitySignal
    from shieldware.signals.useragent import UserAgentSignal

    engine = Engine(_monitor_policy(), signals=[RequestSanitySignal(), UserAgentSignal(), HeaderSignal()])
    return ShieldMiddleware(app, engine=engine)


def shop_protected():
    return _protected(build_shop())


def minimal_bare():
    return minimal_app()


def minimal_protected():
    return _protected(minimal_app())


def shop_failover():
    """The demo shop on redis:// with login failing closed (503) and checkout challenging when Redis is down."""
    import yaml

    from shieldware.policy import default_policy_text, policy_from_mapping

    raw = yaml.safe_load(default_policy_text())
    raw["mode"] = "enforce"
    raw["store"] = os.environ["SHIELDWARE_BENCH_STORE"]
    raw["trusted_proxies"] = ["127.0.0.1/32"]  # the load generator names its clients in X-Forwarded-For
    for group in raw["groups"]:
        if group["name"] == "login":
            group["on_store_failure"] = "unavailable"
        elif group["name"] == "checkout":
            group["on_store_failure"] = "challenge"
    return ShieldMiddleware(build_shop(), policy=policy_from_mapping(raw, "<failover bench>"))
