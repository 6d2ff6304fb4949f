"""The terminal summary of an analysis: totals, top offenders with reasons, networks, paths (rich tables)."""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shieldware.analyze.findings import CATEGORIES, AnalysisResult, ClientFinding, network_label

CATEGORY_LABELS = {
    "human": "human",
    "verified-bot": "verified bot",
    "declared-bot": "declared bot (allowed)",
    "suspicious": "suspicious",
    "bad-bot": "bad bot",
}
CATEGORY_STYLES = {
    "human": "green",
    "verified-bot": "cyan",
    "declared-bot": "blue",
    "suspicious": "yellow",
    "bad-bot": "bold red",
}


def when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if t else "-"


def reasons_text(finding: ClientFinding, limit: int = 4) -> str:
    shown = [e.code for e in finding.reasons if e.weight != 0][:limit]
    return ", ".join(shown) or "-"


def totals_table(result: AnalysisResult) -> Table:
    table = Table(title="Clients and requests by verdict", title_justify="left")
    table.add_column("category")
    table.add_column("IPs", justify="right")
    table.add_column("IP + UA clients", justify="right")
    table.add_column("requests", justify="right")
    table.add_column("share", justify="right")
    ip_counts = result.ips_by_category
    client_counts = result.clients_by_category
    total = max(sum(result.requests_by_category.values()), 1)
    for category in CATEGORIES:
        requests = result.requests_by_category.get(category, 0)
        table.add_row(
            f"[{CATEGORY_STYLES[category]}]{CATEGORY_LABELS[category]}[/]",
            f"{ip_counts.get(category, 0):,}",
            f"{client_counts.get(category, 0):,}",
            f"{requests:,}",
            f"{100 * requests / total:.1f} %",
        )
    return table


def offenders_table(result: AnalysisResult, top: int) -> Table:
    table = Table(title=f"Top offenders (flagged IPs, worst first, up to {top})", title_justify="left")
    for name, justify in (
        ("ip", "left"),
        ("category", "left"),
        ("verdict", "left"),
        ("score", "right"),
        ("requests", "right"),
        ("user agent", "left"),
        ("reasons", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold")
    for finding in result.flagged_ips[:top]:
        agent = finding.ua_name or (finding.user_agent or "")
        if finding.user_agents > 1:
            agent = f"{finding.user_agents} user agents"
        table.add_row(
            finding.ip,
            f"[{CATEGORY_STYLES[finding.category]}]{CATEGORY_LABELS[finding.category]}[/]",
            finding.verdict,
            f"{finding.bot_score:.0f}",
            f"{finding.requests:,}",
            agent[:40],
            reasons_text(finding),
        )
    return table


def networks_table(result: AnalysisResult, top: int) -> Table | None:
    counts: Counter[str] = Counter()
    for finding in result.flagged_ips:
        label = network_label(finding)
        if label:
            counts[label] += finding.requests
    if not counts:
        return None
    table = Table(title="Top networks of flagged clients", title_justify="left")
    table.add_column("network (ASN / provider)")
    table.add_column("requests", justify="right")
    for label, requests in counts.most_common(top):
        table.add_row(label, f"{requests:,}")
    return table


def paths_table(result: AnalysisResult, top: int) -> Table:
    table = Table(title="Paths most requested by flagged clients", title_justify="left")
    table.add_column("path", overflow="fold")
    table.add_column("requests", justify="right")
    for path, count in result.bot_paths[:top]:
        table.add_row(path, f"{count:,}")
    return table


def networks_text(walk: dict) -> str:
    return ", ".join(f"{n['network']} ({n['clients']})" for n in walk.get("networks", ())) or "-"


def walks_table(result: AnalysisResult, top: int) -> Table:
    table = Table(title="Catalogue walks across addresses (one user agent, product ids in order)",
                  title_justify="left")
    for name, justify in (("product ids", "left"), ("pages", "right"), ("addresses", "right"),
                          ("from", "left"), ("to", "left"), ("networks", "left"), ("user agent", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for walk in result.walks[:top]:
        table.add_row(f"{walk['first_id']} to {walk['last_id']}", f"{walk['walk_pages']:,}",
                      f"{walk.get('addresses', 0):,}", when(walk["first_seen"]), when(walk["last_seen"]),
                      escape(networks_text(walk)), escape(walk["user_agent"] or "-"))
    return table


def print_summary(result: AnalysisResult, console: Console | None = None, top: int = 15) -> None:
    # Off a terminal rich would wrap at 80 columns; reports piped to a file read better wide.
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    stats = result.stats
    console.print(f"[bold]shieldware analyze[/]: {', '.join(result.sources)}  (format: {result.format_name})")
    console.print(
        f"{stats.lines:,} lines, {stats.malformed:,} malformed, "
        f"from {when(result.first_time)} to {when(result.last_time)}"
    )
    for damage in stats.damaged:
        console.print(f"[yellow]warning: {escape(damage)}[/]")
    if stats.samples:
        console.print("[yellow]malformed lines were skipped; for example:[/]")
        for sample in stats.samples[:3]:
            console.print(f"  {sample[:160]!r}", markup=False, highlight=False)
    console.print(totals_table(result))
    if result.flagged_ips:
        console.print(offenders_table(result, top))
        networks = networks_table(result, top)
        if networks is not None:
            console.print(networks)
        console.print(paths_table(result, top))
        if result.walks:
            console.print(walks_table(result, top))
    else:
        console.print("[green]No client was flagged.[/]")
