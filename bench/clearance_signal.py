"""What does the clearance signal add to a decision? Engine.decide per second, JSON out.

Same process, same facts: the default signals without the clearance signal (baseline), with
it and no cookie, with a valid clearance cookie, and with a forged one (cached refusal).

    /work/venv/bin/python bench/clearance_signal.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldware.actions.proof import client_binding, issue_clearance
from shieldware.actions.tokens import Keyring
from shieldware.decision_log import DecisionLog
from shieldware.engine import Engine
from shieldware.facts import facts_from_headers
from shieldware.metrics import Metrics
from shieldware.policy import default_policy
from shieldware.signals import default_signals
from shieldware.signals.clearance import ClearanceSignal
from tests.support import CHROME_NAVIGATION

NOW = 1_800_000_000.0


async def rate(engine: Engine, facts, seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            await engine.decide(facts)
        done += 200
    return done / (time.perf_counter() - started)


async def main(seconds: float) -> dict:
    policy = default_policy()
    keyring = Keyring.generate("bench")

    def engine(with_clearance: bool) -> Engine:
        signals = [s for s in default_signals() if with_clearance or not isinstance(s, ClearanceSignal)]
        for signal in signals:
            if isinstance(signal, ClearanceSignal):
                signal.keyring = keyring
        return Engine(policy, signals=signals, decision_log=DecisionLog(None), metrics=Metrics())

    plain = facts_from_headers("198.51.100.7", "GET", "/product/1", NOW, CHROME_NAVIGATION)
    settings = policy.section("challenge")
    cookie, _ = issue_clearance(keyring, client_binding(plain, settings), settings, NOW, mode="pow")
    valid = facts_from_headers("198.51.100.7", "GET", "/product/1", NOW,
                               [*CHROME_NAVIGATION, ("cookie", f"shield_clearance={cookie}")])
    forged = facts_from_headers("198.51.100.7", "GET", "/product/1", NOW,
                                [*CHROME_NAVIGATION, ("cookie", f"shield_clearance={cookie[:-3]}AAA")])
    baseline = await rate(engine(False), plain, seconds)
    results = {"baseline_no_clearance_signal": baseline,
               "no_cookie": await rate(engine(True), plain, seconds),
               "valid_clearance": await rate(engine(True), valid, seconds),
               "forged_clearance": await rate(engine(True), forged, seconds)}
    return {"question": "decisions per second with the clearance signal, against a baseline without it",
            "decisions_per_second": {k: round(v) for k, v in results.items()},
            "ratio_to_baseline": {k: round(v / baseline, 3) for k, v in results.items()}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0)
    print(json.dumps(asyncio.run(main(parser.parse_args().seconds)), indent=2))
