"""Question: what does the middleware add per request, without a server or a load generator in the way?

Calls the one-line app and the demo shop as ASGI callables in-process, bare and wrapped by
ShieldMiddleware in monitor mode, over the crowd the served benchmark uses (bench/browser_crowd.lua:
20,000 shoppers in Chrome behind a trusted loopback edge, product pages and their images), and
prints µs per request of each and the difference, JSON out. The middleware's clock advances
1/`--pace` s per request, so the windows see the crowd at a server's pace rather than at a tight
loop's (which would rate-limit everyone). Every shopper has been seen once before the timed run
(`--cold` times the first sight instead). `--signals` picks the engine's signals: all (the
default), foundation (request, user agent, headers) or none; `--python-path` turns the fast
lane off. `--profile` adds the functions that take the most time in the protected run (cProfile).
Usage: python bench/asgi_costs.py [--requests 20000] [--pace 15000] [--cold] [--signals all|foundation|none]
                                  [--python-path] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldware.demo import build_shop
from shieldware.middleware import ShieldMiddleware
from tests.support import CHROME_NAVIGATION

import apps
from common import machine, print_profile

SHOPPERS = 20_000
CHROME_IMAGE = [*(h for h in CHROME_NAVIGATION if h[0] not in ("upgrade-insecure-requests", "sec-fetch-user")
                  and not h[0].startswith(("accept", "sec-fetch"))),
                ("accept", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"),
                ("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "no-cors"), ("sec-fetch-dest", "image"),
                ("accept-encoding", "gzip, deflate, br"), ("accept-language", "en-GB,en;q=0.9")]


def crowd(requests: int, seed: int = 7, shoppers: range = range(SHOPPERS)) -> list[dict]:
    """The served crowd as ASGI scopes: random shoppers, each fetching the image of the page it is
    on, then two product pages, and so on (as bench/browser_crowd.lua does)."""
    rng = random.Random(seed)
    sent: dict[int, int] = {}
    page = [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]
    image = [(n.encode(), v.encode()) for n, v in CHROME_IMAGE]
    scopes = []
    for _ in range(requests):
        client = rng.choice(shoppers)
        sent[client] = sent.get(client, 0) + 1
        shows_image = sent[client] % 3 == 1
        address = f"198.{18 + client % 500 // 256}.{client % 500 % 256}.{client // 500 + 1}"
        headers = [*(image if shows_image else page), (b"referer", b"http://127.0.0.1:8000/"),
                   (b"cookie", f"shop_session=c{client}".encode()), (b"x-forwarded-for", address.encode())]
        path = f"/static/img/{rng.randrange(1, 1000)}.svg" if shows_image else f"/product/{rng.randrange(1, 1000)}"
        scopes.append({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                       "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                       "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
                       "server": ("127.0.0.1", 8000)})
    return scopes


def paced_clock(pace: float, start: float = 1_800_000_000.0) -> Callable[[], float]:
    """Time that moves on by one request's share of a second each time it is read. A counter's
    `__next__`, so reading it costs what reading time.time() costs the middleware in service: a
    clock written in Python would add a Python call to every request measured."""
    return itertools.count(start + 1.0 / pace, 1.0 / pace).__next__


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict) -> None:
    return None


async def run(app, scopes: list[dict]) -> float:
    """Seconds to serve every scope once, one after another."""
    started = time.perf_counter()
    for scope in scopes:
        await app(dict(scope), _receive, _send)
    return time.perf_counter() - started


def protect(app, signals: str, pace: float, **options) -> ShieldMiddleware:
    chosen = apps._protected(app, signals)  # the served benchmark's engine and policy
    return ShieldMiddleware(app, engine=chosen.engine, clock=paced_clock(pace), **options)


async def measure(requests: int, profile: bool, signals: str = "all", pace: float = 15000.0,
                  cold: bool = False) -> dict:
    os.environ["SHIELDWARE_BENCH_CLIENTS"] = "many"
    # Everyone once (pages and images), or a handful, before the timed run.
    warm = crowd(SHOPPERS * 3, seed=1) if not cold else crowd(300, seed=1, shoppers=range(SHOPPERS, SHOPPERS + 50))
    scopes = crowd(requests)
    result: dict = {"benchmark": "asgi_costs", "requests": requests, "signals": signals, "pace": pace,
                    "shoppers_seen_before": not cold, "lane": os.environ.get("SHIELDWARE_FAST_LANE", "1") != "0",
                    "machine": machine()}
    for name, bare in (("minimal", apps.minimal_app()), ("shop", build_shop())):
        protected = protect(bare, signals, pace)
        await run(bare, warm[:3000])
        await run(protected, warm)
        bare_s = await run(bare, scopes)
        protected_s = await run(protected, scopes)
        result[name] = {"bare_us": round(bare_s / requests * 1e6, 2),
                        "protected_us": round(protected_s / requests * 1e6, 2),
                        "added_us": round((protected_s - bare_s) / requests * 1e6, 2),
                        "ratio_if_cpu_bound": round(bare_s / protected_s, 3),
                        "lane": protected.lane.counts() if protected.lane else None}
        if profile:
            await print_profile(f"{name}, protected", run(protected, scopes), top=35)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--signals", choices=("all", "foundation", "none"), default="all")
    parser.add_argument("--pace", type=float, default=15000.0, help="requests per simulated second")
    parser.add_argument("--cold", action="store_true", help="time the shoppers' first sight")
    parser.add_argument("--python-path", action="store_true", help="the fast lane off: every request in Python")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the protected run to stderr")
    args = parser.parse_args()
    if args.python_path:
        os.environ["SHIELDWARE_FAST_LANE"] = "0"
    print(json.dumps(asyncio.run(measure(args.requests, args.profile, args.signals, args.pace, args.cold)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
