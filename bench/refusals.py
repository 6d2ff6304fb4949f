"""Question: does refusing a bot cost the shop less than serving it?

A flood is refused, not served: every refused request gets a block page, a challenge page or a
JSON answer from the middleware instead of reaching the app. If refusing costs more than serving,
a flood takes more of the server than it would unprotected. This bench calls the middleware
in-process (ASGI callables, no server or load generator in the way, as bench/asgi_costs.py does)
with one client at a time sending `--requests` requests, the middleware's clock advancing
1/`--pace` s per request, and prints µs per request of each case, JSON out:

  served            the minimal Starlette app with no middleware (the baseline: what serving costs)
  flood_monitor     Chrome's navigation headers from one address, monitor mode: flagged, passed on
  flood_monitor_assessed
                    the same with `hold_findings_s: 0`: every flagged request assessed afresh (the
                    baseline of the hold, shieldware/fastlane/holds.py)
  flood_enforce     the same in enforce mode: refused (the rate signals block it)
  flood_json        the same asking for JSON (a fetch() from a page): refused with a JSON answer
  scraper_block     python-requests from one address, enforce mode: blocked
  crowd_challenge   a crowd of 5,000 addresses (in 512 /24s) each sending a bare "Mozilla/5.0" user agent now and
                    then (no rate trips), enforce mode: each refused with the challenge page

Each case reports the statuses it got, so a policy change that stops refusing shows at once.

    python bench/refusals.py [--requests 20000] [--pace 15000] [--profile CASE]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asgi_costs import paced_clock

from shieldware.engine import Engine
from shieldware.middleware import ShieldMiddleware
from shieldware.policy import default_policy, default_policy_text
from tests.support import CHROME_NAVIGATION

import apps
from common import print_profile

JSON_FETCH = [*(h for h in CHROME_NAVIGATION if not h[0].startswith(("accept", "sec-fetch", "upgrade-insecure"))),
              ("accept", "application/json"), ("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "cors"),
              ("sec-fetch-dest", "empty"), ("accept-encoding", "gzip, deflate, br"),
              ("accept-language", "en-GB,en;q=0.9")]
SCRAPER = [("host", "127.0.0.1:8000"), ("user-agent", "python-requests/2.31.0"), ("accept-encoding", "gzip, deflate"),
           ("accept", "*/*"), ("connection", "keep-alive")]
DISGUISED = [(n, "Mozilla/5.0" if n == "user-agent" else v) for n, v in CHROME_NAVIGATION]
CASES = {  # name: (headers, mode, addresses[, seconds a flagged assessment is held])
    "flood_monitor": (CHROME_NAVIGATION, "monitor", 1),
    "flood_monitor_assessed": (CHROME_NAVIGATION, "monitor", 1, 0.0),
    "flood_enforce": (CHROME_NAVIGATION, "enforce", 1),
    "flood_json": (JSON_FETCH, "enforce", 1),
    "scraper_block": (SCRAPER, "enforce", 1),
    "crowd_challenge": (DISGUISED, "enforce", 5000),
}


def scopes(headers: list[tuple[str, str]], count: int, addresses: int = 1) -> list[dict]:
    raw = [(n.encode(), v.encode()) for n, v in headers]
    made = []
    for i in range(count):
        path = f"/product/{i % 64 + 1}"
        k = i % addresses  # each address in a /24 of its own (198.18.0.0/15 is for benchmarks)
        client = (f"198.{18 + k // 256 % 2}.{k % 256}.{k // 512 + 1}", 50000)
        made.append({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                     "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                     "root_path": "", "headers": raw, "client": client, "server": ("127.0.0.1", 8000)})
    return made


class Statuses:
    """An ASGI send that keeps only each response's status and verdict ("403 challenge")."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            verdict = dict(message["headers"]).get(b"x-shield-verdict", b"-").decode()
            self.counts[f"{message['status']} {verdict}"] += 1


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def run(app, requests: list[dict], send: Statuses) -> float:
    started = time.perf_counter()
    for scope in requests:
        await app(dict(scope), _receive, send)
    return time.perf_counter() - started


def protected(mode: str, pace: float, hold: float | None = None) -> ShieldMiddleware:
    overrides = {}
    if hold is not None:
        overrides["traffic"] = {**yaml.safe_load(default_policy_text())["traffic"], "hold_findings_s": hold}
    policy = default_policy(mode=mode, store="memory://", **overrides)
    return ShieldMiddleware(apps.minimal_app(), engine=Engine(policy), clock=paced_clock(pace))


async def measure(count: int, pace: float, profile: str | None) -> dict:
    result: dict = {"benchmark": "refusals", "requests": count, "pace": pace}
    bare = apps.minimal_app()
    send = Statuses()
    await run(bare, scopes(CHROME_NAVIGATION, 2000), send)
    served = min([await run(bare, scopes(CHROME_NAVIGATION, count), send) for _ in range(3)])
    result["served"] = {"us_per_request": round(served / count * 1e6, 2), "statuses": dict(send.counts)}
    for name, (headers, mode, addresses, *hold) in CASES.items():
        middleware = protected(mode, pace, *hold)
        requests = scopes(headers, count, addresses)
        await run(middleware, requests[:2000], Statuses())  # plans made, the flood under way
        send = Statuses()
        took = min([await run(middleware, requests, send) for _ in range(3)])
        result[name] = {"us_per_request": round(took / count * 1e6, 2), "vs_served": round(took / served, 2),
                        "statuses": dict(sorted(send.counts.items()))}
        if profile == name:  # a middleware of its own, profiled on what the first timed pass met
            middleware = protected(mode, pace, *hold)
            await run(middleware, requests[:2000], Statuses())
            await print_profile(name, run(middleware, requests, Statuses()))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--pace", type=float, default=15_000.0, help="requests per simulated second")
    parser.add_argument("--profile", choices=sorted(CASES), help="print a cProfile of this case to stderr")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.requests, args.pace, args.profile)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
