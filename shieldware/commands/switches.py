"""`shieldware under-attack | allow | deny`: incident switches every shieldware process follows."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from shieldware.commands.adminlink import LinkError, add_link_arguments, open_link
from shieldware.switches import TARGETS


def register(sub: argparse._SubParsersAction) -> None:
    attack = sub.add_parser("under-attack", help="switch a route group's under-attack mode (challenge everyone)",
                            description="Switch 'under attack' on or off for a route group: while on, every "
                            "request to it is challenged. Switches live in the store, so every process follows.")
    attack.add_argument("state", choices=("on", "off", "status"))
    attack.add_argument("--group", default="login", help="route group (default: login)")
    attack.add_argument("--for", dest="duration", default="1h", help="how long, e.g. 30m, 2h, forever (default 1h)")
    attack.add_argument("--reason", default="", help="why, for the decision log")
    add_link_arguments(attack)
    attack.set_defaults(handler=run_under_attack)
    for list_name, verb in (("allow", "always allow"), ("deny", "always block")):
        parser = sub.add_parser(list_name, help=f"{verb} an IP/CIDR, account or fingerprint; list; remove",
                                description=f"{list_name} TARGET VALUE [--for 24h] [--reason TEXT] adds an entry; "
                                f"`{list_name} list` shows entries; `{list_name} remove TARGET VALUE` deletes one. "
                                f"TARGET is one of {', '.join(TARGETS)}. Changes are recorded in the decision log.")
        parser.add_argument("what", choices=(*TARGETS, "list", "remove"))
        parser.add_argument("rest", nargs="*", help="VALUE, or TARGET VALUE after `remove`")
        parser.add_argument("--for", dest="duration", default=None, help="expiry, e.g. 24h, 7d (default: never)")
        parser.add_argument("--reason", default="", help="why, e.g. a ticket number")
        parser.add_argument("--json", action="store_true", help="print JSON")
        add_link_arguments(parser)
        parser.set_defaults(handler=run_list, list_name=list_name)


def _when(value: float | None) -> str:
    if value is None:
        return "never"
    return dt.datetime.fromtimestamp(float(value), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def run_under_attack(args: argparse.Namespace) -> int:
    try:
        link = open_link(args)
        if args.state == "status":
            attacks = link.state()["under_attack"]
            if not attacks:
                print("no route group is under attack")
            for group, switch in sorted(attacks.items()):
                how = "automatically" if switch.get("auto") else f"by {switch.get('by')}"
                print(f"{group}: under attack since {_when(switch.get('since'))} ({how}), until "
                      f"{_when(switch.get('until'))}: {switch.get('reason') or 'no reason given'}")
            return 0
        record = link.under_attack(args.group, args.state == "on", args.duration, args.reason)
    except (LinkError, ValueError) as exc:
        print(f"under-attack: {exc}", file=sys.stderr)
        return 2
    if args.state == "on":
        print(f"{args.group}: under attack until {_when(record.get('until'))}")
    else:
        print(f"{args.group}: under-attack switched off" + ("" if record.get("was_on") else " (it was not on)"))
    return 0


def run_list(args: argparse.Namespace) -> int:
    try:
        link = open_link(args)
        if args.what == "list":
            entries = [e for e in link.state()["entries"] if e.get("list") == args.list_name]
            if args.json:
                print(json.dumps(entries, indent=2))
            elif not entries:
                print(f"the {args.list_name} list is empty")
            for e in entries:
                print(f"{e['target']:<12} {e['value']:<40} until {_when(e.get('until'))}  "
                      f"{e.get('reason') or ''} ({e.get('by')})")
            return 0
        if args.what == "remove":
            if len(args.rest) != 2 or args.rest[0] not in TARGETS:
                print(f"{args.list_name} remove: expected TARGET VALUE with TARGET one of {', '.join(TARGETS)}",
                      file=sys.stderr)
                return 2
            result = link.change_list(args.list_name, args.rest[0], args.rest[1], None, "", remove=True)
            print("removed" if result.get("removed") else "no such entry")
            return 0 if result.get("removed") else 1
        if len(args.rest) != 1:
            print(f"{args.list_name} {args.what}: expected exactly one VALUE", file=sys.stderr)
            return 2
        entry = link.change_list(args.list_name, args.what, args.rest[0], args.duration, args.reason, remove=False)
    except (LinkError, ValueError) as exc:
        print(f"{args.list_name}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(entry) if args.json else
          f"{args.list_name} {entry['target']} {entry['value']} until {_when(entry.get('until'))}")
    return 0
