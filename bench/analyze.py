"""Bench: lines/s of `shieldware analyze` (full detection) vs `goaccess` on the same combined log, and memory.

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
rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall_s": wall, "peak_rss_mb": rss_kb / 1024, "returncode": done.returncode,
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
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool; the best is reported")
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

    def best(command: list[str]) -> dict:
        return min((measure(command, env) for _ in range(args.repeat)), key=lambda r: r["wall_s"])

    ours = best(shieldware_command(log, workdir))
    ours_big = best(shieldware_command(big, workdir))
    report: dict = {
        "question": "lines/s of shieldware analyze (full detection) vs goaccess on the same combined log",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "log": {"lines": args.lines, "bytes": log.stat().st_size},
        "shieldware": {
            "seconds": round(ours["wall_s"], 2),
            "lines_per_s": round(args.lines / ours["wall_s"]),
            "peak_rss_mb": round(ours["peak_rss_mb"], 1),
        },
        "shieldware_first_run_with_jit_s": round(warm["wall_s"], 2),
        "memory_growth": {
            "lines": [args.lines, args.lines * args.growth],
            "peak_rss_mb": [round(ours["peak_rss_mb"], 1), round(ours_big["peak_rss_mb"], 1)],
            "lines_per_s": [
                round(args.lines / ours["wall_s"]),
                round(args.lines * args.growth / ours_big["wall_s"]),
            ],
            "rss_ratio": round(ours_big["peak_rss_mb"] / ours["peak_rss_mb"], 2),
        },
    }
    goaccess = shutil.which("goaccess")
    if goaccess is None:
        report["goaccess"] = "not installed (apt-get install goaccess)"
    else:
        theirs = best(goaccess_command(goaccess, log, workdir))
        report["goaccess"] = {
            "seconds": round(theirs["wall_s"], 2),
            "lines_per_s": round(args.lines / theirs["wall_s"]),
            "peak_rss_mb": round(theirs["peak_rss_mb"], 1),
        }
        report["speedup_vs_goaccess"] = round(theirs["wall_s"] / ours["wall_s"], 2)
        report["goal"] = "speedup_vs_goaccess >= 2"
    print(json.dumps(report, indent=2))
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
