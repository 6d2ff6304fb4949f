"""`shieldware demo`: serve the demo shop behind shieldware on 127.0.0.1:8000 and say what to try."""

from __future__ import annotations

import argparse
import sys

from shieldware.policy import PolicyError, default_policy, load_policy
from shieldware.store import shown_uri

TRY_THIS = """\
shieldware demo shop on http://{host}:{port}/  (policy: {policy}, store: {store})
Decisions are logged to {log}. Try:
  curl -i http://{host}:{port}/product/1                    # a tool: 403 with a reference id
  python -c "import requests; print(requests.get('http://{host}:{port}/product/1').status_code)"
  open http://{host}:{port}/ in your browser                # a person: the shop
  shieldware explain REF --log {log}                        # why REF was blocked
  curl http://{host}:{port}/.shieldware/metrics             # Prometheus metrics
Stop with Ctrl+C.
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="serve the demo shop behind shieldware",
                            description="Serve a small demo shop protected by shieldware (embedded "
                            "in-memory store, no other service needed).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--policy", help="policy file (default: the shipped shop policy)")
    parser.add_argument("--store", help="store URI, overriding the policy's (e.g. redis://127.0.0.1:6379/0)")
    parser.add_argument("--log", default="shieldware-decisions.jsonl", help="decision log file")
    parser.add_argument("--monitor", action="store_true", help="monitor mode: decide and log, block nothing")
    parser.set_defaults(handler=run)


def demo_policy(args: argparse.Namespace):
    overrides = {"decision_log": {"path": args.log, "all": False}}
    if args.monitor:
        overrides["mode"] = "monitor"
    if args.store:
        overrides["store"] = args.store
    if args.policy:
        import yaml

        from shieldware.policy import policy_from_mapping

        policy = load_policy(args.policy)  # validates with the file's own name in errors
        with open(args.policy, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
        raw.setdefault("decision_log", overrides["decision_log"])
        raw.update({k: v for k, v in overrides.items() if k != "decision_log"})
        return policy_from_mapping(raw, policy.source)
    return default_policy(**overrides)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from shieldware.demo import build_demo_app

    try:
        policy = demo_policy(args)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(TRY_THIS.format(host=args.host, port=args.port, policy=args.policy or "default",
                          store=shown_uri(policy.store_uri), log=args.log), flush=True)
    app = build_demo_app(policy=policy)
    # proxy_headers=False: shieldware resolves the client address itself, from trusted proxies only.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, proxy_headers=False)
    return 0
