"""What does the biometrics signal cost per decision? Engine decisions/s with and without it, same run.

Three request kinds: no session cookie (the signal returns at once), a session cookie with no
record (one memory-store read), and a session with a stored human verdict (read + its reason
re-emitted; a human one, so the request is allowed either way and only the signal's cost shows).
Best of several interleaved rounds each, so a busy machine hurts both sides alike. JSON out.
Run: python bench/biometrics_signal.py [--decisions N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from shieldware.biometrics.endpoint import RECORD_KIND, merge_session, user_agent_hash
from shieldware.biometrics.scoring import assess
from shieldware.biometrics.telemetry import parse_telemetry
from shieldware.engine import Engine
from shieldware.facts import facts_from_headers
from shieldware.metrics import Metrics
from shieldware.policy import default_policy
from shieldware.signals import default_signals
from shieldware.store.memory import MemoryStore

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
HEADERS = [("user-agent", UA), ("accept", "text/html"), ("accept-language", "en"), ("accept-encoding", "gzip"),
           ("sec-fetch-mode", "navigate")]
SESSION = "B" * 24
NOW = 1_700_000_000.0


async def rate(with_biometrics: bool, cookie: str | None, store: MemoryStore, n: int) -> float:
    signals = [s for s in default_signals() if with_biometrics or s.name != "biometrics"]
    engine = Engine(default_policy(), store, signals=signals, metrics=Metrics())
    headers = HEADERS + ([("cookie", cookie)] if cookie else [])
    facts = facts_from_headers("203.0.113.9", "GET", "/product/1", NOW, headers)
    for _ in range(n // 10):
        await engine.decide(facts)
    started = time.perf_counter()
    for _ in range(n):
        await engine.decide(facts)
    return n / (time.perf_counter() - started)


async def main(n: int, rounds: int) -> dict:
    store = MemoryStore()
    # A person's batch (SapiMouse movement, see tests/fixtures/telemetry/README.md).
    body = (Path(__file__).resolve().parent.parent / "tests/fixtures/telemetry/human.json").read_bytes()
    record = merge_session(None, assess(parse_telemetry(body)), NOW, user_agent_hash(UA))
    await store.put_record(RECORD_KIND, SESSION, record, 3600, NOW)
    kinds = {"no_cookie": None, "cookie_no_record": "sw_sid=" + "C" * 24, "cookie_with_record": f"sw_sid={SESSION}"}
    report = {"stored_reasons": [r["code"] for r in record["reasons"]]}
    for name, cookie in kinds.items():
        without = with_ = 0.0
        for _ in range(rounds):
            without = max(without, await rate(False, cookie, store, n))
            with_ = max(with_, await rate(True, cookie, store, n))
        report[name] = {"decisions_per_s_without": round(without), "decisions_per_s_with": round(with_),
                        "ratio": round(with_ / without, 3)}
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    result = asyncio.run(main(args.decisions, args.rounds))
    print(json.dumps({"question": "engine decisions/s with the biometrics signal vs without, same run",
                      **result}, indent=1))
