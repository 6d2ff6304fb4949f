"""The self-contained HTML report: summary cards, inline SVG charts and tables; no external resources."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from html import escape

from shieldware.analyze.findings import CATEGORIES, AnalysisResult, ClientFinding, network_label
from shieldware.analyze.summary import CATEGORY_LABELS, networks_text
from shieldware.analyze.svg import horizontal_bars, legend, stacked_columns
from shieldware.evidence import describe

COLORS = {
    "human": "#2e7d32",
    "verified-bot": "#00838f",
    "declared-bot": "#5c6bc0",
    "suspicious": "#f9a825",
    "bad-bot": "#c62828",
}
CRAWLER_COLORS = {"verified": "#00838f", "fake": "#c62828", "unverified": "#9e9e9e"}
CRAWLER_CATEGORIES = (
    "search-engine",
    "ai-crawler",
    "ai-assistant",
    "seo",
    "bot",
    "crawler",
    "social-preview",
    "feed-fetcher",
    "monitoring",
)

STYLE = """
:root { --ink:#1d2330; --muted:#5f6b7a; --line:#e3e7ee; --bg:#f6f8fb; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:var(--ink);
       background:var(--bg); }
main { max-width: 1000px; margin: 0 auto; padding: 28px 24px 60px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 0 0 10px; }
.meta { color: var(--muted); margin-bottom: 20px; }
.cards { display: grid; grid-template-columns: repeat(5, 1fr); gap: 10px; margin-bottom: 18px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px;
        border-top: 4px solid var(--c); }
.card .n { font-size: 22px; font-weight: 650; } .card .l { color: var(--muted); font-size: 12px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px;
          margin-bottom: 16px; page-break-inside: avoid; break-inside: avoid; }
.note { color: var(--muted); font-size: 12.5px; margin: 4px 0 8px; }
svg.chart { display: block; font-size: 11px; }
svg .grid { stroke: var(--line); } svg .baseline { stroke: #9aa5b1; }
svg .axis { fill: var(--muted); font-size: 11px; } svg .label { fill: var(--ink); font-size: 12px; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 6px 0 4px; font-size: 12px;
          color: var(--muted); }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 5px;
          vertical-align: -1px; }
table { width: 100%; border-collapse: collapse; font-size: 12.5px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; } td.num, th.num { text-align: right; white-space: nowrap; }
.pill { display: inline-block; padding: 1px 7px; border-radius: 10px; color: #fff; font-size: 11.5px;
        white-space: nowrap; }
