"""The bare forwarder with a busy wait before every request: what plain added work costs when served.

    python bench/busy_forwarder.py --busy-us 5 --upstream URL --listen HOST:PORT [--trusted-proxy CIDR ...]

Takes `shieldware proxy`'s own options and serves like `shieldware proxy --bare`, except that each
HTTP request first spins for `--busy-us` µs. bench/proxy.py serves it beside the bare forwarder
and the proxy: on a loaded machine a µs of work added to the proxy's process costs more than a
µs of served time (the load generator and the upstream, idle more often, must be woken for
more of its writes), so this says how much served throughput any per-request cost takes here,
detection's included.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldware.commands.proxy import register, settings_from_args, uvicorn_options


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


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from shieldware.proxy.app import ProxyApp

    own = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                  epilog="Every other option is `shieldware proxy`'s (see its --help).")
    own.add_argument("--busy-us", type=float, required=True, help="µs of busy wait per request")
    known, rest = own.parse_known_args(argv)
    proxy = argparse.ArgumentParser(prog="busy_forwarder")
    register(proxy.add_subparsers())
    args = proxy.parse_args(["proxy", "--bare", *rest])
    app = ProxyApp(settings_from_args(args))
    app.front = busy_first(app.front, known.busy_us / 1e6)
    host, port = args.listen
    settings = app.settings
    options = uvicorn_options(host, port, args.shutdown_timeout, settings)
    uvicorn.run(app, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
