"""`shieldware biometrics FILE.json ...`: score telemetry files and say why, for analysts and evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shieldware.biometrics.scoring import Assessment, assess
from shieldware.biometrics.telemetry import MAX_BODY_BYTES, TelemetryError, parse_telemetry
from shieldware.evidence import describe


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "biometrics", help="score browser telemetry files (human-likeness and reasons)",
        description="Score telemetry bodies in the collector's format (docs/telemetry.md): human-likeness "
                    "from 0 (scripted) to 100 (a person), with the reasons.")
    parser.add_argument("files", nargs="+", metavar="FILE.json", help="telemetry bodies (JSON)")
    parser.add_argument("--json", action="store_true", help="one JSON line per file, with every feature")
    parser.set_defaults(handler=run)


def render(name: str, result: Assessment) -> str:
    lines = [f"{name}: human-likeness {result.human_likeness * 100:.0f}/100 "
             f"({result.events} input events)"]
    for code, weight, detail in sorted(result.reasons, key=lambda r: -abs(r[1])):
        shown = ", ".join(f"{k}={v}" for k, v in detail.items())
        lines.append(f"  {weight:+5.1f}  {code}  {shown}")
        lines.append(f"         {describe(code)}")
    if not result.reasons:
        lines.append("  (no reasons: nothing looked scripted)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    failures = 0
    for name in args.files:
        try:
            body = Path(name).read_bytes()
            if len(body) > MAX_BODY_BYTES * 16:
                raise TelemetryError(f"file of {len(body)} bytes is far larger than any telemetry batch")
            result = assess(parse_telemetry(body))
        except (OSError, TelemetryError) as exc:
            failures += 1
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if args.json:
                print(json.dumps({"file": name, "error": message}))
            else:
                print(f"{name}: error: {message}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"file": name, **result.as_dict()}))
        else:
            print(render(name, result))
    return 1 if failures else 0
