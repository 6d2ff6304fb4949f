"""Question: how many instructions does detection add to each request the proxy forwards?

bench/proxy.py answers in requests/s and CPU µs, which on a shared 2-core VM wander by ±5-20 µs
from one round to the next: more than the few µs a change to the request path moves. This
bench counts instead. It runs the bare forwarder (`shieldware proxy --bare`) and the proxy
(`--monitor`), both trusting the loopback edge as bench/proxy.py's do, each under valgrind's
callgrind, sends both the same crowd of Chrome shoppers (bench/asgi_costs.py's crowd, as raw
HTTP over 8 keep-alive connections), and counts the user-space instructions each server
executes for the measured requests: instrumentation is switched on only after every shopper
has been seen (plans made, pools open), and off again before shutdown.

Instruction counts repeat from run to run within about 0.3 % (some 1,000 per request: garbage
collection, and the switchboard's wall-clock refreshes and metrics drains, which valgrind's
slowness makes more frequent per request than in service). The added count, a difference of
two such counts, wandered by 1,600 between two runs of the same code: a change of two thousand
instructions or more shows in one run; a smaller one needs a few runs, or --keep and
callgrind_annotate on the functions it touches. They are not time: cache misses (the windows of
thousands of shoppers do not fit in any cache) make detection's instructions dearer than the
forwarder's, so the served ratio in bench/proxy.py stays the one the goal is judged on.
Kernel (socket) work is not counted either.

Usage: python bench/proxy_instructions.py [--shoppers 2000] [--requests 3000] [--top 25] [--keep DIR]
                                          [--cache-sim [--host-caches]]
--keep copies the callgrind dumps to DIR (for `callgrind_annotate --inclusive=yes`); --cache-sim
has callgrind simulate the caches too and reports misses per request, the part of the served cost
that instruction counts leave out: by default the caches of the Intel VM most earlier figures come
from (48K L1 data, 4 MiB L2), with --host-caches this machine's own L1 data cache and L2.
The simulation has no prefetcher and counts every miss alike: it ranks changes to the data a
request touches, not changes to the code the compiler makes (a lane built -Os showed 85 fewer
L2 misses a request and served 5 % slower; docs/proxy-throughput-log.md).
Needs valgrind (Debian package `valgrind`); says so and exits 2 without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asgi_costs import crowd
from proxy import BARE, PROXY, UPSTREAM_APP, free_port, proxy_command, running

from common import cache_geometry, machine  # bench/, as asgi_costs and proxy

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 8
# --cache-sim's caches (bytes, ways, line), unless --host-caches: the L1 data cache of the VM the
# earlier measurements were made on (an Intel part), and its 4 MiB L2 as the last level; the
# 480 MiB L3 it reported was the host's, shared with whoever else ran there.
D1_CACHE = "49152,12,64"
LL_CACHE = "4194304,16,64"
MISSES = {"I1mr": "l1_instruction", "D1mr": "l1_data_read", "D1mw": "l1_data_write", "ILmr": "last_level_instruction",
          "DLmr": "last_level_data_read", "DLmw": "last_level_data_write"}


def raw_requests(count: int, shoppers: int, seed: int, port: int) -> list[bytes]:
    """The crowd's requests as the bytes a browser would send (header order kept)."""
    out = []
    for scope in crowd(count, seed=seed, shoppers=range(shoppers)):
        lines = [f"GET {scope['path']} HTTP/1.1", f"host: 127.0.0.1:{port}"]
        lines += [f"{name.decode()}: {value.decode()}" for name, value in scope["headers"]]
        out.append(("\r\n".join(lines) + "\r\n\r\n").encode())
    return out


