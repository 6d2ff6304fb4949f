"""Shared benchmark plumbing: start servers on loopback, run wrk (or a Python fallback), print JSON."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


class Served(NamedTuple):
    port: int
    pid: int


_CACHE_KIND = {"Data": "d", "Instruction": "i"}  # L1d, L1i; unified levels go without a letter


def machine() -> dict:
    """What the numbers were measured on: the CPU as the VM reports it, its caches, the kernel and
    Python. Served ratios differ from one host CPU to another (the same code has kept 0.8 of the
    bare forwarder on one and 0.95 on another), so every throughput report says which it ran on."""
    cpu: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
        for line in info:
            name, _, value = line.partition(":")
            name = name.strip()
            if not name:
                break  # the first CPU's block is enough: the VM's CPUs are alike
            if name in ("model name", "cpu family", "model", "stepping", "microcode"):
                cpu[name.replace(" ", "_")] = value.strip()
    caches = {}
    for name, folder in _cache_folders().items():
        with contextlib.suppress(OSError):
            caches[name] = (folder / "size").read_text().strip()
    return {"cpu": cpu, "cpus": os.cpu_count(), "caches": caches, "kernel": os.uname().release,
            "python": sys.version.split()[0],
            # Two more things hosts differ in that move served figures: what the clock costs
            # (a tsc clock is read without a system call) and the kernel's Spectre v2 mitigation.
            "clocksource": _sysfs("devices/system/clocksource/clocksource0/current_clocksource"),
            "spectre_v2": _sysfs("devices/system/cpu/vulnerabilities/spectre_v2")}


def _sysfs(path: str) -> str | None:
    with contextlib.suppress(OSError):
        return (Path("/sys") / path).read_text().strip()
    return None


def _cache_folders() -> dict[str, Path]:
    """The first CPU's caches by name ("L1d", "L1i", "L2", "L3"), each with its sysfs folder."""
    folders = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        with contextlib.suppress(OSError):
            level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
            folders[f"L{level}{_CACHE_KIND.get(kind, '')}"] = index
    return folders


def cache_geometry(name: str) -> str | None:
    """This machine's cache `name` ("L1d", "L1i", "L2", "L3") as valgrind's --D1/--I1/--LL take it:
    "bytes,ways,line"; None when sysfs does not say."""
    folder = _cache_folders().get(name)
    if folder is None:
        return None
    with contextlib.suppress(OSError, ValueError):
        sets, ways, line = (int((folder / field).read_text())
                            for field in ("number_of_sets", "ways_of_associativity", "coherency_line_size"))
        return f"{sets * ways * line},{ways},{line}"
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc; clock ticks → seconds)."""
    user, system = cpu_split(pid)
    return user + system


def faults_and_switches(pid: int) -> tuple[int, int, int]:
    """Minor page faults, voluntary and involuntary context switches of a process so far (from
    /proc): kernel work a change can add without adding CPU time of its own."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        minor = int(stat.read().rsplit(")", 1)[1].split()[7])
    switches = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                switches[name] = int(value)
    return minor, switches.get("voluntary_ctxt_switches", 0), switches.get("nonvoluntary_ctxt_switches", 0)


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time a process has used so far, apart (where a cost lands: our code or
    the kernel's socket work)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


@contextlib.contextmanager
def uvicorn_server(factory: str, env: dict | None = None, workers: int = 1) -> Iterator[Served]:
    """Serve `bench/apps.py:<factory>` with uvicorn on a free loopback port in a subprocess."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", f"apps:{factory}", "--factory", "--app-dir", str(BENCH_DIR),
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
           "--no-proxy-headers",
           "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    try:
        wait_for_port(port)
        yield Served(port, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_TOTAL = re.compile(r"(\d+) requests in")


def wrk(url: str, seconds: int = 8, connections: int = 32, script: Path | None = None) -> dict:
    """Run wrk with one thread (the server gets the other core) and parse its summary."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    run = subprocess.run([*cmd, url], capture_output=True, text=True, check=True, timeout=seconds + 60)
    if script and str(script.name) in run.stderr:
        # wrk prints a broken script's error per thread and then sends plain GETs: never report those.
        raise RuntimeError(f"wrk script {script.name} failed: {run.stderr.strip()[:300]}")
    out = run.stdout
    non2xx = _NON2XX.search(out)
    return {
        "requests_per_s": float(_RPS.search(out).group(1)),
        "requests": int(_TOTAL.search(out).group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


@contextlib.contextmanager
def own_redis(prefix: str = "sw-bench-redis-") -> Iterator[Served]:
    """A redis-server of the benchmark's own on a free loopback port, persisting nothing, stopped
    and its directory removed at the end."""
    import tempfile

    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield Served(port, redis.pid)
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def emit(result: dict) -> None:
    print(json.dumps({**result, "machine": machine()}, indent=2))


async def print_profile(title: str, awaitable, top: int = 30) -> None:
    """Await `awaitable` under cProfile and print its `top` functions by own time to stderr."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    await awaitable
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    print(f"== {title}\n{out.getvalue()}", file=sys.stderr)
