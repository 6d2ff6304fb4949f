"""`shieldware analyze LOG ...`: find the bots in access logs with the live engine, and report them."""

from __future__ import annotations

import argparse
import sys
import time

from shieldware.policy import PolicyError, default_policy, load_policy

EXAMPLES = """\
examples:
  shieldware analyze /var/log/nginx/access.log.1 /var/log/nginx/access.log --html report.html
  zcat access.log.*.gz | shieldware analyze - --json flagged.json
  shieldware analyze access.log --format '$remote_addr - $remote_user [$time_local] "$request" $status \\
      $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for"'
  shieldware analyze access.log --blocklist deny.conf --blocklist-format nginx
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "analyze",
        help="find the bots in access logs",
        description="Replay access logs through the same engine as live traffic (with the log's own "
        "timestamps) and report who is scraping, stuffing credentials or faking crawlers.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "logs", nargs="+", metavar="LOG", help="log files (.gz is fine), or - for standard input"
    )
    parser.add_argument(
        "--format",
        dest="log_format",
        metavar="FORMAT",
        help="combined, common, combined-xff, an nginx log_format string or an Apache LogFormat "
        "string; JSON lines (nginx escape=json, Caddy, shieldware) are recognised by themselves. "
        "Default: detected from the first lines",
    )
    parser.add_argument("--policy", help="policy file (default: the shipped shop policy)")
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        metavar="CIDR",
        default=None,
        help="address of a proxy whose X-Forwarded-For field is believed (repeatable; "
        "default: loopback and private networks)",
    )
    parser.add_argument(
        "--ignore-xff", action="store_true", help="never take the client from X-Forwarded-For"
    )
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    parser.add_argument("--json", metavar="FILE", help="write flagged clients with reasons as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write flagged clients with reasons as CSV")
    parser.add_argument(
        "--all-clients", action="store_true", help="JSON/CSV list every client, not just flagged"
    )
    parser.add_argument("--blocklist", metavar="FILE", help="write the addresses of bad bots to block")
    parser.add_argument("--blocklist-format", choices=("nginx", "ipset", "plain", "policy"), default="plain")
    parser.add_argument(
        "--blocklist-suspicious",
        action="store_true",
        help="also put suspicious (challenge-worthy) addresses in the blocklist",
    )
    parser.add_argument("--top", type=int, default=15, help="rows in the top-N tables (default 15)")
    parser.add_argument("--quiet", action="store_true", help="no terminal summary and no progress bar")
    parser.set_defaults(handler=run)


def _progress_hook(sources: list[str], quiet: bool):
    """A rich progress bar with lines/s when stderr is a terminal; nothing otherwise."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from shieldware.analyze.reader import Source

    sizes = [Source(name).size for name in sources]
    total = 0 if None in sizes else sum(sizes)
    progress = Progress(
        TextColumn("[bold]analysing"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[lines]:,} lines · {task.fields[rate]:,.0f} lines/s"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task("analyse", total=total or None, lines=0, rate=0.0)
    started = time.perf_counter()

    def on_chunk(consumed: int, lines: int) -> None:
        elapsed = max(time.perf_counter() - started, 1e-6)
        progress.update(task, advance=consumed, lines=lines, rate=lines / elapsed)

    return progress, on_chunk


def run(args: argparse.Namespace) -> int:
    from shieldware.analyze.analyzer import DEFAULT_TRUSTED_PROXIES
    from shieldware.analyze.formats import FormatError
    from shieldware.analyze.pipeline import analyze_sources

    try:
        policy = load_policy(args.policy) if args.policy else default_policy()
    except (PolicyError, OSError) as exc:
        print(f"analyze: {exc}", file=sys.stderr)
        return 2
    if args.logs.count("-") > 1:
        print("analyze: standard input (-) can be read only once", file=sys.stderr)
        return 2
    trusted = () if args.ignore_xff else (args.trusted_proxy or DEFAULT_TRUSTED_PROXIES)
    progress, on_chunk = _progress_hook(args.logs, args.quiet)
    try:
        if progress is not None:
            with progress:
                result = analyze_sources(args.logs, args.log_format, policy, trusted, on_chunk=on_chunk)
        else:
            result = analyze_sources(args.logs, args.log_format, policy, trusted)
    except FormatError as exc:
        print(f"analyze: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"analyze: cannot read {exc.filename or 'input'}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return _write_outputs(args, result)


def _write_outputs(args: argparse.Namespace, result) -> int:
    from shieldware.analyze.export import write_blocklist, write_csv, write_json
    from shieldware.analyze.html import write_html
    from shieldware.analyze.summary import print_summary

    if not args.quiet:
        print_summary(result, top=args.top)
    else:  # the summary carries them otherwise
        for damage in result.stats.damaged:
            print(f"analyze: warning: {damage}", file=sys.stderr)
    try:
        if args.html:
            write_html(result, args.html, top=max(args.top, 20))
        if args.json:
            write_json(result, args.json, everyone=args.all_clients)
        if args.csv:
            write_csv(result, args.csv, everyone=args.all_clients)
        if args.blocklist:
            count = write_blocklist(result, args.blocklist, args.blocklist_format, args.blocklist_suspicious)
            if not args.quiet:
                print(f"blocklist: {count} addresses written to {args.blocklist} ({args.blocklist_format})")
    except OSError as exc:
        print(f"analyze: cannot write {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
