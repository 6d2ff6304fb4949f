"""The `shieldware` command: one sub-command per job, each defined in its own module.

A feature adds a command by listing its module in COMMAND_MODULES; the module provides
`register(subparsers)` which adds a parser whose `handler(args) -> int` does the work.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "shieldware.commands.demo",
    "shieldware.commands.policy",
    "shieldware.commands.explain",
    "shieldware.commands.ua",
    "shieldware.commands.geoip",
    "shieldware.commands.proxy",
    "shieldware.commands.switches",
    "shieldware.commands.account",
    "shieldware.commands.analyze",
    "shieldware.commands.biometrics",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shieldware",
        description="Anti-crawling and traffic security for online shops.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `shieldware ... | head` closed the pipe: not an error
        return 0


if __name__ == "__main__":
    sys.exit(main())
