"""One analysis run: read sources chunk by chunk, detect or compile the format, parse, feed, judge."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from shieldware.analyze.analyzer import DEFAULT_TRUSTED_PROXIES, AnalysisResult, LogAnalysis
from shieldware.analyze.behaviour import Thresholds
from shieldware.analyze.columns import parse_chunk
from shieldware.analyze.formats import FormatError, LogLayout, compile_format, detect_format
from shieldware.analyze.reader import CHUNK_BYTES, DamagedInput, Source, read_chunks
from shieldware.policy import Policy, default_policy

ChunkHook = Callable[[int, int], None]  # (bytes consumed, lines parsed so far)


class UnknownFormat(FormatError):
    """No known format fits the start of a source; the message shows a line and how to say the format."""


def layout_for(format_text: str | None, first_chunk: bytes, source: str) -> LogLayout:
    if format_text:
        return compile_format(format_text)
    sample = first_chunk[: 256 * 1024].decode("utf-8", "replace").splitlines()[:64]
    layout = detect_format(sample)
    if layout is None:
        shown = next((line for line in sample if line.strip()), "")[:200]
        raise UnknownFormat(
            f"{source}: cannot tell the log format from its first lines (e.g. {shown!r}); "
            "give it with --format combined|common|combined-xff or an nginx log_format string"
        )
    return layout


def analyze_sources(
    sources: Sequence[str],
    format_text: str | None = None,
    policy: Policy | None = None,
    trusted_proxies: Sequence[str] | None = DEFAULT_TRUSTED_PROXIES,
    thresholds: Thresholds | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    on_chunk: ChunkHook | None = None,
    live_clients: int = 20_000,
    idle_seconds: float = 3600.0,
) -> AnalysisResult:
    """Analyse logs in the order given (rotate-style order: oldest first gives the truest windows)."""
    analysis = LogAnalysis(
        policy or default_policy(),
        trusted_proxies=trusted_proxies,
        thresholds=thresholds,
        live_clients=live_clients,
        idle_seconds=idle_seconds,
    )
    formats_seen: list[str] = []
    for name in sources:
        source = Source(name)
        consumed = 0

        def progress(delta: int) -> None:
            nonlocal consumed
            consumed += delta

        layout: LogLayout | None = None
        try:
            for chunk in read_chunks(source, chunk_bytes, progress):
                if layout is None:
                    layout = layout_for(format_text, chunk, name)
                    formats_seen.append(layout.name)
                analysis.feed(parse_chunk(chunk, layout, analysis.vocab, analysis.stats))
                if on_chunk is not None:
                    on_chunk(consumed, analysis.stats.lines)
                    consumed = 0
        except DamagedInput as exc:  # what came before the break counts; the next sources too
            analysis.stats.damaged.append(str(exc))
        analysis.sources.append(name)
    analysis.format_name = ", ".join(dict.fromkeys(formats_seen)) or "(empty input)"
    return analysis.finish()
