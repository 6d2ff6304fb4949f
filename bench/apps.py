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
    return Starlette(routes=[Route("/product/{pid}", _hello), Route("/", _hello)])


def _monitor_policy():
    return default_policy(mode="monitor", store=os.environ.get("SHIELDWARE_BENCH_STORE", "memory://"))


def shop_bare():
    return build_shop()


def shop_protected():
    return ShieldMiddleware(build_shop(), policy=_monitor_policy())


def minimal_bare():
    return minimal_app()


def minimal_protected():
    return ShieldMiddleware(minimal_app(), policy=_monitor_policy())
