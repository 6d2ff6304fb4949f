"""`shieldware ua [UA ...]`: classify user agents (or stdin lines with `-`), one JSON object a line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "ua",
        help="classify user-agent strings",
        description="Say what each User-Agent claims to be: browser, OS and device, or "
        "which bot or tool, with its category. Prints one JSON object a line.",
    )
    parser.add_argument(
        "user_agents",
        nargs="*",
        metavar="UA",
        help="user-agent strings; '-' (or none) reads one a line from standard input",
    )
    parser.set_defaults(handler=run)


def _inputs(arguments: Iterable[str], stdin: TextIO) -> Iterator[str]:
    arguments = list(arguments)
    if not arguments:
        arguments = ["-"]
    for argument in arguments:
        if argument == "-":
            for line in stdin:
                yield line.rstrip("\r\n")
        else:
            yield argument


def run(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    from shieldware.signals.useragent import classify_user_agent

    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    for user_agent in _inputs(args.user_agents, stdin):
        record = {"user_agent": user_agent, **classify_user_agent(user_agent).as_dict()}
        stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0
