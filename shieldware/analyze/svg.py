"""Small hand-drawn SVG charts for the HTML report: stacked columns and horizontal bars, no libraries."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round axis ticks from 0 to at least `top` (1, 2, 2.5 or 5 times a power of ten)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return [step * i for i in range(math.ceil(top / step) + 1)]


def short_number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if value >= 1_000:
        return f"{value / 1_000:.1f}k".replace(".0k", "k")
    return f"{value:g}"


def stacked_columns(
    series: dict[str, Sequence[float]],
    colors: dict[str, str],
    x_labels: Callable[[int], str],
    title: str,
    width: int = 920,
    height: int = 280,
    label_every: int | None = None,
) -> str:
    """Columns per bucket, each stacked by series (e.g. requests per time bucket by verdict)."""
    names = [n for n in series if any(series[n])]
    buckets = max((len(v) for v in series.values()), default=0)
    left, right, top_pad, bottom = 56, 12, 12, 40
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    totals = [sum(series[n][i] for n in names if i < len(series[n])) for i in range(buckets)]
    ticks = nice_ticks(max(totals, default=0) or 1)
    y_max = ticks[-1]
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for tick in ticks:
        y = top_pad + plot_h - plot_h * tick / y_max
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{short_number(tick)}</text>'
        )
    if buckets:
        step = plot_w / buckets
        bar = max(step * 0.85, 1.0)
        every = label_every or max(1, buckets // 8)
        for i in range(buckets):
            x = left + i * step
            base = top_pad + plot_h
            for name in names:
                value = series[name][i] if i < len(series[name]) else 0
                if value <= 0:
                    continue
                h = plot_h * value / y_max
                base -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                    f'fill="{colors[name]}"><title>{escape(name)}: {value:g}</title></rect>'
                )
            if i % every == 0:
                parts.append(
                    f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 16}" class="axis" '
                    f'text-anchor="middle">{escape(x_labels(i))}</text>'
                )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{top_pad + plot_h}" y2="{top_pad + plot_h}" '
        'class="baseline"/></svg>'
    )
    return "".join(parts)


def horizontal_bars(
    rows: Sequence[tuple[str, float, str, str]], title: str, width: int = 920, label_width: int = 300
) -> str:
    """One bar per row: (label, value, colour, note shown after the bar)."""
    row_h, top_pad = 24, 6
    height = top_pad * 2 + row_h * max(len(rows), 1)
    plot_w = width - label_width - min(190, width // 4)
    top = max((v for _, v, _, _ in rows), default=0) or 1
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    if not rows:
        parts.append(f'<text x="10" y="{top_pad + 16}" class="axis">nothing to show</text>')
    for i, (label, value, color, note) in enumerate(rows):
        y = top_pad + i * row_h
        w = max(plot_w * value / top, 1.5)
        shown = label if len(label) <= 44 else label[:43] + "…"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 16}" class="label" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
            f'<rect x="{label_width}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="2" '
            f'fill="{color}"><title>{escape(label)}: {value:g}</title></rect>'
            f'<text x="{label_width + w + 6:.1f}" y="{y + 16}" class="axis">{escape(note)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def legend(colors: dict[str, str], labels: dict[str, str]) -> str:
    items = "".join(
        f'<span class="key"><span class="swatch" style="background:{color}"></span>'
        f"{escape(labels.get(name, name))}</span>"
        for name, color in colors.items()
    )
    return f'<div class="legend">{items}</div>'
