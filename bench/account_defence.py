"""Bench: what do the account-takeover and shop-abuse signals cost per decision? JSON out, same-run baseline.

Engines with the default signals, with and without the account/shop-abuse/switch signals,
decide the same pre-built requests in-process (memory store, simulated time): a product page
(they should cost ~nothing there) and a login POST naming an account (their whole path: five
window keys, assess, plus the outcome fed back). Run: /work/venv/bin/python bench/account_defence.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shieldware.decision_log import DecisionLog
from shieldware.engine import Engine
from shieldware.facts import facts_from_headers
from shieldware.metrics import Metrics
from shieldware.policy import default_policy
from shieldware.signals import default_signals
from shieldware.store import MemoryStore

CHROME = [
    ("connection", "keep-alive"),
    ("user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/120.0.0.0 Safari/537.36"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", "document"),
    ("accept-encoding", "gzip, deflate, br"), ("accept-language", "en-GB,en;q=0.9"),
]
ACCOUNT_SIGNALS = ("account", "shopabuse", "switches")


def build_engine(with_account: bool) -> Engine:
    signals = [s for s in default_signals() if with_account or s.name not in ACCOUNT_SIGNALS]
    return Engine(default_policy(), MemoryStore(), signals=signals, decision_log=DecisionLog(), metrics=Metrics())


def requests(kind: str, count: int) -> list:
    start = 1_800_000_000.0
    if kind == "product":
        return [facts_from_headers(f"10.{i % 200}.{i % 97}.{i % 251}", "GET", f"/product/{i % 1000 + 1}",
                                   start + i * 0.01, CHROME) for i in range(count)]
    return [facts_from_headers(f"10.{i % 200}.{i % 97}.{i % 251}", "POST", "/login", start + i * 0.01, CHROME,
                               form_fields=(("account", f"user{i % 5000}"),)) for i in range(count)]


async def rate(engine: Engine, batch: list, feedback: bool) -> float:
    for facts in batch[:500]:  # warm-up: JIT, caches
        await engine.decide(facts)
    started = time.perf_counter()
    for facts in batch:
        decision = await engine.decide(facts)
        if feedback:
            await engine.feedback(decision, facts.now, event="login_failed", fields={})
    return len(batch) / (time.perf_counter() - started)


async def main_async(count: int, rounds: int) -> dict:
    result: dict = {"benchmark": "account_defence", "decisions": count, "rounds": rounds}
    for kind in ("product", "login"):
        batch = requests(kind, count)
        # Alternate the two engines over several rounds and keep each one's best: the machine is
        # shared, so a single run mostly measures the neighbours.
        without = with_signals = 0.0
        for _ in range(rounds):
            without = max(without, await rate(build_engine(False), batch, feedback=False))
            with_signals = max(with_signals, await rate(build_engine(True), batch, feedback=kind == "login"))
        result[kind] = {"without_per_s": round(without), "with_per_s": round(with_signals),
                        "ratio": round(with_signals / without, 3)}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.decisions, args.rounds))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
