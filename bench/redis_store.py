"""Question: what does the shared Redis store cost? Demo shop requests/s bare vs memory:// vs redis://,
each also without the fast lane (`SHIELDWARE_FAST_LANE=0`: every request on the Python path), and
redis:// with requests of one event-loop turn sharing a script call (the default) vs one call each
(`?gather=off`).
Each run also gives the server's CPU per request, and Redis's own for the redis:// runs.

All three run in one process each (uvicorn, 1 worker), loaded by wrk with browser-like headers
in the same run. The Redis figures include the commands a request costs, read from Redis's own
INFO commandstats: network calls (EVALSHA) per request and the commands the script runs inside.
Starts its own redis-server on a free loopback port. Usage: python bench/redis_store.py [--seconds 6]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

from common import BENCH_DIR, cpu_seconds, emit, have_wrk, own_redis, uvicorn_server, wrk


def command_stats(port: int) -> dict[str, int]:
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "commandstats"], capture_output=True, text=True,
                         check=True).stdout
    stats = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            stats[name[len("cmdstat_"):]] = int(rest.split(",")[0].split("=")[1])
    return stats


def measure(factory: str, seconds: int, connections: int, store: str = "memory://", redis_port: int = 0,
            redis_pid: int = 0, env: dict | None = None) -> dict:
    """wrk against one server after a warm-up, with the server's CPU per request; with `redis_port`,
    also the commands of the main run and Redis's own CPU per request."""
    with uvicorn_server(factory, env={"SHIELDWARE_BENCH_STORE": store, **(env or {})}) as (port, pid):
        url = f"http://127.0.0.1:{port}/product/1"
        wrk(url, seconds=1, connections=4, script=BENCH_DIR / "browser.lua")
        before = command_stats(redis_port) if redis_port else {}
        cpu_before, redis_before = cpu_seconds(pid), cpu_seconds(redis_pid) if redis_pid else 0.0
        result = wrk(url, seconds=seconds, connections=connections, script=BENCH_DIR / "browser.lua")
        served = max(result["requests"], 1)
        result["server_cpu_us_per_request"] = round((cpu_seconds(pid) - cpu_before) / served * 1e6, 1)
        if redis_port:
            after = command_stats(redis_port)
            result["commands"] = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
            result["redis_cpu_us_per_request"] = round((cpu_seconds(redis_pid) - redis_before) / served * 1e6, 1)
        return result


def commands_per_request(run: dict) -> tuple[float, float, dict[str, int]]:
    """Commands a client sends over the network vs those the window script runs inside Redis, per
    request served. The script's GET/SET of packed state cannot be told apart from a record read in
    commandstats; on this path records are read only by the switch refresh, every 2 s per process."""
    delta = run.pop("commands")
    delta.pop("info", None)
    scripted = ("get", "set", "expire", "pfadd", "pfcount", "del")
    served = max(run["requests"], 1)
    network = sum(v for k, v in delta.items() if k not in scripted)
    inside = sum(v for k, v in delta.items() if k in scripted)
    return round(network / served, 3), round(inside / served, 2), delta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not have_wrk() or not shutil.which("redis-server"):
        print("needs wrk and redis-server (apt-get install wrk redis-server)", file=sys.stderr)
        return 2
    with own_redis() as redis:
        uri = f"redis://127.0.0.1:{redis.port}/0"
        bare = measure("shop_bare", args.seconds, args.connections)
        memory = measure("shop_protected", args.seconds, args.connections)
        # Each store with the fast lane off too: every request on the Python path, as a baseline for
        # what the lane takes back on each.
        python_path = measure("shop_protected", args.seconds, args.connections, env={"SHIELDWARE_FAST_LANE": "0"})
        redis_run = measure("shop_protected", args.seconds, args.connections, uri, redis.port, redis.pid)
        redis_python = measure("shop_protected", args.seconds, args.connections, uri, redis.port, redis.pid,
                               env={"SHIELDWARE_FAST_LANE": "0"})
        alone = measure("shop_protected", args.seconds, args.connections, f"{uri}?gather=off", redis.port, redis.pid)
    network, inside, delta = commands_per_request(redis_run)
    commands_per_request(redis_python)
    alone_network, _, _ = commands_per_request(alone)
    emit({
        "benchmark": "redis_store",
        "seconds": args.seconds,
        "bare": bare,
        "memory": memory,
        "memory_python_path": python_path,
        "redis": redis_run,
        "redis_python_path": redis_python,
        "redis_one_call_each": alone,
        "ratio_memory_to_bare": round(memory["requests_per_s"] / bare["requests_per_s"], 3),
        "ratio_redis_to_bare": round(redis_run["requests_per_s"] / bare["requests_per_s"], 3),
        "ratio_redis_to_memory": round(redis_run["requests_per_s"] / memory["requests_per_s"], 3),
        "ratio_redis_to_memory_python_path": round(redis_run["requests_per_s"] / python_path["requests_per_s"], 3),
        "ratio_redis_lane_to_redis_python_path": round(redis_run["requests_per_s"] / redis_python["requests_per_s"], 3),
        "ratio_shared_calls_to_one_call_each": round(redis_run["requests_per_s"] / alone["requests_per_s"], 3),
        "redis_network_commands_per_request": network,
        "redis_network_commands_per_request_one_call_each": alone_network,
        "redis_commands_inside_scripts_per_request": inside,
        "redis_command_counts": delta,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
