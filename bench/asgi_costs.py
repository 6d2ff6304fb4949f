"""Question: what does the middleware add per request, without a server or a load generator in the way?

Calls the one-line app and the demo shop as ASGI callables in-process, bare and wrapped by
ShieldMiddleware in monitor mode, over the same crowd of 5,000 clients the served benchmark
uses (Chrome navigation headers, X-Forwarded-For from a trusted loopback proxy, random product
pages), and prints µs per request of each and the difference, JSON out. `--signals` picks the
engine's signals: all (the default), foundation (request, user agent, headers) or none (the
middleware and the engine deciding on no evidence: the floor every signal adds to). `--profile`
adds the functions that take the most time in the protected run (cProfile, slower).
Usage: python bench/asgi_costs.py [--requests 20000] [--signals all|foundation|none] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldware.demo import build_shop

import apps

CHROME = [
    (b"host", b"127.0.0.1:8000"),
    (b"sec-ch-ua", b'"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"'),
    (b"sec-ch-ua-mobile", b"?0"), (b"sec-ch-ua-platform", b'"Windows"'), (b"upgrade-insecure-requests", b"1"),
    (b"user-agent", b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                    b"Chrome/120.0.0.0 Safari/537.36"),
    (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    (b"sec-fetch-site", b"same-origin"), (b"sec-fetch-mode", b"navigate"), (b"sec-fetch-user", b"?1"),
    (b"sec-fetch-dest", b"document"), (b"accept-encoding", b"gzip, deflate, br"),
    (b"accept-language", b"en-GB,en;q=0.9"),
]


def crowd(requests: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    scopes = []
    for _ in range(requests):
        client = rng.randrange(5000)
        headers = [*CHROME, (b"x-forwarded-for", f"198.18.{client // 250}.{client % 250 + 1}".encode()),
                   (b"cookie", f"shop_session=c{client}".encode())]
        path = f"/product/{rng.randrange(1, 1000)}"
        scopes.append({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                       "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                       "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
                       "server": ("127.0.0.1", 8000)})
    return scopes


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


async def measure(requests: int, profile: bool, signals: str = "all") -> dict:
    apps.os.environ["SHIELDWARE_BENCH_CLIENTS"] = "many"
    warm, scopes = crowd(3000, seed=1), crowd(requests)
    result: dict = {"benchmark": "asgi_costs", "requests": requests, "signals": signals}
    for name, bare in (("minimal", apps.minimal_app()), ("shop", build_shop())):
        protected = apps._protected(bare, signals)
        await run(bare, warm)
        await run(protected, warm)
        bare_s = await run(bare, scopes)
        protected_s = await run(protected, scopes)
        result[name] = {"bare_us": round(bare_s / requests * 1e6, 2),
                        "protected_us": round(protected_s / requests * 1e6, 2),
                        "added_us": round((protected_s - bare_s) / requests * 1e6, 2),
                        "ratio_if_cpu_bound": round(bare_s / protected_s, 3)}
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await run(protected, scopes)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(35)
            print(f"== {name}, protected\n{out.getvalue()}", file=sys.stderr)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--signals", choices=("all", "foundation", "none"), default="all")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the protected run to stderr")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.requests, args.profile, args.signals)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
