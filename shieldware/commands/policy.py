"""`shieldware check-policy FILE`: validate a policy file and say exactly what is wrong."""

from __future__ import annotations

import argparse
import sys

from shieldware.policy import PolicyError, default_policy_text, load_policy
from shieldware.store import shown_uri


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("check-policy", help="validate a policy file",
                            description="Validate a policy file; print every problem with file, field and "
                            "what was expected. Exit 0 when valid, 1 when not.")
    parser.add_argument("file", nargs="?", help="the policy YAML file (omit with --print-default)")
    parser.add_argument("--print-default", action="store_true", help="print the shipped default policy")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.print_default:
        sys.stdout.write(default_policy_text())
        return 0
    if not args.file:
        print("check-policy: give a policy file, or --print-default", file=sys.stderr)
        return 2
    try:
        policy = load_policy(args.file)
    except PolicyError as exc:
        print(f"{args.file}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {exc.source}: {problem}", file=sys.stderr)
        return 1
    groups = ", ".join(g.name for g in policy.groups)
    print(f"{args.file}: valid ({policy.mode} mode; groups: {groups}; {len(policy.rules)} rule(s); "
          f"store {shown_uri(policy.store_uri)})")
    return 0
