"""The bare forwarder with added work before every request: what plain added work costs when served.

    python bench/busy_forwarder.py [--busy-us 5] [--touch-lines 48 --table-mb 64] [--code-kb 16]
                                   [--decision none|lines|python]
                                   --upstream URL --listen HOST:PORT [--trusted-proxy CIDR ...]

Takes `shieldware proxy`'s own options and serves like `shieldware proxy --bare`, except that each
HTTP request first does one or both of:

* `--busy-us`: spins that many µs (a spin, not a sleep). Its code and data fit in a few cache
  lines, so it says what a µs of CPU work costs served time and nothing else: on a loaded
  machine a µs of work added to the proxy's process can cost more than a µs of served time (the
  load generator and the upstream, idle more often, must be woken for more of its writes).
* `--touch-lines N --table-mb M`: reads N random 64-byte lines of an M MB table in one numpy
  gather. With N 0 that is the code of one numpy call and nothing else; with a 1 MB table the
  lines stay in the core's own cache; with a table of tens of MB each is a miss, as a window row
  or a plan of one of thousands of shoppers is for detection. bench/proxy.py --footprint serves
  the three beside the bare forwarder and times the same gathers in-process: work whose code or
  data the forwarder's own evicts between requests costs several times its in-process time.
* `--code-kb K`: runs about K KB of machine code that does little (16 one-line C functions a KB,
  called in a shuffled order: code_run), through ctypes; 0 is the call alone. In a tight loop the
  code stays in the L1 instruction cache; served, the forwarder's own code pushes it out between
  requests, as it does detection's (the lane's C, the window kernel: about 19 KB run a request).
  bench/proxy.py --footprint serves code_none and code_16k and times the same calls in-process.

* `--decision`: hands the forwarder what the middleware hands it, with no detection behind it.
  `none` is the wrapper alone (an async function around the app: the others' baseline); `lines`
  puts the X-Shield-* head lines and the client's address in the scope's state, as the fast lane
  gives them, so the forwarder sends the upstream the proxy's three headers more; `python` makes a
  whole Decision in Python with those lines (about 1.3 µs in process, several times the lane's C).
  bench/proxy.py --plumbing serves the three: what of the proxy's cost is plumbing, not detection.

bench/proxy.py serves these beside the bare forwarder and the proxy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldware.commands.proxy import register, settings_from_args, uvicorn_options

LINE_BYTES = 64
DRAWS = 4096  # rows of precomputed random line offsets, used in turn


def busy_first(app: Any, seconds: float) -> Any:
    """`app` behind a busy wait of `seconds` per HTTP request (a spin, not a sleep: CPU work)."""
    clock = time.perf_counter

    async def spin_then_forward(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            end = clock() + seconds
            while clock() < end:
                pass
        await app(scope, receive, send)

    return spin_then_forward


def line_gather(lines: int, table_mb: float, seed: int = 1) -> Callable[[], int]:
    """A call that reads `lines` random 64-byte lines of a `table_mb` MB table (one numpy gather),
    another draw of lines each time. bench/proxy.py times the same call in-process."""
    import numpy as np

    words_per_line = LINE_BYTES // 8
    n_lines = max(1, int(table_mb * 2**20) // LINE_BYTES)
    table = np.ones(n_lines * words_per_line, dtype=np.int64)  # written: every page is really there
    draws = np.random.default_rng(seed).integers(0, n_lines, size=(DRAWS, lines)) * words_per_line
    turn = 0

    def gather() -> int:
        nonlocal turn
        turn = (turn + 1) % DRAWS
        return int(table.take(draws[turn]).sum())

    return gather


def gather_first(app: Any, gather: Callable[[], int]) -> Any:
    """`app` behind `gather()` per HTTP request (a line gather, or a code run)."""

    async def gather_then_forward(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            gather()
        await app(scope, receive, send)

    return gather_then_forward


# The lane's prefix of the X-Shield-* lines for a shopper, as the proxy sends them; the reference follows.
SHIELD_LINES = b"x-shield-score: 0\r\nx-shield-verdict: allow\r\nx-shield-ref: "


class ShieldLines:
    """The two things the forwarder reads of a decision: the client's address and the head lines."""

    __slots__ = ("client_ip", "header_lines")

    def __init__(self, client_ip: str, header_lines: bytes) -> None:
        self.client_ip, self.header_lines = client_ip, header_lines


