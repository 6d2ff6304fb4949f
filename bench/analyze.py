"""Bench: lines/s of `shieldware analyze` (full detection) vs `goaccess` on the same combined log, and memory.

Both tools are single-threaded. The machine is shared, so wall time swings with other load:
each tool runs `--repeat` times, interleaved, and the report gives wall and CPU time (user +
system) of the best run; the speedup is computed on CPU time (what each tool costs) and on
wall time.

Generates production-like combined logs with tests/fixtures/logs/make_logs.py (1M lines, and a
3x larger one to show that peak memory stays flat as the input grows: the analyzer streams), then
runs each tool as its own process, measuring wall time and peak RSS. Prints one JSON document.

    python bench/analyze.py                  # 1,000,000 and 3,000,000 lines
    python bench/analyze.py --lines 200000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "tests" / "fixtures" / "logs" / "make_logs.py"

# Runs a command in a fresh process and reports its wall time and peak RSS (children only).
MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mb": usage.ru_maxrss / 1024, "returncode": done.returncode,
                  "stderr": done.stderr.decode(errors="replace")[-500:]}))
"""


def measure(command: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, env=env, check=True)
    result = json.loads(out.stdout)
    if result["returncode"] != 0:
        raise SystemExit(f"{command[0]} failed: {result['stderr']}")
    return result


def make_log(path: Path, lines: int) -> None:
    if path.exists():
        return
    subprocess.run([sys.executable, str(GENERATOR), "--bench", str(lines), str(path)], check=True)


def shieldware_command(log: Path, out_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "shieldware.cli",
        "analyze",
        str(log),
        "--quiet",
        "--json",
        str(out_dir / "flagged.json"),
        "--html",
        str(out_dir / "report.html"),
    ]


def goaccess_command(goaccess: str, log: Path, out_dir: Path) -> list[str]:
    return [
        goaccess,
        str(log),
        "--log-format=COMBINED",
        "--no-global-config",
        "--no-progress",
        "-o",
        str(out_dir / "goaccess.json"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument(
        "--growth", type=int, default=3, help="the memory check log is this many times larger"
    )
    parser.add_argument("--workdir", help="keep generated logs here (default: a temporary directory)")
    parser.add_argument(
        "--repeat", type=int, default=2, help="interleaved runs per tool; the best is reported"
    )
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba-cache"))
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="shieldware-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"access-{args.lines}.log"
    big = workdir / f"access-{args.lines * args.growth}.log"
    make_log(log, args.lines)
    make_log(big, args.lines * args.growth)
    # The first run compiles the Numba kernels into the cache; measure it, but not as throughput.
    warm = measure(shieldware_command(GENERATOR.parent / "production.combined.log", workdir), env)

    goaccess = shutil.which("goaccess")
    ours_runs, theirs_runs = [], []
    for _ in range(args.repeat):  # interleaved, so both tools see the same background load
        ours_runs.append(measure(shieldware_command(log, workdir), env))
        if goaccess is not None:
            theirs_runs.append(measure(goaccess_command(goaccess, log, workdir), env))
    ours = min(ours_runs, key=lambda r: r["cpu_s"])
    ours_big = measure(shieldware_command(big, workdir), env)

    def figures(run: dict, lines: int) -> dict:
        return {
            "wall_s": round(run["wall_s"], 2),
            "cpu_s": round(run["cpu_s"], 2),
            "lines_per_s_wall": round(lines / run["wall_s"]),
            "lines_per_s_cpu": round(lines / run["cpu_s"]),
            "peak_rss_mb": round(run["peak_rss_mb"], 1),
        }

    report: dict = {
        "question": "lines/s of shieldware analyze (full detection) vs goaccess on the same combined log",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "log": {"lines": args.lines, "bytes": log.stat().st_size},
        "shieldware": figures(ours, args.lines),
        "shieldware_first_run_with_jit_s": round(warm["wall_s"], 2),
        "memory_growth": {
            "lines": [args.lines, args.lines * args.growth],
            "peak_rss_mb": [round(ours["peak_rss_mb"], 1), round(ours_big["peak_rss_mb"], 1)],
            "lines_per_s_cpu": [
                round(args.lines / ours["cpu_s"]),
                round(args.lines * args.growth / ours_big["cpu_s"]),
            ],
            "rss_ratio": round(ours_big["peak_rss_mb"] / ours["peak_rss_mb"], 2),
        },
    }
    if goaccess is None:
        report["goaccess"] = "not installed (apt-get install goaccess)"
    else:
        theirs = min(theirs_runs, key=lambda r: r["cpu_s"])
        report["goaccess"] = figures(theirs, args.lines)
        report["speedup_vs_goaccess_cpu"] = round(theirs["cpu_s"] / ours["cpu_s"], 2)
        report["speedup_vs_goaccess_wall"] = round(theirs["wall_s"] / ours["wall_s"], 2)
        report["goal"] = "speedup >= 2"
    print(json.dumps(report, indent=2))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