async def _one_connection(port: int, queue: list[bytes], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while queue:
            writer.write(queue.pop())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def send(port: int, requests: list[bytes]) -> dict[int, int]:
    """Send every request (in order, over CONNECTIONS keep-alive connections); statuses seen."""
    queue = requests[::-1]
    statuses: dict[int, int] = {}

    async def all_connections() -> None:
        await asyncio.gather(*(_one_connection(port, queue, statuses) for _ in range(CONNECTIONS)))

    asyncio.run(all_connections())
    return statuses


def under_callgrind(command: list[str], out: Path, caches: tuple[str, str] | None) -> list[str]:
    """`command` run by callgrind with instrumentation off until callgrind_control turns it on;
    `caches` (L1 data, last level) has it simulate those caches too."""
    cache = ["--cache-sim=yes", f"--D1={caches[0]}", f"--LL={caches[1]}"] if caches else []
    return ["valgrind", "--tool=callgrind", *cache, "--instr-atstart=no", f"--callgrind-out-file={out}", *command]


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def totals(dump: Path) -> dict[str, int]:
    """The dump's event totals by name: Ir (instructions), and the cache misses when simulated."""
    text = dump.read_text(errors="replace")
    events = re.search(r"^events:\s*(.+)$", text, re.MULTILINE)
    found = re.search(r"^(?:summary|totals):\s*([\d ]+)$", text, re.MULTILINE)
    if events is None or found is None:
        raise RuntimeError(f"no event totals in {dump}")
    return dict(zip(events.group(1).split(), map(int, found.group(1).split()), strict=False))


def top_functions(dump: Path, limit: int) -> list[tuple[str, int]]:
    """The functions with the most instructions of their own (callgrind_annotate's list)."""
    listing = subprocess.run(["callgrind_annotate", "--threshold=99", str(dump)], capture_output=True,
                             text=True, timeout=300).stdout
    rows = []
    for line in listing.splitlines():
        found = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(\S.*)$", line)
        if found and "PROGRAM TOTALS" not in line:
            name = found.group(2).split(" [")[0].rsplit(":", 1)[-1]
            rows.append((name, int(found.group(1).replace(",", ""))))
    return rows[:limit]


def measure(setup: str, extra: list[str], upstream: int, args: argparse.Namespace, tmp: Path, env: dict) -> dict:
    port = free_port()
    out = tmp / f"callgrind.{setup}"
    # Started once plainly first, so Numba's cache holds the compiled kernels: compiling them
    # under valgrind would take minutes. Numba may still compile them again under valgrind (its
    # cache is keyed by the CPU's features, which valgrind's emulated CPU may not share), hence
    # the long wait for the port.
    with running(proxy_command(upstream, port, *extra), port, env=env, cwd=ROOT):
        pass
    with running(under_callgrind(proxy_command(upstream, port, *extra), out, args.caches), port, 900, env=env,
                 cwd=ROOT) as server:
        pid = server.pid
        warm = send(port, raw_requests(args.shoppers * 3, args.shoppers, 1, port))
        callgrind_control("-i", "on", str(pid))
        measured = send(port, raw_requests(args.requests, args.shoppers, 3, port))
        callgrind_control("-d", str(pid))
        callgrind_control("-i", "off", str(pid))
    dumps = sorted(tmp.glob(f"callgrind.{setup}.*"), key=lambda p: int(p.suffix[1:]))
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for {setup}")
    counted = totals(dumps[0])
    result: dict = {"instructions_per_request": round(counted["Ir"] / args.requests), "statuses_warm_up": warm,
                    "statuses_measured": measured}
    if args.cache_sim:
        result["misses_per_request"] = {MISSES[name]: round(counted[name] / args.requests, 1)
                                        for name in MISSES if name in counted}
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(dumps[0], args.keep / f"callgrind.{setup}")
    if args.top:
        result["top_functions_per_request"] = {name: round(count / args.requests)
                                               for name, count in top_functions(dumps[0], args.top)}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shoppers", type=int, default=2000, help="distinct shoppers (default 2000)")
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per setup (default 3000)")
    parser.add_argument("--top", type=int, default=0, help="also list the N functions with most instructions")
    parser.add_argument("--keep", type=Path, help="copy the callgrind dumps to this directory")
    parser.add_argument("--cache-sim", action="store_true",
                        help=f"also count simulated cache misses (L1 data {D1_CACHE}, last level {LL_CACHE})")
    parser.add_argument("--host-caches", action="store_true",
                        help="with --cache-sim: simulate this machine's own L1 data cache and L2 instead")
    args = parser.parse_args()
    args.caches = None
    if args.cache_sim:
        args.caches = (cache_geometry("L1d"), cache_geometry("L2")) if args.host_caches else (D1_CACHE, LL_CACHE)
        if None in args.caches:
            print("proxy_instructions: this machine's cache sizes are not in sysfs; drop --host-caches",
                  file=sys.stderr)
            return 2
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("proxy_instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    results: dict = {}
    with tempfile.TemporaryDirectory() as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        (tmp / "upstream_app.py").write_text(UPSTREAM_APP)
        env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}"}
        upstream = free_port()
        stack.enter_context(running([sys.executable, "-m", "uvicorn", "upstream_app:app", "--port", str(upstream),
                                     "--log-level", "warning", "--no-access-log", "--lifespan", "off"],
                                    upstream, env=env, cwd=tmp))
        results["bare"] = measure("bare", list(BARE), upstream, args, tmp, env)
        results["proxy"] = measure("proxy", list(PROXY), upstream, args, tmp, env)
    bare, proxy = results["bare"]["instructions_per_request"], results["proxy"]["instructions_per_request"]
    print(json.dumps({
        "benchmark": "proxy_instructions",
        "question": "user-space instructions per forwarded request, bare forwarder vs proxy (monitor mode)",
        "shoppers": args.shoppers, "requests": args.requests, "connections": CONNECTIONS,
        "machine": machine(),
        **({"simulated_caches": {"l1_data": args.caches[0], "last_level": args.caches[1]}} if args.caches else {}),
        "results": results,
        "added_instructions_per_request": proxy - bare,
        "ratio_if_instructions_were_time": round(bare / proxy, 3),
        **({"added_misses_per_request": {
            name: round(results["proxy"]["misses_per_request"][name] - results["bare"]["misses_per_request"][name], 1)
            for name in results["proxy"]["misses_per_request"]}} if args.cache_sim else {}),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
