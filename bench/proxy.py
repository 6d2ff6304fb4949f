"""How much throughput does the proxy keep? wrk against six setups (more with options) in one run, JSON out.

    python bench/proxy.py [--seconds 3] [--rounds 3] [--warm-seconds 1] [--traffic one_client|crowd|both] [--busy-us 5]
                          [--no-minimal] [--footprint] [--plumbing] [--pin] [--redis]
                          [--profile out.raw [--profile-setup NAME]]

Setups (all on loopback, each server a process of its own, one worker each):
  direct   wrk -> upstream
  bare     wrk -> the proxy's forwarder without the middleware (`shieldware proxy --bare`),
           trusting the same edge, so it forwards the same headers (X-Forwarded-For extended)
  proxy    wrk -> `shieldware proxy --monitor` (detection on every request, nothing blocked)
  busy     wrk -> the bare forwarder spinning `--busy-us` µs before each request
           (bench/busy_forwarder.py; 0 leaves it out): what plain added CPU work costs served
  nginx    wrk -> nginx proxy_pass (one worker, keep-alive to the upstream)
  gather_* wrk -> the bare forwarder reading random cache lines of a table before each request
           (`--footprint` only; bench/busy_forwarder.py): gather_none is one numpy call that reads
           no line, gather_l2 reads 48 lines of a 1 MB table, gather_cold 48 of a 64 MB one
  code_*   wrk -> the bare forwarder running C code before each request (`--footprint` only;
           bench/busy_forwarder.py): code_none calls an empty function, code_16k runs 16 KB of
           machine code that does little, about as much code as detection runs a request
  plumb_*  wrk -> the bare forwarder handed a canned decision (`--plumbing` only;
           bench/busy_forwarder.py --decision): plumb_none is the wrapper alone, plumb_lines adds
           the X-Shield-* lines the forwarder sends the upstream, plumb_decision a whole Decision
           made in Python. `plumbing` reports each against the bare forwarder, paired by round
  redis    wrk -> the proxy as `proxy`, but with the Redis store (`--redis` only: a redis-server of
           its own on a free loopback port); redis_2w the same with `--workers 2`. Their CPU per
           request is the proxy's workers'; `store_cpu_us_per_request` is Redis's own
  minimal  wrk -> the goals' reference point, a minimal uvicorn + aiohttp forwarder with no
           detection (`--no-minimal` leaves it out): what the proxy, detection included,
           serves against the plainest forwarder one would write

The upstream is a minimal uvicorn ASGI app answering a 2 KB HTML page: a slow upstream
would hide the proxy's cost. Requests carry Chrome 120 navigation headers in Chrome's order,
in two kinds of traffic (`--traffic`, both by default):
  one_client  one address cycling over 64 product URLs in id order, as fast as it can: a
              flood, which the engine flags on every request (its cost includes the evidence)
  crowd       20,000 shoppers (X-Forwarded-For from a trusted edge on loopback) opening random
              product pages: shoppers, what the goal is about (bench/browser_crowd.lua)
The proxy and the bare forwarder trust 127.0.0.1 as an edge in both, so one set of servers
serves both.
Absolute numbers depend on the machine and on what else runs on it; compare the ratios,
which come from one run. `paired_rounds_proxy_vs_bare_forwarder` divides the proxy's figures by
the bare forwarder's round by round (the two run back to back) and takes the medians: the figures
to read against the goal (by CPU the steadier), since the best rounds' ratio picks each setup's
luckiest round. `--pin` keeps every serving process on CPU 0 and the shared upstream and
wrk on CPU 1 (direct then gets an upstream of its own on CPU 0): each server alone on its core.
Each run reports every CPU's busy share (`cpu_busy`): pinned, a peer CPU near 1.0 caps the setup;
the serving processes' minor page faults and (voluntary, involuntary) context switches a request;
and, for the setups that forward, the shared upstream's CPU a request (`upstream_cpu_us_per_request`).
`--profile FILE` samples the proxy with py-spy during its first run (`--profile-setup redis`: the proxy on Redis).

The busy setup calibrates: here, with wrk and the upstream on the same two cores, a µs of work
added to the serving process costs more than a µs of served time (its peers, idle more often,
are woken for more of its writes). `busy_wait_calibration` says how much, and what busy wait
would cost the bare forwarder as much throughput as detection does. The gather setups
and the code setups (`--footprint`) calibrate the other way: `footprint_calibration` sets the
served time each adds beside what the same call costs in-process, and detection's beside them.
Work whose code and data stay in the core's caches costs served what it costs in-process; work
whose code or data the forwarder's evicts between requests (a numpy call's, detection's) costs
several times more. The code setups ask that of code alone: their data is a few registers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from busy_forwarder import code_run, line_gather  # noqa: E402 - bench/ is on the path when run

from tests.support import CHROME_NAVIGATION  # noqa: E402 - the repository root is added just above

from common import cpu_split, faults_and_switches, machine, own_redis  # noqa: E402 - bench/, as for busy_forwarder

UPSTREAM_APP = '''
PAGE = (b"<!doctype html><html><head><title>Product</title></head><body>" + b"<p>item</p>" * 160
        + b"</body></html>")
HEADERS = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(PAGE)).encode()),
           (b"cache-control", b"private")]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": PAGE})
'''


# The reference the goals were set against: the plainest forwarder, uvicorn in front of an aiohttp
# client session (pooled, keep-alive), hop-by-hop headers dropped, the response streamed. Served
# with uvicorn's defaults (httptools, uvloop).
MINIMAL_FORWARDER_APP = '''
import os
import aiohttp

UPSTREAM = os.environ["BENCH_UPSTREAM"]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer",
              "proxy-authenticate", "proxy-authorization"}
NOT_FORWARDED = HOP_BY_HOP | {"content-length"}  # aiohttp sets the request's own
session = None

async def app(scope, receive, send):
    global session
    if scope["type"] != "http":
        return
    if session is None:
        session = aiohttp.ClientSession(auto_decompress=False)
    headers = []
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")
        if name not in NOT_FORWARDED:
            headers.append((name, raw_value.decode("latin-1")))
    url = UPSTREAM + scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    async with session.request(scope["method"], url, headers=headers, data=body or None,
                               allow_redirects=False) as response:
        await send({"type": "http.response.start", "status": response.status,
                    "headers": [(n.lower().encode(), v.encode()) for n, v in response.headers.items()
                                if n.lower() not in HOP_BY_HOP]})
        async for chunk in response.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {seconds} s")


@contextlib.contextmanager
def running(command: list[str], port: int, start_seconds: float = 60, **popen) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    try:
        wait_for_port(port, process, start_seconds)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def browser_lua(paths: int) -> str:
    """A wrk script that sends Chrome's navigation headers in Chrome's order, cycling over paths."""
    header_lines = "".join(f"{name}: {value}\\r\\n" for name, value in CHROME_NAVIGATION)
    header_lines = header_lines.replace('"', '\\"')
    return textwrap.dedent(f"""
        local requests = {{}}
        local n = 0
        init = function(args)
          for i = 1, {paths} do
            requests[i] = "GET /product/" .. i .. " HTTP/1.1\\r\\nHost: shop.example\\r\\n" ..
              "{header_lines}" .. "\\r\\n"
          end
        end
        request = function()
          n = n % {paths} + 1
          return requests[n]
        end
    """)


def run_wrk(url: str, script: Path, seconds: float, connections: int, cpu: int | None = None) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script), url]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if script.name in run.stderr:
        # wrk prints a broken script's error per thread and then sends plain GETs: never report those.
        raise RuntimeError(f"wrk script {script.name} failed: {run.stderr.strip()[:300]}")
    output = run.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:(.*)", output)
    return {
        "requests_per_second": float(rate.group(1)) if rate else 0.0,
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


def with_children(pid: int) -> list[int]:
    """A process and its direct children (nginx serves from worker processes under its master)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
            return [pid, *(int(child) for child in children.read().split())]
    except OSError:
        return [pid]


