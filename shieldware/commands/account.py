"""`shieldware account NAME`: recent login attempts on an account, for support and investigators."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from shieldware.commands.adminlink import LinkError, add_link_arguments, open_link


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("account", help="recent login attempts on an account",
                            description="Show an account's recent login attempts (time, IP, fingerprint, "
                            "outcome, decision) from the decision log, and its live windows from the store.")
    parser.add_argument("name", help="the account name as the shop's login form takes it")
    parser.add_argument("--json", action="store_true", help="print the raw report")
    add_link_arguments(parser)
    parser.set_defaults(handler=run)


def render(report: dict) -> str:
    lines = [f"Account {report.get('account')}"]
    windows = report.get("windows")
    if windows and "error" not in windows:
        lines.append(f"  last hour: {windows['failures_last_hour']:g} failed logins from {windows['distinct_ips']} "
                     f"IPs, {windows['distinct_fingerprints']} client fingerprints")
    suspect = report.get("takeover_suspected")
    if suspect:
        lines.append(f"  TAKEOVER SUSPECTED: a login succeeded after many failures (ref {suspect.get('ref')}, "
                     f"from {suspect.get('client_ip')})")
    attempts = report.get("attempts") or []
    if not attempts:
        lines.append("  no login attempts in the decision log" + (f" ({report['log']})" if report.get("log") else ""))
    for row in attempts:
        when = dt.datetime.fromtimestamp(float(row.get("time") or 0), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        flag = "  TAKEOVER?" if row.get("takeover_suspected") else ""
        reasons = ",".join(r for r in row.get("reasons") or () if r)
        lines.append(f"  {when}  {row.get('outcome', '?'):<9} {row.get('client_ip', ''):<16} "
                     f"fp={row.get('fingerprint') or '-':<20} verdict={row.get('verdict')} ref={row.get('ref')}"
                     f"{' [' + reasons + ']' if reasons else ''}{flag}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        report = open_link(args, log_only_ok=True).account(args.name)
    except (LinkError, OSError, ValueError) as exc:
        print(f"account: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))
    return 0