.ua { color: var(--muted); font-size: 11.5px; word-break: break-all; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
.reason { display: block; } .reason code { color: var(--ink); }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
@media (max-width: 760px) { .cards { grid-template-columns: repeat(2, 1fr); } .grid2 { display: block; } }
@media print {
  body { background: #fff; } main { padding: 0; max-width: none; }
  section, .card { border-color: #ccc; box-shadow: none; }
  .pill, .swatch, .card, rect { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _when(t: float, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime(fmt) if t else "-"


def _pill(category: str) -> str:
    return (
        f'<span class="pill" style="background:{COLORS[category]}">{escape(CATEGORY_LABELS[category])}</span>'
    )


def _cards(result: AnalysisResult) -> str:
    ips = result.ips_by_category
    total = max(sum(result.requests_by_category.values()), 1)
    cards = []
    for category in CATEGORIES:
        requests = result.requests_by_category.get(category, 0)
        cards.append(
            f'<div class="card" style="--c:{COLORS[category]}"><div class="l">'
            f'{escape(CATEGORY_LABELS[category])}</div><div class="n">{ips.get(category, 0):,} IPs</div>'
            f'<div class="l">{requests:,} requests · {100 * requests / total:.1f} %</div></div>'
        )
    return f'<div class="cards">{"".join(cards)}</div>'


def _timeline(result: AnalysisResult) -> str:
    step = result.timeline_step
    span = step * max((len(v) for v in result.timeline.values()), default=0)
    fmt = "%H:%M" if span <= 2 * 86400 else "%m-%d %H:%M"

    def label(i: int) -> str:
        return _when(result.timeline_start + i * step, fmt)

    chart = stacked_columns(result.timeline, COLORS, label, "Requests over time by verdict of the client")
    minutes = step / 60
    unit = f"{minutes:g} minutes" if minutes < 120 else f"{minutes / 60:g} hours"
    return (
        f"<section><h2>Requests over time, by verdict</h2><p class=note>Each column is {escape(unit)}; "
        f"requests are coloured by the verdict on the client that sent them.</p>"
        f"{legend(COLORS, CATEGORY_LABELS)}{chart}</section>"
    )


def _histogram(result: AnalysisResult) -> str:
    series = {c: list(result.score_histogram.get(c, [0] * 10)) for c in CATEGORIES}
    chart = stacked_columns(
        series,
        COLORS,
        lambda i: f"{i * 10}-{i * 10 + 9 if i < 9 else 100}",
        "Bot score histogram of clients",
        width=460,
        height=240,
        label_every=2,
    )
    return (
        f"<section><h2>Bot score distribution</h2><p class=note>Clients (IP + user agent) per score band; "
        f"0 looks human, 100 is certainly automated.</p>{chart}</section>"
    )


def _offenders(result: AnalysisResult, top: int) -> str:
    rows = [
        (
            f"{f.ip}  ({f.bot_score:.0f})",
            float(f.requests),
            COLORS[f.category],
            f"{f.requests:,} req · {f.reason_codes[0] if f.reason_codes else ''}",
        )
        for f in result.flagged_ips[:top]
    ]
    chart = horizontal_bars(rows, "Top offenders by requests", label_width=230)
    return (
        f"<section><h2>Top offenders</h2><p class=note>Flagged addresses by requests sent (score in "
        f"brackets, strongest reason after the bar).</p>{chart}</section>"
    )


def _networks(result: AnalysisResult, top: int) -> str:
    by_network: Counter[str] = Counter()
    by_country: Counter[str] = Counter()
    for finding in result.flagged_ips:
        label = network_label(finding)
        if label:
            by_network[label] += finding.requests
        country = finding.network.get("country") or finding.network.get("country_code")
        if country:
            by_country[str(country)] += finding.requests
    if not by_network and not by_country:
        categories: Counter[str] = Counter()
        for finding in result.flagged_ips:
            categories[finding.ua_category or "unknown"] += finding.requests
        rows = [(name, float(n), "#78909c", f"{n:,} req") for name, n in categories.most_common(top)]
        return (
            "<section><h2>Networks and countries</h2><p class=note>No network database answered for these "
            "addresses (configure GeoIP/ASN databases to see ASNs and countries). Flagged requests by "
            f"user-agent category instead:</p>{horizontal_bars(rows, 'Flagged requests by UA category')}"
            "</section>"
        )
    net_rows = [(name, float(n), "#6d4c41", f"{n:,} req") for name, n in by_network.most_common(top)]
    country_rows = [(name, float(n), "#455a64", f"{n:,} req") for name, n in by_country.most_common(top)]
    if not country_rows or not net_rows:
        rows, title = (
            (net_rows, "Top networks (ASN or provider)") if net_rows else (country_rows, "Top countries")
        )
        missing = "countries (configure a GeoIP Country/City database)" if net_rows else "ASNs"
        return (
            f"<section><h2>{escape(title)} of flagged clients</h2><p class=note>Requests by flagged "
            f"clients; no database answered for {escape(missing)}.</p>"
            f"{horizontal_bars(rows, title)}</section>"
        )
    return (
        "<section><h2>Top networks and countries of flagged clients</h2><div class=grid2><div>"
        f"{horizontal_bars(net_rows, 'Top networks (ASN or provider)', width=460, label_width=200)}"
        "</div><div>"
        f"{horizontal_bars(country_rows, 'Top countries', width=460, label_width=120)}</div></div></section>"
    )


_CRAWLER_WORD = re.compile(r"([A-Za-z][\w.-]*?(?:bot|crawler|spider|fetcher))\b", re.IGNORECASE)


def crawler_name(finding: ClientFinding) -> str:
    """The crawler's name: the classifier's, or the bot word in its user agent."""
    if finding.ua_name and finding.ua_name.lower() != "mozilla":
        return finding.ua_name
    match = _CRAWLER_WORD.search(finding.user_agent or "")
    return match.group(1) if match else "unnamed crawler"


def crawler_status(finding: ClientFinding) -> str | None:
    codes = finding.reason_codes
    if finding.category == "verified-bot":
        return "verified"
    if any(code.endswith("fake_crawler") for code in codes):
        return "fake"
    if finding.ua_category in CRAWLER_CATEGORIES:
        return "unverified"
    return None


def _crawlers(result: AnalysisResult) -> str:
    counts: dict[str, Counter[str]] = {}
    for finding in result.clients:
        status = crawler_status(finding)
        if status is None:
            continue
        name = crawler_name(finding)
        counts.setdefault(name, Counter())[status] += finding.requests
    rows = []
    for name, by_status in sorted(counts.items(), key=lambda kv: -sum(kv[1].values()))[:12]:
        for status in ("verified", "fake", "unverified"):
            if by_status[status]:
                rows.append(
                    (
                        f"{name} — {status}",
                        float(by_status[status]),
                        CRAWLER_COLORS[status],
                        f"{by_status[status]:,} req",
                    )
                )
    return (
        "<section><h2>Crawlers: verified vs fake</h2><p class=note>Requests from clients that declare "
        "a crawler, "
        "by whether their address belongs to the operator's published ranges.</p>"
        f"{legend(CRAWLER_COLORS, {})}"
        f"{horizontal_bars(rows, 'Verified vs fake crawlers', width=460, label_width=170)}</section>"
    )


def _reasons_cell(finding: ClientFinding) -> str:
    lines = []
    for evidence in finding.reasons[:5]:
        if evidence.weight == 0 and evidence.code.startswith("policy"):
            continue
        lines.append(
            f'<span class="reason" title="{escape(describe(evidence.code))}"><code>{escape(evidence.code)}'
            f"</code> {evidence.weight:+.0f}</span>"
        )
    return "".join(lines) or "-"


def _clients_table(result: AnalysisResult, top: int) -> str:
    rows = []
    for f in result.flagged_ips[:top]:
        agent = f.user_agent or ""
        if f.user_agents > 1:
            agent = f"{f.user_agents} user agents"
        else:
            agent = next((c.user_agent or "" for c in result.clients if c.ip == f.ip), agent)
        paths = ", ".join(p for p, _ in f.top_paths[:3])
        rows.append(
            f"<tr><td><code>{escape(f.ip)}</code><div class=ua>{escape(agent[:160])}</div></td>"
            f"<td>{_pill(f.category)}<div class=ua>{escape(f.verdict)} · {escape(f.route_group)}</div></td>"
            f"<td class=num>{f.bot_score:.0f}</td><td class=num>{f.requests:,}</td>"
            f"<td>{_reasons_cell(f)}<div class=ua>{escape(paths)}</div></td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="5">No client was flagged.</td></tr>'
    return (
        "<section><h2>Flagged clients</h2><table><thead><tr><th>address / user agent</th><th>verdict</th>"
        f'<th class="num">score</th><th class="num">requests</th><th>reasons · top paths</th></tr></thead>'
        f"<tbody>{body}</tbody></table></section>"
    )


def _paths_table(result: AnalysisResult, top: int) -> str:
    rows = (
        "".join(
            f"<tr><td><code>{escape(path)}</code></td><td class=num>{count:,}</td></tr>"
            for path, count in result.bot_paths[:top]
        )
        or '<tr><td colspan="2">-</td></tr>'
    )
    return (
        "<section><h2>Paths most requested by flagged clients</h2><table><thead><tr><th>path</th>"
        f'<th class="num">requests</th></tr></thead><tbody>{rows}</tbody></table></section>'
    )


def _walks(result: AnalysisResult, top: int) -> str:
    if not result.walks:
        return ""
    rows = "".join(
        f"<tr><td class=num>{w['first_id']} → {w['last_id']}</td><td class=num>{w['walk_pages']:,}</td>"
        f"<td class=num>{w.get('addresses', 0):,}</td><td>{_when(w['first_seen'], '%H:%M:%S')} → "
        f"{_when(w['last_seen'], '%H:%M:%S')}</td><td>{escape(networks_text(w))}</td>"
        f"<td>{escape(w['user_agent'] or '-')}</td></tr>"
        for w in result.walks[:top]
    )
    return (
        "<section><h2>Catalogue walks across addresses</h2><p class=note>Product ids fetched in order by one "
        "user agent from address after address: a scraper on rotating proxies, which no single address shows. "
        "Its addresses are listed as suspicious (<code>behav.distributed_walk</code>), not blocked: proxy exits "
        "are shared with people.</p><table><thead><tr><th class=num>product ids</th><th class=num>pages in "
        "order</th><th class=num>addresses</th><th>time</th><th>networks</th><th>user agent</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _malformed(result: AnalysisResult) -> str:
    stats = result.stats
    damaged = "".join(f"<p class=note>Warning: {escape(d)}.</p>" for d in stats.damaged)
    if not stats.malformed:
        return f"<section><h2>Damaged input</h2>{damaged}</section>" if damaged else ""
    samples = "".join(f"<li><code>{escape(s[:200])}</code></li>" for s in stats.samples)
    return (
        f"<section><h2>Malformed lines</h2>{damaged}<p class=note>{stats.malformed:,} of {stats.lines:,} lines "
        "could not "
        f"be read and were skipped. Examples:</p><ul>{samples}</ul></section>"
    )


def render_html(
    result: AnalysisResult, top: int = 20, title: str = "shieldware — access log analysis"
) -> str:
    meta = (
        f"{escape(', '.join(result.sources))} · format {escape(result.format_name)} · "
        f"{result.stats.lines:,} lines · {_when(result.first_time)} → {_when(result.last_time)}"
    )
    body = "".join(
        (
            _cards(result),
            _timeline(result),
            _offenders(result, top),
            _clients_table(result, top),
            '<div class="grid2">',
            _histogram(result),
            _crawlers(result),
            "</div>",
            _networks(result, 10),
            _paths_table(result, 15),
            _walks(result, 10),
            _malformed(result),
        )
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>"
        f"<h1>{escape(title)}</h1><div class=meta>{meta}</div>{body}"
        f'<p class="note">Generated by shieldware analyze. Verdicts use the same engine, policy and signals '
        f"as live traffic, replayed with the log's own timestamps.</p></main></body></html>"
    )


def write_html(result: AnalysisResult, path: str, top: int = 20) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render_html(result, top))
