"""Question: how many forward-auth checks a second does one proxy worker answer, with and without the fast lane?

nginx's auth_request asks `/.shieldware/check` about every request of the shop, so the checks a
second bound the shop's requests a second. wrk sends the checks the README's nginx site sends for
the crowd of bench/browser_crowd.lua (20,000 shoppers, Chrome's headers in Chrome's order, pages
and images, each shopper's address in X-Forwarded-For), in interleaved rounds, to:

  lane     `shieldware proxy --monitor`: the check endpoint has the fast lane decide the client's
           request, read straight from the call's scope (forward_auth.plain_call)
  python   the same with SHIELDWARE_FAST_LANE=0: every check decided on the Python path
  health   the same server's health endpoint: an answer with no decision, the ceiling

    python bench/forward_auth.py [--seconds 4] [--rounds 3] [--base REV]

`--base REV` adds `base`: the lane setup served from a base revision's tree (a git worktree, its
lane compiled, as bench/proxy_against.py makes it), measured in the same rounds, and the paired
ratio lane/base of each round.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from proxy import (
    ROOT,
    UPSTREAM_APP,
    free_port,
    measure_once,
    paired_rounds,
    proxy_command,
    running,
    summarise,
    upstream_command,
)
from proxy_against import base_tree, tree_env

from common import machine  # bench/, as proxy and proxy_against

CROWD = ROOT / "bench" / "browser_crowd.lua"


def check_lua() -> str:
    """browser_crowd.lua's requests, asked of the check endpoint as nginx's auth_request asks."""
    crowd = CROWD.read_text()
    for kind, line in (("image", '"GET /static/img/" .. id .. ".svg HTTP/1.1\\r\\n" .. image .. tail'),
                       ("page", '"GET /product/" .. id .. " HTTP/1.1\\r\\n" .. page .. tail')):
        target = '"/static/img/" .. id .. ".svg"' if kind == "image" else '"/product/" .. id'
        asked = (f'"GET /.shieldware/check?style=nginx HTTP/1.1\\r\\nX-Original-URI: " .. {target} .. '
                 f'"\\r\\nX-Original-Method: GET\\r\\nX-Forwarded-Proto: http\\r\\n" .. {kind} .. tail')
        if line not in crowd:
            raise SystemExit(f"bench/browser_crowd.lua changed: its {kind} request is not where this bench looks")
        crowd = crowd.replace(line, asked)
    return crowd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--base", help="also serve the checks from this revision's tree, in the same rounds")
    args = parser.parse_args()
    args.pin = False
    if shutil.which("wrk") is None:
        print(json.dumps({"error": "wrk is not installed (Debian package wrk)"}))
        return 1
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-forward-auth-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        (tmp / "upstream_app.py").write_text(UPSTREAM_APP)
        script = tmp / "checks.lua"
        script.write_text(check_lua())
        health = tmp / "health.lua"
        health.write_text('request = function()\n'
                          '  return "GET /.shieldware/health HTTP/1.1\\r\\nHost: shop\\r\\n\\r\\n"\nend\n')
        env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}"}
        upstream_port = free_port()
        stack.enter_context(running(upstream_command(upstream_port), upstream_port, env=env, cwd=tmp))
        servers = {}
        trees = {"lane": (ROOT, env, "1"), "python": (ROOT, env, "0")}
        if args.base:
            base = stack.enter_context(base_tree(args.base))
            trees["base"] = (base, tree_env(base), "1")
        for name, (tree, tree_environ, lane) in trees.items():
            port = free_port()
            command = proxy_command(upstream_port, port, "--monitor", "--trusted-proxy", "127.0.0.1/32")
            process = stack.enter_context(running(command, port, env={**tree_environ, "SHIELDWARE_FAST_LANE": lane},
                                                  cwd=tree))
            servers[name] = (f"http://127.0.0.1:{port}", [process.pid])
        setups = {name: (*servers[name], script) for name in servers}
        setups["health"] = (*servers["lane"], health)
        for url, _, lua in setups.values():
            measure_once(url, [], lua, argparse.Namespace(seconds=1, connections=args.connections, pin=False))
        for number in range(args.rounds):
            for name, (url, pids, lua) in setups.items():
                runs.setdefault(name, []).append(measure_once(url, pids, lua, args))
                print(f"round {number + 1} {name:>6}: {runs[name][-1]['requests_per_second']:.0f} checks/s",
                      file=sys.stderr)
    results = {name: summarise(setup_runs) for name, setup_runs in runs.items()}
    best, cpu = "best_requests_per_second", "median_server_cpu_us_per_request"
    print(json.dumps({
        "benchmark": "forward_auth",
        "question": "forward-auth checks/s of one proxy worker (monitor mode, the crowd's checks)",
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "machine": machine(),
        "results": results,
        "lane_vs_python_path": round(results["lane"][best] / results["python"][best], 3),
        "lane_vs_health": round(results["lane"][best] / results["health"][best], 3),
        "cpu_us_per_check": {name: results[name][cpu] for name in results},
        **({"lane_vs_base_paired": paired_rounds(runs, "lane", "base")} if args.base else {}),
        "note": "non_2xx counts the checks answered 401/403/429 (refusals); in monitor mode there should be none",
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
