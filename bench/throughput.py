"""Question: how much throughput does shieldware cost? Bare vs protected (monitor mode), same run, JSON out.

Two apps are measured: the demo shop's product page (a realistic handler) and a one-line
handler (the worst case for any middleware). Each is served bare and wrapped by
ShieldMiddleware in monitor mode (every signal evaluated, nothing blocked) and loaded with wrk,
twice: from one address walking product ids in order as fast as it can (a flood: every request
crosses a trigger, so each takes the Python path), and from a crowd of 20,000 shoppers in
Chrome (bench/browser_crowd.lua: their own addresses on 500 networks, session cookies, the
image of the page they are on, then two product pages, in turn). Every crowd client is new when the run
starts, so its first page and first image get plans made in C from their shape's template (only
a shape's very first request is decided on the Python path); `lane` reports how the protected
server's requests met the fast lane (shieldware_fast_lane_requests_total).
`--python-path` also measures the protected app with the lane off (SHIELDWARE_FAST_LANE=0).
Usage: python bench/throughput.py [--seconds 8] [--connections 32] [--rounds 1] [--signals all|foundation|none]
                                  [--python-path]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import urllib.request

from common import BENCH_DIR, cpu_seconds, emit, have_wrk, uvicorn_server, wrk

TRAFFIC = {
    # one address walking product ids in order: the flood case (rate limits, enumeration, every
    # request a would-be throttle in monitor mode)
    "one_client": ({}, "browser.lua"),
    # 20,000 shoppers in Chrome opening product pages and their images (bench/browser_crowd.lua)
    "crowd": ({"SHIELDWARE_BENCH_CLIENTS": "many"}, "browser_crowd.lua"),
}


_LANE = re.compile(r'^shieldware_fast_lane_requests_total\{outcome="(\w+)"\} ([\d.e+]+)$', re.M)


def lane_shares(base: str) -> dict[str, float] | None:
    """The share of requests by fast-lane outcome so far (None: the server has no lane)."""
    text = urllib.request.urlopen(base + "/.shieldware/metrics", timeout=10).read().decode()
    counts = {outcome: float(n) for outcome, n in _LANE.findall(text)}
    total = sum(counts.values())
    return {outcome: round(n / total, 3) for outcome, n in counts.items() if n} if total else None


def measure(factory: str, seconds: int, connections: int, traffic: str, signals: str = "all",
            lane: bool = True) -> dict:
    env, script = TRAFFIC[traffic]
    env = {**env, "SHIELDWARE_BENCH_SIGNALS": signals, "SHIELDWARE_FAST_LANE": "1" if lane else "0"}
    with uvicorn_server(factory, env=env) as (port, pid):
        base = f"http://127.0.0.1:{port}"
        wrk(base + "/product/1", seconds=1, connections=4, script=BENCH_DIR / script)  # warm-up
        before = cpu_seconds(pid)
        result = wrk(base + "/product/1", seconds=seconds, connections=connections, script=BENCH_DIR / script)
        # CPU the server spent per request: steadier than requests/s when something else on the
        # machine takes turns with the server and wrk.
        result["server_cpu_us_per_request"] = round((cpu_seconds(pid) - before) / result["requests"] * 1e6, 1)
        if factory.endswith("_protected") and lane:
            result["lane"] = lane_shares(base)
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
    parser.add_argument("--python-path", action="store_true",
                        help="also measure the protected app with the fast lane off (every request in Python)")
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
                one = {
                    "bare": bare, "protected": protected,
                    "ratio": round(protected["requests_per_s"] / bare["requests_per_s"], 3),
                    "cpu_ratio": round(bare["server_cpu_us_per_request"] / protected["server_cpu_us_per_request"], 3),
                }
                if args.python_path:
                    python = measure(f"{app}_protected", args.seconds, args.connections, traffic, args.signals,
                                     lane=False)
                    one["python_path"] = python
                    one["python_path_ratio"] = round(python["requests_per_s"] / bare["requests_per_s"], 3)
                rounds.append(one)
            result[f"{app}_{traffic}"] = {
                "ratio": statistics.median(r["ratio"] for r in rounds),
                # bare CPU per request / protected CPU per request: the share of throughput kept
                # if the server had its core to itself
                "cpu_ratio": statistics.median(r["cpu_ratio"] for r in rounds),
                **({"python_path_ratio": statistics.median(r["python_path_ratio"] for r in rounds)}
                   if args.python_path else {}),
                "rounds": rounds,
            }
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
