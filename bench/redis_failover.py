"""Question: what happens to requests when Redis dies under load, and how fast does it come back?

The demo shop runs on redis:// (login fails closed with 503, checkout challenges, everything else
fails open). 50 concurrent loopback clients browse for `--seconds` (default 30); Redis is killed a
third of the way in and restarted at two thirds. Prints JSON: status counts per route group while
Redis was up / down / back, 5xx from fail-open groups (should be 0), the slowest request, and
how long after the restart every group answered normally again. Bounded in time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from common import emit, free_port, uvicorn_server, wait_for_port

BROWSER = {
    "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/120.0.0.0 Safari/537.36",
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "accept-language": "en-GB,en;q=0.9",
    "accept-encoding": "gzip, deflate, br",
    "sec-ch-ua": '"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"',
    "sec-ch-ua-mobile": "?0",
    "sec-ch-ua-platform": '"Windows"',
    "sec-fetch-site": "same-origin",
    "sec-fetch-mode": "navigate",
    "sec-fetch-dest": "document",
    "upgrade-insecure-requests": "1",
}
ASSETS = ("/static/app.css", "/static/app.js")
ASSET_HEADERS = {"accept": "*/*", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "script",
                 "sec-fetch-site": "same-origin"}
REQUESTS = [("product", "GET", "/product/{n}"), ("search", "GET", "/search?q=lamp"),
            ("login", "GET", "/login"), ("checkout", "GET", "/checkout"), ("browse", "GET", "/")]


async def client_loop(base: str, index: int, stop_at: float, phase: list[str], results: list) -> None:
    loop = asyncio.get_running_loop()
    # Each client has its own address (198.18.0.0/15, the benchmarking range; the bench's policy trusts
    # X-Forwarded-For from loopback), so the per-IP limits of the default policy see 50 people, not one.
    headers = {**BROWSER, "x-forwarded-for": f"198.18.{index // 250}.{index % 250 + 1}"}
    # unsafe=True: keep cookies from an IP-address host (aiohttp drops them by default), as a browser does.
    jar = aiohttp.CookieJar(unsafe=True)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(headers=headers, cookie_jar=jar, timeout=timeout) as session:
        n = index
        rng = random.Random(index)
        while loop.time() < stop_at:
            group, method, path = REQUESTS[n % len(REQUESTS)]
            n += 1
            started = loop.time()
            try:
                async with session.request(method, base + path.format(n=n % 500 + 1)) as response:
                    await response.read()
                    status = response.status
            except aiohttp.ClientError:
                status = 0
            results.append((phase[0], group, status, loop.time() - started, loop.time()))
            # Like a person's browser: the page's assets, then an irregular pause (so the behaviour
            # signals see people and the figures are about the store, not about bot detection).
            for asset in ASSETS:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(base + asset, headers=ASSET_HEADERS) as response:
                        await response.read()
            await asyncio.sleep(rng.uniform(0.3, 1.5))


async def run(base: str, seconds: float, clients: int, redis_ctl) -> dict:
    loop = asyncio.get_running_loop()
    start = loop.time()
    phase = ["up"]
    results: list = []
    tasks = [asyncio.create_task(client_loop(base, i, start + seconds, phase, results)) for i in range(clients)]
    await asyncio.sleep(seconds / 3)
    redis_ctl.stop()
    phase[0] = "down"
    await asyncio.sleep(seconds / 3)
    redis_ctl.start()
    restarted = loop.time()
    phase[0] = "back"
    await asyncio.gather(*tasks)
    return summarise(results, restarted)


def summarise(results: list, restarted: float) -> dict:
    by_phase: dict[str, dict[str, Counter]] = {}
    for phase, group, status, _, _ in results:
        by_phase.setdefault(phase, {}).setdefault(group, Counter())[str(status)] += 1
    fail_open = ("product", "search", "browse")
    five_xx_open = sum(1 for _, g, s, _, _ in results if g in fail_open and (s >= 500 or s == 0))
    # Full function: the first moment after the restart from which login and checkout answer 200 again.
    recovered_at = None
    for phase, group, status, _, finished in sorted(results, key=lambda r: r[4]):
        if phase != "back" or group not in ("login", "checkout"):
            continue
        if status == 200 and recovered_at is None:
            recovered_at = finished
        elif status != 200:
            recovered_at = None
    return {
        "requests": len(results),
        "statuses": {p: {g: dict(c) for g, c in groups.items()} for p, groups in by_phase.items()},
        "fail_open_5xx_or_errors": five_xx_open,
        "slowest_request_s": round(max(r[3] for r in results), 4),
        "slowest_request_while_down_s": round(max((r[3] for r in results if r[0] == "down"), default=0), 4),
        "recovery_after_restart_s": None if recovered_at is None else round(recovered_at - restarted, 3),
    }


class RedisControl:
    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir, self.proc = port, workdir, None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)], stdout=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=0.25, help="store timeout in seconds")
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        print("needs redis-server (apt-get install redis-server)", file=sys.stderr)
        return 2
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="sw-failover-"))
    redis = RedisControl(port, workdir)
    redis.start()
    store = f"redis://127.0.0.1:{port}/0?timeout={args.timeout}&breaker_cooldown=0.5"
    try:
        with uvicorn_server("shop_failover", env={"SHIELDWARE_BENCH_STORE": store}) as (app_port, _):
            result = asyncio.run(run(f"http://127.0.0.1:{app_port}", args.seconds, args.clients, redis))
    finally:
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    emit({"benchmark": "redis_failover", "seconds": args.seconds, "clients": args.clients,
          "store_timeout_s": args.timeout, **result, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
