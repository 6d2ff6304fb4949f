"""Bench: what the traffic signal (window observe + assess) costs per request, in-process.

Drives the demo shop's ASGI app directly (no sockets) with browser-like page requests from
many clients, three ways in the same run: the bare shop, the protected shop without the
traffic signal, and with it (monitor mode, so every request reaches the shop). Prints JSON.
Run: /work/venv/bin/python bench/traffic_signal.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shieldware.demo import build_shop
from shieldware.engine import Engine
from shieldware.middleware import ShieldMiddleware
from shieldware.policy import default_policy
from shieldware.signals import default_signals
from shieldware.store import MemoryStore
from tests.support import CHROME_NAVIGATION


def scope_for(i: int) -> dict:
    headers = [(k.encode(), v.encode()) for k, v in CHROME_NAVIGATION]
    headers.append((b"cookie", b"shop_session=bench%d" % (i % 500)))
    path = f"/product/{i % 1000 + 1}" if i % 3 else "/products"
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": headers, "client": (f"10.{i % 7}.{i % 250}.{i % 200}", 40000), "server": ("shop", 80)}


async def drive(app, scopes: list[dict]) -> float:
    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        return None

    started = time.thread_time()
    for scope in scopes:
        await app(scope, receive, send)
    return time.thread_time() - started


def protected(with_traffic: bool, clock) -> ShieldMiddleware:
    signals = [s for s in default_signals() if with_traffic or s.name != "traffic"]
    engine = Engine(default_policy(mode="monitor"), MemoryStore(capacity=65536), signals=signals)
    return ShieldMiddleware(build_shop(), engine=engine, clock=clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # decision logging is not what this measures
    scopes = [scope_for(i) for i in range(args.requests)]
    tick = iter(range(10**9))

    def clock() -> float:
        return 1_700_000_000.0 + next(tick) * 0.01

    apps = {"bare": build_shop(), "protected_without_traffic": protected(False, clock),
            "protected_with_traffic": protected(True, clock)}
    best = {name: float("inf") for name in apps}
    for _ in range(args.rounds):
        for name, app in apps.items():
            asyncio.run(drive(app, scopes[:200]))  # warm
            best[name] = min(best[name], asyncio.run(drive(app, scopes)))
    per_request = {name: seconds / args.requests * 1e6 for name, seconds in best.items()}
    report = {
        "requests": args.requests,
        "microseconds_per_request": {k: round(v, 1) for k, v in per_request.items()},
        "traffic_signal_microseconds": round(per_request["protected_with_traffic"]
                                             - per_request["protected_without_traffic"], 1),
        "throughput_ratio_with_traffic_vs_bare": round(per_request["bare"]
                                                       / per_request["protected_with_traffic"], 3),
        "throughput_ratio_without_traffic_vs_bare": round(per_request["bare"]
                                                          / per_request["protected_without_traffic"], 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
