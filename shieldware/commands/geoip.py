"""`shieldware geoip build | update | lookup`: build the hosting database, refresh it, look addresses up."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from shieldware.netdb.catalogue import PROVIDERS
from shieldware.netdb.feeds import FeedDownloadError, download_feeds
from shieldware.netdb.lookup import NetworkLookup
from shieldware.netdb.paths import shipped_database, shipped_ranges_dir
from shieldware.netdb.ranges import RangeFeedError, RangeList, read_feeds, write_compact_lists
from shieldware.netdb.readers import NetworkDatabaseError, open_database


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("geoip", help="build, update and query the network (hosting/VPN/GeoIP) databases",
                            description="Build the shipped hosting/VPN/crawler database from range lists, "
                            "refresh it from the upstream feeds, and look addresses up in every configured "
                            "database.")
    geo = parser.add_subparsers(dest="geoip_command", metavar="ACTION")

    build = geo.add_parser("build", help="build the hosting .mmdb from range lists",
                           description="Without --from, rebuild the .mmdb from the compact range lists in "
                           "geoip/ranges. With --from DIR, read provider feeds found in DIR (the upstream "
                           "repositories as cloned, the official JSON files, or compact lists), rewrite the "
                           "compact lists, then build.")
    build.add_argument("--from", dest="source", type=Path, help="a folder of fresher provider feeds")
    _output_options(build)
    build.set_defaults(handler=run_build)

    update = geo.add_parser("update", help="download the official feeds and rebuild (needs internet)")
    update.add_argument("--timeout", type=float, default=20.0, help="seconds per download (default 20)")
    update.add_argument("--keep", type=Path, help="keep the downloaded feeds in this folder")
    _output_options(update)
    update.set_defaults(handler=run_update)

    lookup = geo.add_parser("lookup", help="print what every configured database says about addresses",
                            description="One JSON object per address: the merged answer (country, ASN, "
                            "provider, kind, ...) and each database's own record.")
    lookup.add_argument("ips", nargs="+", metavar="IP")
    lookup.add_argument("--policy", type=Path,
                        help="use this policy's network.databases (default: the shipped policy)")
    lookup.add_argument("--db", type=Path, action="append", default=[],
                        help="look up in this .mmdb instead (repeatable)")
    lookup.set_defaults(handler=run_lookup)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ranges", type=Path, default=None,
                        help="folder of compact range lists to read or write (default: geoip/ranges)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the .mmdb (default: the shipped geoip/shieldware-hosting.mmdb)")


def _fail(message: str) -> int:
    print(f"geoip: {message}", file=sys.stderr)
    return 1


def _build(lists: dict[str, RangeList], args: argparse.Namespace, rewrite_ranges: bool) -> int:
    missing = sorted({p.name for p in PROVIDERS} - {name for name, entry in lists.items() if entry.networks})
    if not any(entry.networks for entry in lists.values()):
        return _fail("no provider ranges found; nothing to build")
    if missing:
        print(f"geoip: note: no ranges for {', '.join(missing)} (they will not be tagged)", file=sys.stderr)
    # Imported here: only building needs mmdb-writer, and `geoip lookup` must work without it.
    from shieldware.netdb.build import build_database

    if rewrite_ranges:
        write_compact_lists(lists.values(), args.ranges or shipped_ranges_dir())
    out = args.out or shipped_database()
    try:
        report = build_database(lists.values(), out)
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc.strerror or exc} (pass --out FILE)")
    print(json.dumps({
        "database": str(report.path), "size_bytes": report.size_bytes, "tagged_ranges": report.tagged_ranges,
        "providers": report.providers,
    }, indent=2))
    return 0


def run_build(args: argparse.Namespace) -> int:
    try:
        if args.source is not None:
            return _build(read_feeds(args.source), args, rewrite_ranges=True)
        return _build(read_feeds(args.ranges or shipped_ranges_dir()), args, rewrite_ranges=False)
    except RangeFeedError as exc:
        return _fail(str(exc))


def run_update(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="shieldware-feeds-") as scratch:
        folder = args.keep or Path(scratch)
        try:
            download_feeds(folder, timeout=args.timeout,
                           progress=lambda url: print(f"geoip: downloading {url}", file=sys.stderr))
            lists = read_feeds(folder)
        except (FeedDownloadError, RangeFeedError) as exc:
            return _fail(str(exc))
        empty = sorted(p.name for p in PROVIDERS if p.name not in lists or not lists[p.name].networks)
        if empty:
            return _fail(f"the downloaded feeds had no ranges for {', '.join(empty)}; a feed changed format? "
                         "Nothing was changed.")
        return _build(lists, args, rewrite_ranges=True)


def run_lookup(args: argparse.Namespace) -> int:
    try:
        if args.db:
            databases = [open_database(path) for path in args.db]
        else:
            from shieldware.policy import PolicyError, default_policy, load_policy
            from shieldware.signals.network import open_configured

            try:
                policy = load_policy(args.policy) if args.policy else default_policy()
            except PolicyError as exc:
                return _fail(str(exc))
            databases = open_configured(policy.section("network"))
    except NetworkDatabaseError as exc:
        return _fail(str(exc))
    lookup = NetworkLookup(databases)
    for ip in args.ips:
        print(json.dumps(lookup.report(ip), ensure_ascii=False, default=str))
    return 0
