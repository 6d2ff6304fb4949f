"""Question: how many instructions does the middleware's front door spend on a crowd request?

bench/proxy_instructions.py counts a whole served request, bare forwarder against proxy; from one run
to the next its difference wanders by about 1,000 instructions (garbage collection, and timers that
valgrind's slowness fires far more often per request than service does). A change of a few hundred
instructions to the lane cannot be told from that. This bench counts in process instead, so nothing
but the calls measured runs while instrumentation is on: it builds the served benchmark's engine and
middleware (bench/asgi_costs.py, monitor mode, the one-line app), shows it the crowd (shoppers behind
a trusted edge, product pages and their images) until every shopper has its plans, then counts, under
callgrind, the instructions of

- the bare app: `app(scope, receive, send)`, the coroutine made and closed unrun, for each scope;
- the protected app: `middleware.handle(scope, receive, send)` the same way. For a request the
  lane answers this is the lane's whole work (the scan, the windows, the decision, the app's scope
  and the response watch); for the others, what the lane did before handing over. The Python path's
  own work runs when the coroutine runs, so it is not counted: compare changes to the lane here and
  the whole request in bench/proxy_instructions.py.

The counts repeat exactly from run to run. The lane's outcomes for the measured requests are printed
with them (a change that moves requests from one outcome to another changes the count for that
reason too).

Each request's scope is a fresh dict, let go of inside the count as a server lets go of its own.

Usage: python bench/lane_instructions.py [--shoppers 2000] [--requests 3000] [--as-proxy] [--cold] [--keep DIR]
--cold counts requests from shoppers the middleware has not seen: most are first sights (a plan made
from the browser's template, after asking Python whether a network database knows the address).
--as-proxy makes the middleware as the proxy does (X-Shield-* lines in the decision, the server's scope
changed in place: shieldware/proxy/app.py). --keep copies the two callgrind dumps (bare, protected)
to DIR, for callgrind_annotate.
Needs valgrind (Debian package `valgrind`); says so and exits 2 without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy_instructions import callgrind_control, totals

PACE = 2000.0  # requests per simulated second: each shopper comes back a second or more later


def counted(phase: str, pid: int, run) -> None:
    """Run `run()` with callgrind's instrumentation on, then dump its count (one dump a phase)."""
    callgrind_control("-i", "on", str(pid))
    run()
    callgrind_control("-d", phase, str(pid))
    callgrind_control("-i", "off", str(pid))


async def child(shoppers: int, requests: int, as_proxy: bool, cold: bool) -> dict:
    """Runs under callgrind: warms the middleware, then counts the two phases."""
    from asgi_costs import crowd, protect

    import apps

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        pass

    os.environ["SHIELDWARE_BENCH_CLIENTS"] = "many"  # the benchmark's policy trusts the crowd's edge
    app = apps.minimal_app()
    middleware = protect(app, "all", PACE, headers_in_scope=not as_proxy, scope_in_place=as_proxy)
    for scope in crowd(shoppers * 3, seed=1, shoppers=range(shoppers)):
        await middleware.handle(dict(scope), receive, send)
    measured = crowd(requests, seed=3, shoppers=range(shoppers, 2 * shoppers) if cold else range(shoppers))
    pid = os.getpid()

    def each(call) -> None:
        scopes = [dict(scope) for scope in reversed(measured)]  # popped in the crowd's order
        while scopes:
            call(scopes.pop(), receive, send).close()  # made and dropped unrun, its scope with it

    counted("bare", pid, lambda: each(app))
    before = middleware.lane.counts()
    counted("protected", pid, lambda: each(middleware.handle))
    after = middleware.lane.counts()
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shoppers", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--as-proxy", action="store_true", help="the middleware as the proxy makes it")
    parser.add_argument("--cold", action="store_true", help="count shoppers' first sights")
    parser.add_argument("--keep", type=Path, help="copy the callgrind dumps to this directory")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.shoppers, args.requests, args.as_proxy, args.cold))))
        return 0
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("lane_instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    # Once plainly first, so Numba's cache holds the kernels (compiling them under valgrind is slow).
    flags = (["--as-proxy"] if args.as_proxy else []) + (["--cold"] if args.cold else [])
    command = [sys.executable, __file__, "--child", "--shoppers", str(args.shoppers), "--requests", "10", *flags]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    with tempfile.TemporaryDirectory() as name:
        out = Path(name) / "callgrind.out"
        child_run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable,
             __file__, "--child", "--shoppers", str(args.shoppers), "--requests", str(args.requests), *flags],
            check=True, capture_output=True, text=True, timeout=3600)
        outcomes = json.loads(child_run.stdout.strip().splitlines()[-1])
        dumps = sorted(Path(name).glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
        if len(dumps) != 2:
            raise RuntimeError(f"expected two dumps (bare, protected), found {[d.name for d in dumps]}")
        bare, protected = (totals(dump)["Ir"] / args.requests for dump in dumps)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for setup, dump in zip(("bare", "protected"), dumps, strict=True):
                shutil.copy(dump, args.keep / f"callgrind.{setup}")
    print(json.dumps({
        "benchmark": "lane_instructions",
        "question": "instructions per crowd request: the app called bare vs through the middleware's front door",
        "shoppers": args.shoppers, "requests": args.requests, "as_proxy": args.as_proxy, "cold": args.cold,
        "bare_app_instructions_per_request": round(bare),
        "protected_instructions_per_request": round(protected),
        "added_instructions_per_request": round(protected - bare),
        "lane_outcomes": outcomes,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