def pin(pid: int, cpu: int) -> None:
    """Keep a server (every thread of it and of its direct children) on one CPU."""
    for process in with_children(pid):
        for task in os.listdir(f"/proc/{process}/task"):
            os.sched_setaffinity(int(task), {cpu})


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU time used so far by these processes and their direct children."""
    splits = [cpu_split(pid) for parent in pids for pid in with_children(parent)]
    return sum(user for user, _ in splits), sum(system for _, system in splits)


def kernel_counts(pids: list[int]) -> tuple[int, ...]:
    """Minor page faults, voluntary and involuntary context switches so far, of these processes
    and their direct children."""
    counts = [faults_and_switches(pid) for parent in pids for pid in with_children(parent)]
    return tuple(sum(column) for column in zip(*counts, strict=True)) if counts else (0, 0, 0)


def nginx_conf(tmp: Path, listen: int, upstream: int) -> Path:
    conf = tmp / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""
        worker_processes 1;
        daemon off;
        error_log {tmp}/error.log warn;
        pid {tmp}/nginx.pid;
        events {{ worker_connections 1024; }}
        http {{
            access_log off;
            client_body_temp_path {tmp}/body;
            proxy_temp_path {tmp}/proxy;
            fastcgi_temp_path {tmp}/fastcgi;
            uwsgi_temp_path {tmp}/uwsgi;
            scgi_temp_path {tmp}/scgi;
            upstream shop {{ server 127.0.0.1:{upstream}; keepalive 64; }}
            server {{
                listen 127.0.0.1:{listen};
                location / {{
                    proxy_pass http://shop;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_set_header Host $host;
                    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                }}
            }}
        }}
    """))
    return conf


