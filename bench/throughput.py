"""Question: how much throughput does shieldware cost? Bare vs protected (monitor mode), same run, JSON out.

Two apps are measured: the demo shop's product page (a realistic handler) and a one-line
handler (the worst case for any middleware). Each is served bare and wrapped by
ShieldMiddleware in monitor mode (every signal evaluated, nothing blocked) and loaded with
wrk using browser-like headers, twice: from one address walking product ids in order (a
flood), and from a crowd of 5,000 addresses in random order (people).
Usage: python bench/throughput.py [--seconds 8] [--connections 32] [--rounds 1] [--signals all|foundation|none]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from common import BENCH_DIR, cpu_seconds, emit, have_wrk, uvicorn_server, wrk

TRAFFIC = {
    # one address walking product ids in order: the flood case (rate limits, enumeration, every
    # request a would-be throttle in monitor mode)
    "one_client": ({}, "browser.lua"),
    # 5,000 addresses visiting product pages in random order: a crowd of shoppers
    "crowd": ({"SHIELDWARE_BENCH_CLIENTS": "many"}, "browser_crowd.lua"),
}


def measure(factory: str, seconds: int, connections: int, traffic: str, signals: str = "all") -> dict:
    env, script = TRAFFIC[traffic]
    env = {**env, "SHIELDWARE_BENCH_SIGNALS": signals}
    with uvicorn_server(factory, env=env) as (port, pid):
        base = f"http://127.0.0.1:{port}"
        wrk(base + "/product/1", seconds=1, connections=4, script=BENCH_DIR / script)  # warm-up
        before = cpu_seconds(pid)
        result = wrk(base + "/product/1", seconds=seconds, connections=connections, script=BENCH_DIR / script)
        # CPU the server spent per request: steadier than requests/s when something else on the
        # machine takes turns with the server and wrk.
        result["server_cpu_us_per_request"] = round((cpu_seconds(pid) - before) / result["requests"] * 1e6, 1)
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure bare and protected alternately this many times; the ratio reported is "
                             "the median of the rounds' ratios (a shared machine drifts between runs)")
    parser.add_argument("--signals", choices=("all", "foundation", "none"), default="all",
                        help="foundation: only the first signals (request, user agent, headers); "
                             "none: the middleware and engine alone, the floor every signal adds to")
    args = parser.parse_args()
    if not have_wrk():
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    result = {"benchmark": "throughput", "mode": "monitor", "signals": args.signals, "seconds": args.seconds,
              "connections": args.connections, "rounds": args.rounds}
    for traffic in TRAFFIC:
        for app in ("shop", "minimal"):
            rounds = []
            for _ in range(args.rounds):
                bare = measure(f"{app}_bare", args.seconds, args.connections, traffic)
                protected = measure(f"{app}_protected", args.seconds, args.connections, traffic, args.signals)
                rounds.append({
                    "bare": bare, "protected": protected,
                    "ratio": round(protected["requests_per_s"] / bare["requests_per_s"], 3),
                    "cpu_ratio": round(bare["server_cpu_us_per_request"] / protected["server_cpu_us_per_request"], 3),
                })
            result[f"{app}_{traffic}"] = {
                "ratio": statistics.median(r["ratio"] for r in rounds),
                # bare CPU per request / protected CPU per request: the share of throughput kept
                # if the server had its core to itself
                "cpu_ratio": statistics.median(r["cpu_ratio"] for r in rounds),
                "rounds": rounds,
            }
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
