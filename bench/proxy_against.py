"""Question: does this checkout's proxy serve the crowd faster than a base revision's?

bench/proxy.py compares setups (direct, bare forwarder, proxy, nginx) within one checkout. On this
shared VM a round's CPU per request wanders by 5-20 µs, so two runs of it, one before a change and
one after, cannot tell a 2-5 % change from the drift. Here the proxy of this checkout, the proxy
of the base revision and this checkout's bare forwarder take turns within every round, on one
upstream, so the drift hits all three alike and each round gives a paired ratio.

    python bench/proxy_against.py [--base REV] [--rounds 4] [--seconds 4] [--traffic crowd|one_client]
                                  [--persistent]

The base is checked out as a git worktree in a temporary directory and its fast lane compiled
(hatch_build.compile_extension); each server runs from its own tree, with its own Numba cache,
and the bench says which file each imported shieldware from. The traffic is this checkout's
bench/browser_crowd.lua (20,000 shoppers behind a trusted loopback edge) for all three, or with
`--traffic one_client` bench/proxy.py's flood (one address over 64 product pages, flagged on every
request).
Each round starts each setup's server afresh, unless --persistent: the three servers are started
and warmed once and the rounds take turns among them (in reverse order every other round), each
measured by the CPU it spent over its wrk run. A server's start (imports, the Numba cache, the
first shoppers' plans) then adds nothing to the rounds, nor does a host whose speed drifts within
a round of three restarts; on a noisy host this paired the setups far more closely.
JSON out: per setup the median requests/s and CPU µs per request (user, system), every round's
figures, and the paired ratios (head/base, head/bare forwarder, base/bare forwarder) per round,
by requests/s and by CPU a request, with their medians (bench/proxy.py's paired_rounds; the CPU
ratio is the steadier: two copies of the same proxy read 1.005 by CPU, 0.966 by requests/s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy import BARE, PROXY, UPSTREAM_APP, browser_lua, free_port, paired_rounds, proxy_command, run_wrk, running

from common import cpu_split, machine

ROOT = Path(__file__).resolve().parent.parent
CROWD = ROOT / "bench" / "browser_crowd.lua"
WARM_SECONDS = 2


@contextlib.contextmanager
def base_tree(revision: str) -> Iterator[Path]:
    """The base revision as a worktree in a temporary directory, its fast lane compiled."""
    from hatch_build import SOURCE, compile_extension

    with tempfile.TemporaryDirectory(prefix="shieldware-base-") as name:
        tree = Path(name) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision], check=True,
                       capture_output=True, timeout=120)
        try:
            extension = tree / SOURCE.parent / ("_lane" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
            problem = compile_extension(tree / SOURCE, extension)
            if problem is not None:
                raise RuntimeError(f"the base's fast lane did not compile: {problem}")
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           capture_output=True, timeout=120)


def tree_env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "NUMBA_CACHE_DIR": str(tree / ".numba-cache")}


def imported_from(tree: Path) -> str:
    """Which shieldware a server started in `tree` imports (the check that each setup runs its own)."""
    run = subprocess.run([sys.executable, "-c", "import shieldware; print(shieldware.__file__)"], cwd=tree,
                         env=tree_env(tree), capture_output=True, text=True, timeout=60, check=True)
    return run.stdout.strip()


def one_round(upstream: int, setup: tuple[Path, tuple[str, ...]], seconds: float, script: Path) -> dict:
    """Start the setup's server, warm it with the traffic, then measure one wrk run of `seconds`."""
    tree, extra = setup
    port = free_port()
    with running(proxy_command(upstream, port, *extra), port, env=tree_env(tree), cwd=tree) as server:
        url = f"http://127.0.0.1:{port}/"
        run_wrk(url, script, WARM_SECONDS, 32)
        return measured(server.pid, url, seconds, script)


def measured(server_pid: int, url: str, seconds: float, script: Path) -> dict:
    """One wrk run of `seconds` against a running server, with the CPU the server spent over it."""
    user_before, system_before = cpu_split(server_pid)
    result = run_wrk(url, script, seconds, 32)
    user_after, system_after = cpu_split(server_pid)
    requests = result["requests"]
    if not requests:
        raise RuntimeError(f"wrk measured no requests against {url}")
    return {"requests_per_second": result["requests_per_second"], "requests": requests,
            "non_2xx": result["non_2xx"],
            "user_us_per_request": round(1e6 * (user_after - user_before) / requests, 1),
            "system_us_per_request": round(1e6 * (system_after - system_before) / requests, 1),
            "server_cpu_us_per_request": round(1e6 * (user_after + system_after - user_before - system_before)
                                               / requests, 1)}


