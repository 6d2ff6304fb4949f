"""Question: where does a decision's time go? Per-signal and store cost per request, in-process, JSON out.

Runs the shipped policy in monitor mode over a crowd of 5,000 clients (Chrome navigation headers,
random product pages, 3,000 warm-up requests first) and times every signal's inspect/assess and
the store's observe call, against the whole `Engine.decide` in the same run.
Usage: python bench/signal_costs.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldware.engine import Engine
from shieldware.facts import facts_from_scope
from shieldware.metrics import Metrics
from shieldware.policy import default_policy

CHROME = [
    ("sec-ch-ua", '"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"'),
    ("sec-ch-ua-mobile", "?0"), ("sec-ch-ua-platform", '"Windows"'), ("upgrade-insecure-requests", "1"),
    ("user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/120.0.0.0 Safari/537.36"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document"),
    ("accept-encoding", "gzip, deflate, br"), ("accept-language", "en-GB,en;q=0.9"), ("host", "shop.example"),
]


def timed(costs: dict[str, float], key: str, step: Any) -> Any:
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = step(*args, **kwargs)
        costs[key] += time.perf_counter() - started
        return result
    return run


def crowd(requests: int, seed: int = 1) -> list:
    rng = random.Random(seed)
    headers = [(k.encode(), v.encode()) for k, v in CHROME]
    facts = []
    for i in range(requests):
        client = rng.randrange(5000)
        scope = {"type": "http", "method": "GET", "path": f"/product/{rng.randrange(1, 1000)}",
                 "headers": [*headers, (b"cookie", f"shop_session=c{client}".encode())],
                 "client": (f"198.18.{client // 250}.{client % 250 + 1}", 5000), "query_string": b"",
                 "scheme": "http", "http_version": "1.1"}
        facts.append(facts_from_scope(scope, 1_000.0 + i * 0.0003))
    return facts


async def measure(requests: int) -> dict:
    engine = Engine(default_policy(mode="monitor"), metrics=Metrics())
    costs: dict[str, float] = defaultdict(float)
    for signal in engine.signals:
        for stage in ("inspect", "assess"):
            step = getattr(signal, stage, None)
            if step is not None:
                setattr(signal, stage, timed(costs, f"{signal.name}.{stage}", step))
    observe = engine.store.observe

    async def timed_observe(*args: Any) -> Any:
        started = time.perf_counter()
        result = await observe(*args)
        costs["store.observe"] += time.perf_counter() - started
        return result

    engine.store.observe = timed_observe
    facts = crowd(requests + 3000)
    for item in facts[:3000]:
        await engine.decide(item)
    costs.clear()
    started = time.perf_counter()
    for item in facts[3000:]:
        await engine.decide(item)
    total = time.perf_counter() - started
    parts = {k: round(v / requests * 1e6, 2) for k, v in sorted(costs.items(), key=lambda kv: -kv[1])}
    measured = sum(costs.values())
    return {"benchmark": "signal_costs", "requests": requests,
            "decide_us_per_request": round(total / requests * 1e6, 2),
            "parts_us_per_request": parts,
            "engine_own_us_per_request": round((total - measured) / requests * 1e6, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.requests)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