# The two setups whose ratio is the goal: the same forwarder, configured alike, with and without detection.
EDGE = ("--trusted-proxy", "127.0.0.1/32")
BARE = ("--bare", *EDGE)
PROXY = ("--monitor", *EDGE)
# --pin: every serving process on one CPU, its peers (the shared upstream, wrk) on the other.
SERVING_CPU, PEER_CPU = 0, 1
# --footprint's setups: (lines read per request, table MB). The lines are about as many as the
# plan and window rows one request of a crowd shopper touches.
FOOTPRINT = {"gather_none": (0, 1.0), "gather_l2": (48, 1.0), "gather_cold": (48, 64.0)}
# and its code setups: KB of machine code run per request (busy_forwarder.code_run)
CODE_FOOTPRINT = {"code_none": 0, "code_16k": 16}
# --plumbing's setups: the canned decision each hands the forwarder (busy_forwarder.decision_first)
PLUMBING = {"plumb_none": "none", "plumb_lines": "lines", "plumb_decision": "python"}


def proxy_options(upstream_port: int, port: int, *extra: str) -> list[str]:
    return ["--upstream", f"http://127.0.0.1:{upstream_port}", "--listen", f"127.0.0.1:{port}", *extra]


def proxy_command(upstream_port: int, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "shieldware.cli", "proxy", *proxy_options(upstream_port, port, *extra)]


LANE_OUTCOME = re.compile(r'^shieldware_fast_lane_requests_total\{outcome="(\w+)"\} (\S+)$', re.MULTILINE)


