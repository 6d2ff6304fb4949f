"""Bench: what does classifying a user agent cost, cached and new, and what do the fingerprint signals cost?

Prints one JSON object. Budgets from issue 4: cached < 2 µs, new UA < 300 µs. Baselines run in the
same process: a plain dict lookup (the floor for "cached") and `user_agents.parse` (the library
the classifier replaced on its hot path).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldware.evidence import Weights
from shieldware.facts import facts_from_headers
from shieldware.signals.base import Inspection
from shieldware.signals.crawlers import VerifiedCrawlerSignal
from shieldware.signals.headers import HeaderSignal, header_fingerprint
from shieldware.signals.useragent import UserAgentSignal, classify_user_agent, warm_up
from tests import ua_collections
from tests.support import CHROME_NAVIGATION

CACHED_BUDGET_US = 2.0
NEW_BUDGET_US = 300.0


def per_call_us(fn, items, repeat=1) -> list[float]:
    timings = []
    clock = time.perf_counter_ns
    for _ in range(repeat):
        for item in items:
            start = clock()
            fn(item)
            timings.append((clock() - start) / 1000)
    return timings


def summary(timings: list[float]) -> dict:
    ordered = sorted(timings)
    return {
        "n": len(ordered),
        "mean_us": round(statistics.fmean(ordered), 3),
        "median_us": round(ordered[len(ordered) // 2], 3),
        "p99_us": round(ordered[int(len(ordered) * 0.99)], 3),
    }


def main() -> int:
    browsers = [
        ua
        for name in ua_collections.TUNING_BROWSER_FILES + ua_collections.HELD_OUT_BROWSER_FILES
        for ua in ua_collections.browser_user_agents(name)
    ]
    crawlers = ua_collections.crawler_instances(False) + ua_collections.crawler_instances(True)
    corpus = list(dict.fromkeys(browsers + crawlers))
    warm_up()  # what an engine does at start-up (UserAgentSignal.bind)

    # Three passes, the cache emptied before each, so every call classifies a string afresh. The
    # first pass is the honest "new UA" figure (also new to RE2's lazily built DFA); later passes
    # show the steady state once the automaton has met such strings.
    passes = []
    for _ in range(3):
        classify_user_agent.cache_clear()
        passes.append(per_call_us(classify_user_agent, corpus))
    new = passes[0]
    cached = per_call_us(classify_user_agent, corpus, repeat=3)
    floor = {ua: None for ua in corpus}
    dict_lookup = per_call_us(floor.get, corpus, repeat=3)

    import user_agents  # the pure-Python path the classifier avoids

    legacy = min(
        (per_call_us(user_agents.parse, [f"{ua} {i}" for ua in corpus[:300]]) for i in range(3)),
        key=statistics.fmean,
    )

    signals = [UserAgentSignal(), VerifiedCrawlerSignal(), HeaderSignal()]
    facts = facts_from_headers(
        "198.51.100.7",
        "GET",
        "/product/1",
        0.0,
        [("host", "shop.example"), *CHROME_NAVIGATION],
        scheme="https",
    )

    def run_signals(_):
        inspection = Inspection(facts, None, Weights())
        for signal in signals:
            signal.inspect(facts, inspection)

    def empty_inspection(_):
        Inspection(facts, None, Weights())

    run_signals(None)
    result = {
        "question": "cost of classify_user_agent (cached and new) and of the UA+crawler+header signals",
        "corpus": {"unique_user_agents": len(corpus), "browsers": len(browsers), "crawlers": len(crawlers)},
        "classify_new": summary(new),
        "classify_new_steady": summary(min(passes[1:], key=statistics.fmean)),
        "classify_new_pass_means_us": [round(statistics.fmean(p), 3) for p in passes],
        "classify_cached": summary(cached),
        "baseline_dict_lookup": summary(dict_lookup),
        "baseline_user_agents_parse_new": summary(legacy),
        "signals_per_request_chrome_navigation": summary(per_call_us(run_signals, range(5000))),
        # The header fingerprint alone, same request (its digest is cached per header-name stack).
        "header_fingerprint": summary(per_call_us(lambda _: header_fingerprint(facts), range(5000))),
        "baseline_empty_inspection": summary(per_call_us(empty_inspection, range(5000))),
        "budgets_us": {"cached": CACHED_BUDGET_US, "new": NEW_BUDGET_US},
    }
    result["ratio_new_vs_user_agents_parse"] = round(
        result["classify_new"]["mean_us"] / result["baseline_user_agents_parse_new"]["mean_us"], 3
    )
    result["within_budget"] = {
        "cached": result["classify_cached"]["mean_us"] < CACHED_BUDGET_US,
        "new": result["classify_new"]["mean_us"] < NEW_BUDGET_US,
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
