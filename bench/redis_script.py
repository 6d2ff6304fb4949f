"""Question: how much of Redis's CPU does the window script take, per request and per observation?

Redis runs scripts on one core, so its CPU per request caps every worker sharing it together. This
replays one stream of gathered script calls against a redis-server of our own (free loopback port,
nothing persisted), in alternating rounds:

  script   shieldware/store/windows.lua as this checkout has it
  base     the same file at `--base REV` (optional): what a change to the script saved
  floor    a stand-in that runs the same GET, PFADD, PFCOUNT and SET per observation and answers
           a constant row: the commands' and the call's own cost, below which no script goes

The stream is what the engine itself sends: the observations of a crowd of shoppers (Chrome
navigation headers, their own addresses and session cookies, random product pages) captured from
`Engine.decide` on the memory store, then grouped 16 requests to a call, as requests of one
event-loop turn are gathered under load. Redis's CPU comes from its own INFO.

    python bench/redis_script.py [--requests 12800] [--rounds 4] [--base REV]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import sys
import time

from common import ROOT, emit, own_redis

sys.path.insert(0, str(ROOT))

from shieldware.store.base import Observation
from shieldware.store.memory import MemoryStore
from shieldware.store.redis import window_script

SCRIPT_FILE = ROOT / "shieldware" / "store" / "windows.lua"
CONSTANTS_MARK = "-- @CONSTANTS@"
PER_CALL = 16


class CapturingStore(MemoryStore):
    """The memory store, keeping every observation the engine asks about, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[list[Observation], float]] = []

    async def observe(self, observations, now):  # type: ignore[override] - same signature
        self.seen.append((list(observations), now))
        return await super().observe(observations, now)


async def crowd_observations(requests: int, shoppers: int = 2000) -> list[tuple[list[Observation], float]]:
    """The observations of `requests` crowd requests, as the engine's Python path makes them."""
    from shieldware.engine import Engine
    from shieldware.facts import TrustedProxies, facts_from_scope
    from shieldware.policy import default_policy
    from tests.support import CHROME_NAVIGATION

    store = CapturingStore()
    engine = Engine(default_policy(mode="monitor"), store=store)
    headers = [(b"host", b"shop.example")] + [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]
    rng = random.Random(7)
    now = 1_700_000_000.0
    for _ in range(requests):
        shopper = rng.randrange(shoppers)
        scope = {"type": "http", "method": "GET", "path": f"/product/{rng.randrange(1, 1000)}",
                 "query_string": b"", "headers": [*headers, (b"cookie", f"shop_session=c{shopper}".encode())],
                 "client": (f"198.18.{shopper // 250}.{shopper % 250 + 1}", 50000), "scheme": "http",
                 "http_version": "1.1"}
        now += 0.001
        await engine.decide(facts_from_scope(scope, now, TrustedProxies(), None))
    return store.seen


def floor_script(script: str) -> str:
    """The script's constants and preamble, then only its commands per observation."""
    head = script.split("local n = (#ARGV - 1) / PER_OBS")[0]
    return head + """
local n = (#ARGV - 1) / PER_OBS
local zeros = {}
for k = 1, ROW_WIDTH do zeros[k] = 0.0 end
local constant = struct.pack(ROW_FORMAT, unpack(zeros))
for i = 0, n - 1 do
  local base = 2 + i * PER_OBS
  local state_key = KEYS[3 * i + 1]
  local packed = redis.call("GET", state_key)
  for s = 1, SKETCHES do
    if ARGV[base + s] ~= "" then
      redis.call("PFADD", KEYS[3 * i + 1 + s], ARGV[base + s])
      redis.call("PFCOUNT", KEYS[3 * i + 1 + s])
    end
  end
  redis.call("SET", state_key, packed or string.rep("0", 8), "EX", ttl)
  out[i + 1] = constant  -- the replay asks for every answer
end
return table.concat(out)
"""


def script_at(revision: str) -> str:
    """window_script() with the body of windows.lua as it was at `revision`."""
    old = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:shieldware/store/windows.lua"],
                         capture_output=True, text=True, check=True).stdout
    current = window_script()
    body_now = SCRIPT_FILE.read_text().split(CONSTANTS_MARK, 1)[1]
    return current.replace(body_now, old.split(CONSTANTS_MARK, 1)[1])


def redis_cpu_seconds(port: int) -> float:
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "cpu"], capture_output=True, text=True,
                         check=True).stdout
    fields = dict(line.split(":", 1) for line in out.split() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


async def replay(port: int, scripts: dict[str, str], stream: list, rounds: int) -> dict[str, list[float]]:
    from shieldware.store import open_store

    store = open_store(f"redis://127.0.0.1:{port}/0?timeout=5")
    try:
        await store.observe([Observation("ip", "192.0.2.1")], 1.0)  # connected, scripts loadable
        calls = []
        for start in range(0, len(stream), PER_CALL):
            batch = [(o, now, True) for observations, now in stream[start:start + PER_CALL] for o in observations]
            calls += [(keys, args) for keys, args, _ in store._calls_for(batch)]
        shas = {name: await store.client.script_load(text) for name, text in scripts.items()}
        results: dict[str, list[float]] = {name: [] for name in scripts}
        for number in range(rounds):
            order = list(scripts) if number % 2 == 0 else list(scripts)[::-1]
            for name in order:
                await store.client.flushdb()  # every round starts from empty windows
                before = redis_cpu_seconds(port)
                for keys, args in calls:
                    await store.client.evalsha(shas[name], len(keys), *keys, *args)
                results[name].append((redis_cpu_seconds(port) - before) / len(stream) * 1e6)
        return results
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=12_800)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--base", help="also replay windows.lua as it was at this git revision")
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        print("needs redis-server (apt-get install redis-server)", file=sys.stderr)
        return 2
    stream = asyncio.run(crowd_observations(args.requests))
    scripts = {"script": window_script()}
    if args.base:
        scripts["base"] = script_at(args.base)
    scripts["floor"] = floor_script(window_script())
    with own_redis("sw-bench-script-") as redis:
        results = asyncio.run(replay(redis.port, scripts, stream, args.rounds))
    observations = sum(len(o) for o, _ in stream)
    median = {name: sorted(values)[len(values) // 2] for name, values in results.items()}
    emit({
        "benchmark": "redis_script",
        "requests": len(stream),
        "observations_per_request": round(observations / len(stream), 2),
        "requests_per_call": PER_CALL,
        "redis_cpu_us_per_request": {name: [round(v, 1) for v in values] for name, values in results.items()},
        "median_redis_cpu_us_per_request": {name: round(v, 1) for name, v in median.items()},
        "script_over_floor_us_per_observation": round((median["script"] - median["floor"]) * len(stream)
                                                      / observations, 2),
        "script_vs_base": round(median["script"] / median["base"], 3) if "base" in median else None,
        "requests_per_s_one_redis_core_allows": round(1e6 / median["script"]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