def lane_outcomes(url: str) -> dict[str, float]:
    """How the fast lane has met the requests so far, by outcome (hit: the shopper's plan was known;
    made: a new shopper's plan made from its shape's template; miss, derived, flagged...: see
    the README's Metrics section), from the proxy's own metrics."""
    with urllib.request.urlopen(f"{url}/.shieldware/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {outcome: float(count) for outcome, count in LANE_OUTCOME.findall(text)}


def outcome_shares(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Each outcome's share of the requests between two readings (the shares of a run): a round
    with many first sights ("made") costs more than one of known shoppers."""
    more = {outcome: count - before.get(outcome, 0.0) for outcome, count in after.items()}
    total = sum(more.values())
    return {outcome: round(n / total, 3) for outcome, n in sorted(more.items()) if n > 0} if total else {}


def measure_once(url: str, pids: list[int], script: Path, args: argparse.Namespace, store_pid: int = 0,
                 lane: bool = False, upstream_pid: int = 0) -> dict:
    """One wrk run, plus the CPU seconds the serving processes (and the store's server, if it has
    one, and the upstream they forward to, if given) spent per request during it; `lane`: the setup
    is a shieldware proxy, whose lane's outcomes are read before and after."""
    lane_before = lane_outcomes(url) if lane else None
    upstream_before = sum(cpu_seconds([upstream_pid])) if upstream_pid else 0.0
    user_before, system_before = cpu_seconds(pids)
    kernel_before = kernel_counts(pids)
    store_before = sum(cpu_split(store_pid)) if store_pid else 0.0
    ticks_before = cpu_busy_ticks()
    result = run_wrk(url, script, args.seconds, args.connections, PEER_CPU if args.pin else None)
    ticks_after = cpu_busy_ticks()
    user_after, system_after = cpu_seconds(pids)
    # How busy each CPU was: with --pin, a peer CPU near 1.0 would cap the server under test.
    result["cpu_busy"] = [round((after[0] - before[0]) / max(1, after[1] - before[1]), 3)
                          for before, after in zip(ticks_before, ticks_after, strict=True)]
    requests = result["requests"]
    user, system = user_after - user_before, system_after - system_before
    result["server_cpu_us_per_request"] = round(1e6 * (user + system) / requests, 1) if requests else None
    # Apart: our code and the interpreter (user) or the kernel's socket work (system).
    result["server_user_us_per_request"] = round(1e6 * user / requests, 1) if requests else None
    result["server_system_us_per_request"] = round(1e6 * system / requests, 1) if requests else None
    faults, voluntary, involuntary = (after - before for before, after in
                                      zip(kernel_before, kernel_counts(pids), strict=True))
    result["server_page_faults_per_request"] = round(faults / requests, 3) if requests else None
    result["server_context_switches_per_request"] = (round(voluntary / requests, 3) if requests else None,
                                                     round(involuntary / requests, 3) if requests else None)
    if lane_before is not None:
        result["lane_outcome_shares"] = outcome_shares(lane_before, lane_outcomes(url))
    if upstream_pid and requests:
        result["upstream_cpu_us_per_request"] = round(1e6 * (sum(cpu_seconds([upstream_pid])) - upstream_before)
                                                      / requests, 1)
    if store_pid:
        result["store_cpu_us_per_request"] = (round(1e6 * (sum(cpu_split(store_pid)) - store_before) / requests, 1)
                                              if requests else None)
    return result


def summarise(runs: list[dict]) -> dict:
    rates = sorted(run["requests_per_second"] for run in runs)
    store = _median(runs, "store_cpu_us_per_request")
    return {
        "best_requests_per_second": rates[-1],
        "median_requests_per_second": rates[len(rates) // 2],
        "median_server_cpu_us_per_request": _median(runs, "server_cpu_us_per_request"),
        "median_server_user_us_per_request": _median(runs, "server_user_us_per_request"),
        "median_server_system_us_per_request": _median(runs, "server_system_us_per_request"),
        **({"median_store_cpu_us_per_request": store} if store else {}),
        "median_server_page_faults_per_request": _median(runs, "server_page_faults_per_request", zeros=True),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "runs": runs,
    }


def _median(runs: list[dict], key: str, zeros: bool = False) -> float | None:
    """The median of the runs' `key` (the upper one of an even count), over the runs that measured
    it: a zero is a run that measured nothing (no requests), unless `zeros` says zero is a figure."""
    known = sorted(run[key] for run in runs if run.get(key) is not None and (zeros or run[key]))
    return known[len(known) // 2] if known else None


def ratio(results: dict, top: str, bottom: str, key: str) -> float | None:
    if top not in results or bottom not in results:
        return None
    a, b = results[top][key], results[bottom][key]
    if not a or not b:
        return None
    # For CPU per request, less is better: the ratio is bottom/top so that higher is better everywhere.
    return round(b / a, 3) if "cpu" in key else round(a / b, 3)


def upstream_command(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "upstream_app:app", "--port", str(port),
            "--log-level", "warning", "--no-access-log", "--lifespan", "off"]


def cpu_busy_ticks() -> list[tuple[int, int]]:
    """(busy, all) clock ticks of each CPU so far, from /proc/stat."""
    ticks = []
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            if re.match(r"cpu\d", line):
                values = [int(value) for value in line.split()[1:]]
                idle = values[3] + values[4]  # idle and iowait
                ticks.append((sum(values) - idle, sum(values)))
    return ticks


def redis_setups(stack: contextlib.ExitStack, upstream_port: int, env: dict) -> tuple[dict, int]:
    """A redis-server of our own on a free loopback port (nothing persisted), and the proxy on it
    with one worker and with two: name → (url, pids), and Redis's pid."""
    redis = stack.enter_context(own_redis())
    store = ("--store", f"redis://127.0.0.1:{redis.port}/0")
    found = {}
    for name, workers in (("redis", 1), ("redis_2w", 2)):
        port = free_port()
        server = stack.enter_context(running(proxy_command(upstream_port, port, *PROXY, *store, "--workers",
                                                           str(workers)), port, env=env, cwd=ROOT))
        found[name] = (f"http://127.0.0.1:{port}", [server.pid])  # cpu_seconds() adds the workers
    return found, redis.pid


@contextlib.contextmanager
def setups(tmp: Path, scripts: list[Path], args: argparse.Namespace, nginx: str | None) -> Iterator[dict]:
    """Start every server once; yield name → (url, pids whose CPU counts for that setup). With
    `--redis`, `args.store_pid` is the Redis server's pid; `args.upstream_pid` is the shared upstream's."""
    env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{ROOT}"}
    upstream_port, bare_port, proxy_port, nginx_port = (free_port() for _ in range(4))
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(running(upstream_command(upstream_port), upstream_port, env=env, cwd=tmp))
        args.upstream_pid = up.pid
        bare = stack.enter_context(running(proxy_command(upstream_port, bare_port, *BARE), bare_port,
                                           env=env, cwd=ROOT))
        proxy = stack.enter_context(running(proxy_command(upstream_port, proxy_port, *PROXY), proxy_port,
                                            env=env, cwd=ROOT))
        direct, direct_port = up, upstream_port
        if args.pin:
            # The shared upstream is a peer on the other CPU; direct gets an upstream of its own.
            direct_port = free_port()
            direct = stack.enter_context(running(upstream_command(direct_port), direct_port, env=env, cwd=tmp))
        found = {
            "direct": (f"http://127.0.0.1:{direct_port}", [direct.pid]),
            "bare": (f"http://127.0.0.1:{bare_port}", [bare.pid]),
            "proxy": (f"http://127.0.0.1:{proxy_port}", [proxy.pid]),
        }
        if args.minimal:
            minimal_port = free_port()
            command = [sys.executable, "-m", "uvicorn", "minimal_forwarder:app", "--port", str(minimal_port),
                       "--log-level", "warning", "--no-access-log", "--lifespan", "off"]
            minimal = stack.enter_context(running(command, minimal_port, cwd=tmp,
                                                  env={**env, "BENCH_UPSTREAM": f"http://127.0.0.1:{upstream_port}"}))
            found["minimal"] = (f"http://127.0.0.1:{minimal_port}", [minimal.pid])
        if args.busy_us > 0:
            busy_port = free_port()
            command = [sys.executable, str(ROOT / "bench" / "busy_forwarder.py"), "--busy-us", str(args.busy_us),
                       *proxy_options(upstream_port, busy_port, *EDGE)]
            busy = stack.enter_context(running(command, busy_port, env=env, cwd=ROOT))
            found["busy"] = (f"http://127.0.0.1:{busy_port}", [busy.pid])
        for name, (lines, table_mb) in (FOOTPRINT.items() if args.footprint else ()):
            port = free_port()
            command = [sys.executable, str(ROOT / "bench" / "busy_forwarder.py"), "--touch-lines", str(lines),
                       "--table-mb", str(table_mb), *proxy_options(upstream_port, port, *EDGE)]
            gatherer = stack.enter_context(running(command, port, env=env, cwd=ROOT))
            found[name] = (f"http://127.0.0.1:{port}", [gatherer.pid])
        for name, kb in (CODE_FOOTPRINT.items() if args.footprint else ()):
            port = free_port()
            command = [sys.executable, str(ROOT / "bench" / "busy_forwarder.py"), "--code-kb", str(kb),
                       *proxy_options(upstream_port, port, *EDGE)]
            runner = stack.enter_context(running(command, port, env=env, cwd=ROOT))
            found[name] = (f"http://127.0.0.1:{port}", [runner.pid])
        for name, kind in (PLUMBING.items() if args.plumbing else ()):
            port = free_port()
            command = [sys.executable, str(ROOT / "bench" / "busy_forwarder.py"), "--decision", kind,
                       *proxy_options(upstream_port, port, *EDGE)]
            wrapped = stack.enter_context(running(command, port, env=env, cwd=ROOT))
            found[name] = (f"http://127.0.0.1:{port}", [wrapped.pid])
        if args.redis:
            more, args.store_pid = redis_setups(stack, upstream_port, env)
            found.update(more)
        if nginx:
            conf = nginx_conf(tmp, nginx_port, upstream_port)
            edge = stack.enter_context(running([nginx, "-p", str(tmp), "-c", str(conf), "-e",
                                                str(tmp / "error.log")], nginx_port))
            found["nginx"] = (f"http://127.0.0.1:{nginx_port}", [edge.pid])
        if args.pin:
            pin(up.pid, PEER_CPU)
            for _, pids in found.values():
                pin(pids[0], SERVING_CPU)
        for url, _ in found.values():
            for script in scripts:
                run_wrk(url, script, args.warm_seconds, args.connections, PEER_CPU if args.pin else None)  # warm-up
        yield found


def detection_cost_us() -> dict:
    """CPU cost of detection alone, in-process: for one Chrome request, on the Python path (facts,
    then decide) and in the fast lane (a planned request: one decide() of the lane, its caches hot,
    the best case); and the whole middleware over the served crowd (bench/asgi_costs.py: 20,000
    shoppers, each request another's windows and plan, as in service).

    Best of five timed batches, so other load on the machine inflates it least. Compare it
    with the bare forwarder's server_cpu_us_per_request to see detection's share of the work.
    """
    import asyncio
    import timeit

    from shieldware.engine import Engine
    from shieldware.facts import TrustedProxies, facts_from_scope
    from shieldware.policy import default_policy

    headers = [(b"host", b"shop.example")] + [(n.encode(), v.encode()) for n, v in CHROME_NAVIGATION]
    scope = {"type": "http", "method": "GET", "path": "/product/7", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 50000), "scheme": "http", "http_version": "1.1"}
    engine = Engine(default_policy(mode="monitor"))
    trusted = TrustedProxies()
    loop = asyncio.new_event_loop()

    async def batch(count: int) -> None:
        for _ in range(count):
            await engine.decide(facts_from_scope(scope, 1000.0, trusted, None))

    count = 5000
    loop.run_until_complete(batch(200))
    best = min(timeit.repeat(lambda: loop.run_until_complete(batch(count)), number=1, repeat=5))
    result = {"facts_and_decide_us_per_request": round(best / count * 1e6, 1)}

    from shieldware.middleware import ShieldMiddleware

    async def ok(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def nothing(*args):
        return {"type": "http.request", "body": b"", "more_body": False}

    clock = iter(range(10**9))
    middleware = ShieldMiddleware(ok, policy=default_policy(mode="monitor"), clock=lambda: 1000.0 + next(clock))
    if middleware.lane is not None:
        loop.run_until_complete(middleware(dict(scope), nothing, nothing))  # the request is planned
        middleware.lane.native.arm(float("inf"))
        decide = middleware.lane.native.decide
        moments = iter(range(10**9))
        best = min(timeit.repeat(lambda: [decide(scope, 2000.0 + next(moments)) for _ in range(count)],
                                 number=1, repeat=5))
        result["fast_lane_decide_hot_us_per_request"] = round(best / count * 1e6, 2)
    loop.close()
    import asgi_costs

    crowd = asyncio.run(asgi_costs.measure(20_000, profile=False))
    result["middleware_over_crowd_us_per_request"] = crowd["minimal"]["added_us"]
    return result


TRAFFIC = {"one_client": None, "crowd": ROOT / "bench" / "browser_crowd.lua"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one wrk run (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--warm-seconds", type=float, default=1.0,
                        help="each setup's warm-up (default 1). The crowd replays the same shoppers in the same "
                             "order every run, so a warm-up longer than a round leaves the rounds no first sights")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--paths", type=int, default=64, help="product URLs the one_client traffic cycles over")
    parser.add_argument("--traffic", choices=[*TRAFFIC, "both"], default="both")
    parser.add_argument("--no-minimal", dest="minimal", action="store_false",
                        help="leave out the minimal uvicorn + aiohttp forwarder")
    parser.add_argument("--busy-us", type=float, default=5.0,
                        help="busy wait of the calibration setup, µs per request (default 5; 0: no such setup)")
    parser.add_argument("--footprint", action="store_true",
                        help="also serve the gather and code setups and report footprint_calibration")
    parser.add_argument("--plumbing", action="store_true",
                        help="also serve the bare forwarder handed canned decisions and report plumbing")
    parser.add_argument("--pin", action="store_true",
                        help="serving processes on CPU 0, the upstream they forward to and wrk on CPU 1")
    parser.add_argument("--redis", action="store_true",
                        help="also serve the proxy on the Redis store, with one worker and with two")
    parser.add_argument("--profile", help="write a py-spy profile (raw) of the proxy here")
    parser.add_argument("--profile-setup", default="proxy",
                        help="the setup --profile samples (default proxy; redis, redis_2w with --redis)")
    args = parser.parse_args()
    args.store_pid = 0
    if shutil.which("wrk") is None:
        print(json.dumps({"error": "wrk is not installed (Debian package wrk)"}))
        return 1
    if args.redis and shutil.which("redis-server") is None:
        print(json.dumps({"error": "--redis needs redis-server (Debian package redis-server)"}))
        return 1
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    kinds = list(TRAFFIC) if args.traffic == "both" else [args.traffic]
    runs: dict[str, dict[str, list[dict]]] = {kind: {} for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "upstream_app.py").write_text(UPSTREAM_APP)
        (tmp / "minimal_forwarder.py").write_text(MINIMAL_FORWARDER_APP)
        one_client = tmp / "browser.lua"
        one_client.write_text(browser_lua(args.paths))
        scripts = {kind: TRAFFIC[kind] or one_client for kind in kinds}
        with setups(tmp, list(scripts.values()), args, nginx) as found:
            for kind, script in scripts.items():
                # Interleaved rounds: a burst of load from someone else on the machine hits every
                # setup alike instead of ruining one of them.
                for round_number in range(args.rounds):
                    for name, (url, pids) in found.items():
                        profiler = None
                        if args.profile and name == args.profile_setup and round_number == 0 and kind == kinds[0]:
                            profiler = start_profiler(pids[0], args)
                        store_pid = args.store_pid if name.startswith("redis") else 0
                        # One worker's metrics: with two, a reading comes from either.
                        lane = name in ("proxy", "redis")
                        upstream_pid = args.upstream_pid if name != "direct" else 0  # direct's is its server
                        runs[kind].setdefault(name, []).append(measure_once(url, pids, script, args, store_pid, lane,
                                                                            upstream_pid))
                        if profiler is not None:
                            profiler.wait(timeout=60)
                        rate = runs[kind][name][-1]["requests_per_second"]
                        print(f"{kind} round {round_number + 1} {name:>6}: {rate:.0f} req/s", file=sys.stderr)
    in_process = detection_cost_us()
    if args.footprint:
        in_process["gather_us_per_call"] = gather_cost_us()
    report = {
        "question": "requests/s kept by the shieldware proxy (1 worker, monitor mode, browser-like headers)",
        "seconds_per_run": args.seconds,
        "warm_up_seconds": args.warm_seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        "pinned": args.pin,
        "machine": machine(),
        "traffic": {kind: traffic_report(kind_runs, in_process, args.busy_us) for kind, kind_runs in runs.items()},
        "in_process_detection": in_process,
        "goals": {"proxy_vs_bare_forwarder_at_least": 0.90, "proxy_vs_direct_at_least": 0.40},
        "note": ("one run on a shared 2-core machine: absolute numbers are noisy, compare the ratios. "
                 "server_cpu_us_per_request is the CPU the serving process itself spent per request "
                 "(the upstream's for direct), which contention disturbs less than requests/s."),
    }
    print(json.dumps(report, indent=2))
    return 0


def traffic_report(runs: dict[str, list[dict]], in_process: dict, busy_us: float) -> dict:
    results = {name: summarise(setup_runs) for name, setup_runs in runs.items()}
    best, cpu = "best_requests_per_second", "median_server_cpu_us_per_request"
    bare_cpu = results["bare"][cpu]
    return {
        "results": results,
        "ratios_best_throughput": {
            "proxy_vs_direct": ratio(results, "proxy", "direct", best),
            "bare_forwarder_vs_direct": ratio(results, "bare", "direct", best),
            "proxy_vs_bare_forwarder": ratio(results, "proxy", "bare", best),
            "nginx_vs_direct": ratio(results, "nginx", "direct", best),
            "minimal_forwarder_vs_direct": ratio(results, "minimal", "direct", best),
            "proxy_vs_minimal_forwarder": ratio(results, "proxy", "minimal", best),
            "redis_vs_direct": ratio(results, "redis", "direct", best),
            "redis_vs_proxy": ratio(results, "redis", "proxy", best),
            "redis_2_workers_vs_direct": ratio(results, "redis_2w", "direct", best),
        },
        "ratios_server_cpu_per_request": {
            "proxy_vs_bare_forwarder": ratio(results, "proxy", "bare", cpu),
            "proxy_vs_direct_upstream": ratio(results, "proxy", "direct", cpu),
        },
        "paired_rounds_proxy_vs_bare_forwarder": paired_rounds(runs, "proxy", "bare"),
        "added_server_cpu_us_per_request": (round(results["proxy"][cpu] - bare_cpu, 1)
                                            if bare_cpu and results["proxy"][cpu] else None),
        "python_path_share_of_bare_forwarder_cpu": (
            round(in_process["facts_and_decide_us_per_request"] / bare_cpu, 3) if bare_cpu else None),
        "middleware_over_crowd_share_of_bare_forwarder_cpu": (
            round(in_process["middleware_over_crowd_us_per_request"] / bare_cpu, 3) if bare_cpu else None),
        "busy_wait_calibration": busy_wait_calibration(results, busy_us),
        "footprint_calibration": footprint_calibration(results, in_process),
        "plumbing": plumbing(runs, results),
    }


def plumbing(runs: dict[str, list[dict]], results: dict) -> dict | None:
    """Each --plumbing setup, and the proxy, against the bare forwarder round by round, with the
    serving process's user CPU and the upstream's CPU a request: what of the proxy's cost is
    handing the forwarder a decision and the upstream three headers more, and what is detection."""
    if any(name not in runs for name in PLUMBING):
        return None
    rows = {}
    for name in ("bare", *PLUMBING, "proxy"):
        paired = paired_rounds(runs, name, "bare")
        rows[name] = {
            "paired_requests_per_second_vs_bare_forwarder": paired["median_requests_per_second"],
            "paired_cpu_per_request_vs_bare_forwarder": paired["median_cpu_per_request"],
            "median_server_user_us_per_request": results[name]["median_server_user_us_per_request"],
            "median_upstream_cpu_us_per_request": _median(runs[name], "upstream_cpu_us_per_request"),
        }
    return rows


def paired_rounds(runs: dict[str, list[dict]], top: str, bottom: str) -> dict | None:
    """`top` over `bottom` within each round (the two ran one after the other, so a burst of load
    from elsewhere on the machine hits both alike), by requests/s and by CPU per request, and the
    medians of those per-round ratios: steadier than the best rounds' ratio, which takes each
    setup's luckiest round, or than comparing medians taken apart."""
    if top not in runs or bottom not in runs:
        return None
    served, cpu = [], []
    for high, low in zip(runs[top], runs[bottom], strict=True):
        if high["requests_per_second"] and low["requests_per_second"]:
            served.append(round(high["requests_per_second"] / low["requests_per_second"], 3))
        if high.get("server_cpu_us_per_request") and low.get("server_cpu_us_per_request"):
            cpu.append(round(low["server_cpu_us_per_request"] / high["server_cpu_us_per_request"], 3))
    return {"requests_per_second": served, "cpu_per_request": cpu,
            "median_requests_per_second": round(statistics.median(served), 3) if served else None,
            "median_cpu_per_request": round(statistics.median(cpu), 3) if cpu else None}


def busy_wait_calibration(results: dict, busy_us: float) -> dict | None:
    """What `busy_us` µs of plain work per request cost the bare forwarder in served time, and how
    many µs of such work would cost it what detection costs (a straight line through the two
    points: served time grows a little faster than that as the peers idle more)."""
    if "busy" not in results:
        return None
    best = "best_requests_per_second"
    served_us = {name: 1e6 / results[name][best] for name in ("bare", "busy", "proxy")}
    lost_per_busy_us = (served_us["busy"] - served_us["bare"]) / busy_us
    cpu = "median_server_cpu_us_per_request"
    return {
        "busy_us": busy_us,
        "busy_vs_bare_forwarder": ratio(results, "busy", "bare", best),
        "served_us_per_request": {name: round(value, 1) for name, value in served_us.items()},
        "served_us_lost_per_busy_us": round(lost_per_busy_us, 2),
        "busy_added_server_cpu_us_per_request": round(results["busy"][cpu] - results["bare"][cpu], 1),
        "detection_costs_as_much_as_busy_us": (round((served_us["proxy"] - served_us["bare"]) / lost_per_busy_us, 1)
                                               if lost_per_busy_us > 0 else None),
    }


def gather_cost_us() -> dict[str, float]:
    """In-process µs of each gather and code setup's call, best of five batches (its table cached as
    well as a tight loop keeps it: the cold table's lines still miss, its code does not; the code
    setups' code stays in the L1 instruction cache)."""
    import timeit

    costs = {}
    calls = {name: line_gather(lines, table_mb) for name, (lines, table_mb) in FOOTPRINT.items()}
    calls.update({name: code_run(kb) for name, kb in CODE_FOOTPRINT.items()})
    for name, gather in calls.items():
        count = 20_000
        best = min(timeit.repeat(gather, number=count, repeat=5))
        costs[name] = round(best / count * 1e6, 2)
    return costs


def footprint_calibration(results: dict, in_process: dict) -> dict | None:
    """Served µs each gather and code setup adds to the bare forwarder's, beside its in-process µs; and
    detection's two, as the proxy adds them (in-process: the middleware over the crowd)."""
    costs = in_process.get("gather_us_per_call")
    if not costs or any(name not in results for name in (*FOOTPRINT, *CODE_FOOTPRINT)):
        return None
    best = "best_requests_per_second"
    bare_us = 1e6 / results["bare"][best]
    rows = {name: (1e6 / results[name][best] - bare_us, costs[name]) for name in (*FOOTPRINT, *CODE_FOOTPRINT)}
    rows["detection"] = (1e6 / results["proxy"][best] - bare_us, in_process["middleware_over_crowd_us_per_request"])
    return {name: {"served_us_added": round(served, 1), "in_process_us": round(alone, 2),
                   "served_per_in_process_us": round(served / alone, 1) if alone > 0 else None}
            for name, (served, alone) in rows.items()}


def start_profiler(pid: int, args: argparse.Namespace) -> subprocess.Popen:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", args.profile,
         "--duration", str(max(1, round(args.seconds))), "--rate", "250", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
