"""Log formats: compilation, detection, the Numba scanner against a regex reading, and the JSON readers."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re

import numpy as np
import pytest

from shieldware.analyze.columns import ParseStats, Vocabulary, parse_chunk
from shieldware.analyze.formats import Field, FormatError, JsonLayout, compile_format, detect_format
from shieldware.analyze.reader import MAX_LINE_BYTES, Source, read_chunks
from tests.analyze.conftest import LOGS

COMBINED_RE = re.compile(
    r'(\S+) \S+ \S+ \[([^\]]+)\] "(?:(\S+) ([^ ?"]*)[^"]*|-)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"'
)  # a request of "-" (no request line came) reads as no method and no path


def parse_file(path, layout, chunk_bytes=1 << 16):
    vocab, stats = Vocabulary(), ParseStats()
    rows = []
    for chunk in read_chunks(Source(str(path)), chunk_bytes):
        batch = parse_chunk(chunk, layout, vocab, stats)
        for i in range(len(batch)):
            rows.append(
                (
                    round(float(batch.time[i]), 3),
                    vocab.addr.strings[batch.addr[i]],
                    vocab.xff.strings[batch.xff[i]],
                    vocab.method.strings[batch.method[i]],
                    vocab.path.strings[batch.path[i]],
                    int(batch.status[i]),
                    int(batch.size[i]),
                    vocab.user_agent.strings[batch.user_agent[i]],
                    bool(batch.has_referer[i]),
                )
            )
    return rows, stats


def test_presets_and_custom_formats_compile():
    combined = compile_format("combined")
    assert combined.fields == (
        Field.ADDR,
        Field.IGNORE,
        Field.TIME_LOCAL,
        Field.REQUEST,
        Field.STATUS,
        Field.SIZE,
        Field.REFERER,
        Field.USER_AGENT,
    )
    custom = compile_format(
        '$remote_addr [$time_iso8601] "$request_method $request_uri" $status '
        '"$http_user_agent" xff="$http_x_forwarded_for"'
    )
    assert Field.XFF in custom.fields and Field.TIME_ISO in custom.fields and custom.literals[-1] == b'"'
    apache = compile_format('%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"')
    assert apache.fields == (Field.ADDR, Field.IGNORE, *combined.fields[1:])  # %l is a field of its own


@pytest.mark.parametrize(
    "text, message",
    [
        ('$remote_addr$remote_user [$time_local] "$request"', "nothing between them"),
        ("$remote_addr $status", "needs $remote_addr, a time"),
        ("just words", "no $variables"),
    ],
)
def test_bad_formats_say_what_is_wrong(text, message):
    with pytest.raises(FormatError, match=re.escape(message)):
        compile_format(text)


def test_scanner_agrees_with_a_regex_reading_of_the_golden_log():
    rows, stats = parse_file(LOGS / "production.combined.log", compile_format("combined"))
    expected = []
    for line in (LOGS / "production.combined.log").read_text(encoding="utf-8").splitlines():
        m = COMBINED_RE.fullmatch(line)
        if m is None:
            continue
        ip, stamp, method, path, status, size, referer, ua = m.groups()
        t = dt.datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp()
        expected.append(
            (
                round(t, 3),
                ip,
                "",
                method or "",
                path or "",
                int(status),
                int(size) if size != "-" else 0,
                "" if ua == "-" else ua,
                referer not in ("", "-"),
            )
        )
    assert rows == expected
    assert stats.malformed == 3 and len(stats.samples) == 3
    assert "this is not a log line" in stats.samples


@pytest.mark.parametrize("renderer", ["behind-proxy", "nginx-json", "caddy"])
def test_other_formats_read_the_same_events(make_logs, scenario, tmp_path, renderer):
    events, _ = scenario
    events = events[:800]
    path = tmp_path / "access.log"
    path.write_text("\n".join(make_logs.RENDERERS[renderer](e) for e in events) + "\n")
    layout = detect_format(path.read_text().splitlines()[:64])
    assert layout is not None
    if renderer == "behind-proxy":
        assert layout.name == "combined-xff"
        layout = compile_format(make_logs.XFF_FORMAT)  # the explicit format reads the same
    else:
        assert isinstance(layout, JsonLayout)
    rows, stats = parse_file(path, layout, chunk_bytes=4096)
    assert stats.malformed == 0 and len(rows) == len(events)
    for row, event in zip(rows, events, strict=True):
        time, addr, xff, method, path_, status, size, ua, has_referer = row
        assert abs(time - event.time) < 1.0  # text logs keep whole seconds
        client = xff or addr
        assert (client, method, path_.split("?")[0], status, size, ua, has_referer) == (
            event.ip,
            event.method,
            event.path.split("?")[0],
            event.status,
            event.size,
            event.ua,
            bool(event.referer),
        )


def test_detection_tells_combined_from_common(make_logs, scenario):
    events, _ = scenario
    common = [make_logs.render_common(e) for e in events[:50]]
    combined = [make_logs.render_combined(e) for e in events[:50]]
    assert detect_format(common).name == "common"
    assert detect_format(combined).name == "combined"
    assert detect_format(["no", "log", "here"]) is None


def test_gzip_and_chunk_boundaries_give_the_same_rows(tmp_path):
    raw = (LOGS / "production.combined.log").read_bytes()
    packed = tmp_path / "access.log.gz"
    packed.write_bytes(gzip.compress(raw))
    plain_rows, _ = parse_file(
        LOGS / "production.combined.log", compile_format("combined"), chunk_bytes=1 << 20
    )
    gz_rows, _ = parse_file(packed, compile_format("combined"), chunk_bytes=777)
    assert gz_rows == plain_rows


def test_hostile_lines_are_counted_never_raised(tmp_path):
    lines = [
        '1.2.3.4 - - [20/Nov/2026:09:00:00 +0100] "GET / HTTP/1.1" 200 12 "-" "ok"',
        '1.2.3.4 - - [99/Xyz/2026:09:00:00 +0100] "GET / HTTP/1.1" 200 12 "-" "bad month"',
        '1.2.3.4 - - [20/Nov/2026:09:00:00 +0100] "GET / HTTP/1.1" 2x0 12 "-" "bad status"',
        '1.2.3.4 - - [20/Nov/2026:09:00:00 +0100] "GET / HTTP/1.1" 200 12 "-" "unterminated',
        "x" * 5000,
        '- - - [20/Nov/2026:09:00:00 +0100] "GET / HTTP/1.1" 200 12 "-" "no address"',
        '1.2.3.4 - - [20/Nov/2026:09:00:00 +0100] "\\x16\\x03\\x01" 400 150 "-" "-"',
        "\x00\xff\xfe binary",
    ]
    path = tmp_path / "hostile.log"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
    rows, stats = parse_file(path, compile_format("combined"))
    assert stats.lines == len(lines)
    assert [r[7] for r in rows] == ["ok", ""]
    assert stats.malformed == len(lines) - 2
    assert np.all([len(s) <= 300 for s in stats.samples])


def test_a_line_longer_than_the_limit_is_one_malformed_line_however_many_chunks_it_spans(tmp_path):
    good = '1.2.3.4 - - [20/Nov/2026:09:00:00 +0100] "GET / HTTP/1.1" 200 12 "-" "ok"\n'
    path = tmp_path / "long.log"
    path.write_text(good * 3 + "1.2.3.4 - - [" + "x" * (3 * MAX_LINE_BYTES + 5) + "\n" + good * 2)
    for chunk_bytes in (64 * 1024, MAX_LINE_BYTES + 7, 4 * MAX_LINE_BYTES):
        rows, stats = parse_file(path, compile_format("combined"), chunk_bytes=chunk_bytes)
        assert (stats.lines, stats.malformed, len(rows)) == (6, 1, 5), chunk_bytes


def test_shieldware_decision_log_lines_are_read(tmp_path):
    """The decision log (JSON lines of Decision records) has no status; it is still traffic to analyse."""
    from shieldware.decision import Decision, Verdict

    records = []
    for n in range(20):
        decision = Decision(
            ref=f"ab12-{n:06d}",
            verdict=Verdict.BLOCK,
            bot_score=91.0,
            reasons=(),
            route_group="product",
            time=1_795_161_600.0 + n,
            client_ip="203.0.113.7",
            method="GET",
            path=f"/product/{n}",
            user_agent="python-requests/2.31",
        )
        records.append(json.dumps(decision.as_log_record()))
    path = tmp_path / "decisions.jsonl"
    path.write_text("\n".join(records) + "\n")
    layout = detect_format(records[:5])
    assert isinstance(layout, JsonLayout)
    rows, stats = parse_file(path, layout)
    assert stats.malformed == 0 and len(rows) == 20
    assert rows[3][1] == "203.0.113.7" and rows[3][4] == "/product/3" and rows[3][7] == "python-requests/2.31"


def test_ipv6_and_mapped_addresses_are_normalised(tmp_path):
    from shieldware.analyze.pipeline import analyze_sources

    lines = []
    for n in range(5):
        for addr in ("2A02:8108:0:0::1", "::ffff:203.0.113.9", "203.0.113.9"):
            lines.append(
                f'{addr} - - [20/Nov/2026:09:00:0{n} +0100] "GET /product/{n} HTTP/1.1" 200 5 "-" '
                '"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"'
            )
    path = tmp_path / "v6.log"
    path.write_text("\n".join(lines) + "\n")
    result = analyze_sources([str(path)])
    assert sorted((f.ip, f.requests) for f in result.ips) == [("203.0.113.9", 10), ("2a02:8108::1", 5)]