def persistent_rounds(upstream: int, setups: dict[str, tuple[Path, tuple[str, ...]]], rounds: int, seconds: float,
                      script: Path) -> dict[str, list[dict]]:
    """--persistent: every setup's server started and warmed once, then `rounds` turns among them."""
    runs: dict[str, list[dict]] = {name: [] for name in setups}
    with contextlib.ExitStack() as servers:
        urls: dict[str, tuple[int, str]] = {}
        for name, (tree, extra) in setups.items():
            port = free_port()
            server = servers.enter_context(running(proxy_command(upstream, port, *extra), port, env=tree_env(tree),
                                                   cwd=tree))
            urls[name] = (server.pid, f"http://127.0.0.1:{port}/")
            run_wrk(urls[name][1], script, 3 * WARM_SECONDS, 32)
        for turn in range(rounds):
            for name in (list(setups) if turn % 2 == 0 else reversed(list(setups))):
                runs[name].append(measured(*urls[name], seconds, script))
    return runs


def summary(runs: list[dict]) -> dict:
    return {
        "median_requests_per_second": round(statistics.median(r["requests_per_second"] for r in runs)),
        "median_user_us_per_request": round(statistics.median(r["user_us_per_request"] for r in runs), 1),
        "median_system_us_per_request": round(statistics.median(r["system_us_per_request"] for r in runs), 1),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "rounds": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD~1", help="the revision to compare against (default HEAD~1)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each measured wrk run")
    parser.add_argument("--traffic", choices=["crowd", "one_client"], default="crowd")
    parser.add_argument("--persistent", action="store_true",
                        help="start and warm each server once; the rounds take turns among them")
    args = parser.parse_args()
    base_commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.base], check=True,
                                 capture_output=True, text=True, timeout=30).stdout.strip()
    runs: dict[str, list[dict]] = {"head": [], "base": [], "bare": []}
    with base_tree(args.base) as base, tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "upstream_app.py").write_text(UPSTREAM_APP)
        script = CROWD
        if args.traffic == "one_client":
            script = tmp / "browser.lua"
            script.write_text(browser_lua(64))
        setups = {"head": (ROOT, PROXY), "base": (base, PROXY), "bare": (ROOT, BARE)}
        imports = {"head": imported_from(ROOT), "base": imported_from(base)}
        upstream = free_port()
        with running([sys.executable, "-m", "uvicorn", "upstream_app:app", "--port", str(upstream),
                      "--log-level", "warning", "--no-access-log", "--lifespan", "off"], upstream,
                     env={**os.environ, "PYTHONPATH": str(tmp)}, cwd=tmp):
            for tree, extra in setups.values():  # once plainly first: Numba compiles each tree's kernels
                port = free_port()
                with running(proxy_command(upstream, port, *extra), port, env=tree_env(tree), cwd=tree):
                    pass
            if args.persistent:
                runs = persistent_rounds(upstream, setups, args.rounds, args.seconds, script)
            else:
                for _ in range(args.rounds):
                    for name, setup in setups.items():
                        runs[name].append(one_round(upstream, setup, args.seconds, script))
    print(json.dumps({
        "benchmark": "proxy_against",
        "question": f"{args.traffic} requests/s of this checkout's proxy against a base revision's, interleaved rounds",
        "traffic": args.traffic,
        "base": base_commit, "imports": imports, "seconds_per_run": args.seconds, "rounds": args.rounds,
        "servers": "started once, rounds taking turns" if args.persistent else "started afresh each round",
        "machine": machine(),
        "results": {name: summary(r) for name, r in runs.items()},
        "paired_ratios": {"head_vs_base": paired_rounds(runs, "head", "base"),
                          "head_vs_bare_forwarder": paired_rounds(runs, "head", "bare"),
                          "base_vs_bare_forwarder": paired_rounds(runs, "base", "bare")},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
