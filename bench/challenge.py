"""How long does a person's browser take to pass the default challenge? Real Chromium, JSON out.

For `--runs` fresh browser contexts (no cookies) it opens a challenged product page of the demo
shop and waits for the product to show. It reports, as medians and quartiles:
  - solve_ms: the proof of work alone, as the page's script timed it;
  - server_ms: from issuing the challenge to accepting its solution (what metrics record);
  - landing_ms: from navigation start to the product visible (what the person waits);
and, as the baseline from the same run, the same navigation with the clearance already held.
`--fallback` repeats the solve on a plain-http host name, where the page uses its own SHA-256.

    /work/venv/bin/python bench/challenge.py            # default difficulty, 20 runs
    /work/venv/bin/python bench/challenge.py --difficulty 16 --runs 10 --fallback
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldware.actions.challenge import install_challenges
from shieldware.actions.challenge_policy import ChallengeSettings
from shieldware.actions.tokens import Keyring
from shieldware.demo import build_demo_app
from shieldware.policy import default_policy
from tests.support import CHROME_UA, live_server

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-blink-features=AutomationControlled",
        "--host-resolver-rules=MAP shop.test 127.0.0.1"]
RULE = {"name": "challenge-products", "when": {"path": "/product/*"}, "action": "challenge"}


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
    return {"median": round(statistics.median(ordered), 1), "p25": round(quartiles[0], 1),
            "p75": round(quartiles[2], 1), "min": round(ordered[0], 1), "max": round(ordered[-1], 1),
            "n": len(ordered)}


def measure(browser, base_url: str, runs: int, solved: list[dict]) -> dict[str, list[float]]:
    landing, baseline = [], []
    for run in range(runs):
        context = browser.new_context(user_agent=CHROME_UA)
        page = context.new_page()
        started = time.perf_counter()
        page.goto(f"{base_url}/product/{100 + run}")
        page.wait_for_selector("text=Add to cart", timeout=60_000)
        landing.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        page.goto(f"{base_url}/product/{500 + run}")  # clearance held: the baseline navigation
        page.wait_for_selector("text=Add to cart", timeout=60_000)
        baseline.append((time.perf_counter() - started) * 1000)
        context.close()
    fresh = solved[-runs:]
    return {"solve_ms": [s["client_solve_ms"] for s in fresh],
            "server_ms": [s["solve_seconds"] * 1000 for s in fresh],
            "landing_ms": landing, "baseline_ms": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--difficulty", type=int, default=ChallengeSettings().difficulty)
    parser.add_argument("--fallback", action="store_true", help="also measure the own-SHA-256 path")
    options = parser.parse_args()
    from playwright.sync_api import sync_playwright

    policy = default_policy(rules=[RULE], challenge={"difficulty": options.difficulty})
    app = build_demo_app(policy=policy)
    install_challenges(app, keyring=Keyring.generate("bench"))
    solved: list[dict] = []

    async def on_event(decision, now, status, event, fields) -> None:
        if event == "challenge_solved":
            solved.append(fields)

    app.engine.on_event(on_event)
    result: dict = {"question": "time for a person's browser to pass the default challenge",
                    "browser": CHROMIUM, "difficulty": options.difficulty, "runs": options.runs}
    with live_server(app) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            timings = measure(browser, server.url, options.runs, solved)
            result["web_crypto"] = {name: summary(values) for name, values in timings.items()}
            web_crypto = result["web_crypto"]
            extra = web_crypto["landing_ms"]["median"] - web_crypto["baseline_ms"]["median"]
            web_crypto["landing_over_baseline_ms"] = round(extra, 1)
            if options.fallback:
                timings = measure(browser, f"http://shop.test:{server.port}", options.runs, solved)
                result["fallback_sha256"] = {name: summary(values) for name, values in timings.items()}
        finally:
            browser.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