def decision_first(app: Any, kind: str) -> Any:
    """`app` behind a wrapper that puts a canned decision of `kind` (none, lines, python) in the
    scope's state, where the middleware puts its own; every request gets a reference of its own."""
    from shieldware.decision import Decision, Verdict

    made = 0

    async def decide_then_forward(scope: dict, receive: Any, send: Any) -> None:
        nonlocal made
        if scope["type"] == "http" and kind != "none":
            made += 1
            ref = f"{made:06x}-bench"
            lines = SHIELD_LINES + ref.encode() + b"\r\n"
            client = scope["client"][0]
            if kind == "lines":
                decision: Any = ShieldLines(client, lines)
            else:
                decision = Decision(ref, Verdict.ALLOW, 0.0, (), "pages", time.time(), client, scope["method"],
                                    scope["path"], "monitor")
                decision.header_lines = lines
            scope["state"]["shield"] = decision
        await app(scope, receive, send)

    return decide_then_forward


CODE_LINE = 64  # each function of code_run's is aligned to a cache line and fits in one


def code_run(kb: float) -> Callable[[], int]:
    """A call that runs about `kb` KB of machine code that does little: kb * 16 small functions,
    one 64-byte cache line each (a shift, an xor, a multiply and an add with constants of their
    own), called one after another in a shuffled order, so that (as for the lane's and the
    kernel's code) the next line run is seldom the next line in memory, which the instruction
    prefetcher would fetch ahead. Compiled here with the system's C compiler."""
    import ctypes
    import random
    import shutil
    import subprocess
    import tempfile

    rng = random.Random(7)
    count = int(kb * 1024 / CODE_LINE)
    source = ["#include <stdint.h>"]
    for index in range(count):
        source.append(f"__attribute__((noinline, aligned({CODE_LINE}))) static uint64_t f{index}(uint64_t x) "
                      f"{{ return (x ^ (x >> {rng.randrange(5, 40)})) * {rng.getrandbits(31) | 1}ULL + "
                      f"{rng.getrandbits(31)}ULL; }}")
    order = list(range(count))
    rng.shuffle(order)
    source += ["uint64_t run(uint64_t x) {", *(f"    x = f{index}(x);" for index in order), "    return x;", "}", ""]
    where = Path(tempfile.mkdtemp(prefix="shieldware-code-"))
    (where / "run.c").write_text("\n".join(source))
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(where / "run.so"), str(where / "run.c")], check=True)
    run = ctypes.CDLL(str(where / "run.so")).run
    shutil.rmtree(where)  # the library stays mapped
    run.argtypes, run.restype = [ctypes.c_uint64], ctypes.c_uint64
    turn = 0

    def call() -> int:
        nonlocal turn
        turn += 1
        return run(turn)

    return call


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from shieldware.proxy.app import ProxyApp

    own = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                  epilog="Every other option is `shieldware proxy`'s (see its --help).")
    own.add_argument("--busy-us", type=float, default=0.0, help="µs of busy wait per request")
    own.add_argument("--touch-lines", type=int, default=0, help="random 64-byte lines read per request")
    own.add_argument("--table-mb", type=float, default=0.0,
                     help="size of the table those lines are read from (0: no gather)")
    own.add_argument("--code-kb", type=float, default=None,
                     help="KB of machine code run per request (0: an empty function's call)")
    own.add_argument("--decision", choices=("none", "lines", "python"),
                     help="a canned decision per request: the wrapper alone, the X-Shield-* lines, or a whole Decision")
    known, rest = own.parse_known_args(argv)
    proxy = argparse.ArgumentParser(prog="busy_forwarder")
    register(proxy.add_subparsers())
    args = proxy.parse_args(["proxy", "--bare", *rest])
    app = ProxyApp(settings_from_args(args))
    if known.table_mb > 0:
        app.front = gather_first(app.front, line_gather(known.touch_lines, known.table_mb))
    if known.code_kb is not None:
        app.front = gather_first(app.front, code_run(known.code_kb))
    if known.decision is not None:
        app.front = decision_first(app.front, known.decision)
    if known.busy_us > 0:
        app.front = busy_first(app.front, known.busy_us / 1e6)
    host, port = args.listen
    settings = app.settings
    options = uvicorn_options(host, port, args.shutdown_timeout, settings)
    uvicorn.run(app, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
