"""`shieldware explain REF`: find a decision in the decision log and say, reason by reason, why."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

from shieldware.decision_log import find_decision
from shieldware.evidence import describe

DEFAULT_LOG_ENV = "SHIELDWARE_DECISION_LOG"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("explain", help="explain a decision by its reference id",
                            description="Look a decision up by the reference id shown on a block or "
                            "challenge page, and explain it reason by reason.")
    parser.add_argument("ref", help="the reference id, e.g. h52t-09bqem")
    parser.add_argument("--log", default=os.environ.get(DEFAULT_LOG_ENV, "shieldware-decisions.jsonl"),
                        help=f"decision log file (default: ${DEFAULT_LOG_ENV} or ./shieldware-decisions.jsonl)")
    parser.add_argument("--json", action="store_true", help="print the raw record")
    parser.set_defaults(handler=run)


def render(record: dict) -> str:
    when = dt.datetime.fromtimestamp(float(record.get("time", 0)), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    action = record.get("action", record.get("verdict"))
    lines = [
        f"Decision {record.get('ref')} at {when}",
        f"  request:  {record.get('method')} {record.get('path')} from {record.get('client_ip')}",
        f"  group:    {record.get('route_group')}",
        f"  verdict:  {record.get('verdict')} (action taken: {action}, mode {record.get('mode')})",
        f"  score:    {record.get('score')} / 100",
    ]
    if record.get("user_agent"):
        lines.append(f"  agent:    {record['user_agent']}")
    if record.get("rule"):
        lines.append(f"  rule:     the policy rule '{record['rule']}' decided it")
    if record.get("retry_after") is not None:
        lines.append(f"  retry:    the client was told to wait {record['retry_after']} s")
    held_from = (record.get("extra") or {}).get("held_from")
    if held_from:
        lines.append(f"  held:     the findings of decision {held_from}, still firing (held for up to the")
        lines.append("            policy's traffic.hold_findings_s): the numbers below are that decision's")
    reasons = record.get("reasons") or []
    lines.append("  reasons:" if reasons else "  reasons:  none (the decision came from policy alone)")
    for reason in reasons:
        weight = reason.get("weight", 0)
        detail = reason.get("detail") or {}
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in detail.items())
        lines.append(f"    {weight:+6.1f}  {reason.get('code')}: {describe(str(reason.get('code')))}")
        if shown:
            lines.append(f"            ({shown})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import shieldware.signals  # noqa: F401  (registers reason descriptions)

    try:
        record = find_decision(args.log, args.ref)
    except OSError as exc:
        print(f"explain: cannot read decision log {args.log}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if record is None:
        print(f"explain: no decision with reference {args.ref!r} in {args.log}", file=sys.stderr)
        return 1
    print(json.dumps(record, indent=2) if args.json else render(record))
    return 0
