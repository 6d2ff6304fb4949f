"""`shieldware analyze` end to end: files, .gz, stdin; terminal summary; JSON, CSV and blocklists."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from shieldware.analyze.export import write_blocklist
from shieldware.analyze.pipeline import analyze_sources
from shieldware.policy import policy_from_mapping
from tests.analyze.conftest import LOGS

GOLDEN = LOGS / "production.combined.log"
EXPECTED = json.loads((LOGS / "production.expected.json").read_text())
ROLE_IP = {c["role"]: c["ips"][0] for c in EXPECTED["clients"]}


def shieldware(*args, stdin=None):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "shieldware.cli", "analyze", *args],
        input=stdin,
        capture_output=True,
        timeout=300,
        env=env,
        cwd=LOGS.parents[2],
    )


@pytest.fixture(scope="module")
def result():
    return analyze_sources([str(GOLDEN)])


def test_cli_writes_every_output(tmp_path):
    out = {k: tmp_path / f"out.{k}" for k in ("html", "json", "csv")}
    block = tmp_path / "deny.conf"
    run = shieldware(
        str(GOLDEN),
        "--html",
        str(out["html"]),
        "--json",
        str(out["json"]),
        "--csv",
        str(out["csv"]),
        "--blocklist",
        str(block),
        "--blocklist-format",
        "nginx",
    )
    assert run.returncode == 0, run.stderr.decode()
    text = run.stdout.decode()
    for ip in (ROLE_IP["scraper"], ROLE_IP["credential_stuffer"], ROLE_IP["fake_googlebot"]):
        assert ip in text  # the report names the scraper, the stuffing source and the fake crawler
    assert "3 malformed" in text and "this is not a log line" in text
    assert "ato.login_failures" in text and "Top offenders" in text
    assert run.stderr == b""  # no progress bar when stderr is not a terminal
    report = json.loads(out["json"].read_text())
    flagged = {c["ip"]: c for c in report["ips"]}
    assert ROLE_IP["scraper"] in flagged and ROLE_IP["credential_stuffer"] in flagged
    assert all(c["category"] in ("bad-bot", "suspicious") for c in report["ips"])
    stuffer = flagged[ROLE_IP["credential_stuffer"]]
    assert stuffer["reasons"][0]["code"] == "ato.login_failures" and stuffer["reasons"][0]["text"]
    assert report["malformed"] == 3 and report["lines"] == EXPECTED["lines"]
    rows = list(csv.DictReader(out["csv"].open()))
    assert {r["level"] for r in rows} == {"ip", "ip+ua"}
    assert any(r["ip"] == ROLE_IP["scraper"] and "behav.enumeration" in r["reasons"] for r in rows)
    deny = block.read_text()
    assert f"deny {ROLE_IP['credential_stuffer']};" in deny and f"deny {ROLE_IP['scraper']};" in deny
    assert "deny 86." not in deny  # no person
    html = out["html"].read_text()
    assert html.startswith("<!doctype html>")
    assert "Googlebot — verified" in html and "Googlebot — fake" in html and "bingbot — verified" in html


def test_stdin_and_gzip_give_the_same_report(tmp_path):
    packed = tmp_path / "access.log.gz"
    packed.write_bytes(gzip.compress(GOLDEN.read_bytes()))
    from_gz = shieldware(str(packed), "--quiet", "--json", str(tmp_path / "gz.json"))
    from_stdin = shieldware("-", "--quiet", "--json", str(tmp_path / "stdin.json"), stdin=GOLDEN.read_bytes())
    assert from_gz.returncode == 0 and from_stdin.returncode == 0, (from_gz.stderr, from_stdin.stderr)
    gz, stdin = (json.loads((tmp_path / n).read_text()) for n in ("gz.json", "stdin.json"))
    assert [c["ip"] for c in gz["ips"]] == [c["ip"] for c in stdin["ips"]]
    assert gz["lines"] == stdin["lines"] == EXPECTED["lines"]


def test_a_gzip_that_breaks_off_keeps_what_came_before_and_says_so(tmp_path):
    """A rotation or copy cut short leaves a .gz without its end: the lines before the break are
    analysed, the sources after it too, and the report says which file broke and how."""
    packed = gzip.compress(GOLDEN.read_bytes())
    cut = tmp_path / "access.log.1.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    corrupt = tmp_path / "access.log.2.gz"
    corrupt.write_bytes(packed[:4000] + bytes(b ^ 0x5A for b in packed[4000:8000]) + packed[8000:])
    run = shieldware(str(cut), str(corrupt), str(GOLDEN), "--quiet", "--json", str(tmp_path / "report.json"),
                     "--html", str(tmp_path / "report.html"))
    assert run.returncode == 0, run.stderr
    warnings = run.stderr.decode().splitlines()
    assert len(warnings) == 2 and all("the lines before the break were analysed" in w for w in warnings)
    assert "access.log.1.gz: the compressed data is damaged (Compressed file ended" in warnings[0]
    assert "access.log.2.gz: the compressed data is damaged" in warnings[1]
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["damaged_sources"]) == 2
    assert (tmp_path / "report.html").read_text().count("Warning: ") == 2
    # the half before the cut was read (all but the last line it broke off in), and the golden log whole
    before_cut = analyze_sources([str(cut)]).stats
    assert EXPECTED["lines"] // 3 < before_cut.lines < EXPECTED["lines"] and before_cut.malformed <= 4
    assert report["lines"] > EXPECTED["lines"] + before_cut.lines
    assert ROLE_IP["scraper"] in {ip["ip"] for ip in report["ips"]}


def test_unreadable_inputs_fail_with_a_clear_message(tmp_path):
    junk = tmp_path / "junk.log"
    junk.write_text("hello\nworld\n")
    run = shieldware(str(junk))
    assert run.returncode == 2 and b"cannot tell the log format" in run.stderr
    run = shieldware(str(tmp_path / "missing.log"))
    assert run.returncode == 2 and b"cannot read" in run.stderr
    run = shieldware(str(GOLDEN), "--format", "$remote_addr $status")
    assert run.returncode == 2 and b"needs $remote_addr" in run.stderr


def test_policy_blocklist_loads_as_a_policy(result, tmp_path):
    path = tmp_path / "rules.yaml"
    count = write_blocklist(result, path, "policy")
    doc = yaml.safe_load(path.read_text())
    policy = policy_from_mapping({"version": 1, **doc}, str(path))
    rule = policy.rules[0]
    assert rule.action == "block" and count == len(doc["rules"][0]["when"]["ip"])
    assert {ROLE_IP["scraper"], ROLE_IP["credential_stuffer"]} <= set(doc["rules"][0]["when"]["ip"])


def test_ipset_and_plain_blocklists(result, tmp_path):
    write_blocklist(result, tmp_path / "set", "ipset")
    lines = (tmp_path / "set").read_text().splitlines()
    assert "create shieldware-bots hash:ip family inet -exist" in lines
    assert f"add shieldware-bots {ROLE_IP['scraper']} -exist" in lines
    count = write_blocklist(result, tmp_path / "plain", "plain", include_suspicious=True)
    plain = (tmp_path / "plain").read_text().split()
    assert len(plain) == count and ROLE_IP["credential_stuffer"] in plain
    assert all(f.category != "verified-bot" for f in result.ips if f.ip in plain)


def test_progress_bar_with_lines_per_second_on_a_terminal():
    script = shutil.which("script")
    if script is None:
        pytest.skip("util-linux `script` is not installed: no pseudo-terminal to run the CLI in")
    command = f"{sys.executable} -m shieldware.cli analyze {GOLDEN} > /dev/null"
    run = subprocess.run(
        [script, "-qc", command, "/dev/null"],
        capture_output=True,
        timeout=300,
        cwd=LOGS.parents[2],
        env={**os.environ, "TERM": "xterm"},
    )
    shown = run.stdout.decode(errors="replace")
    assert run.returncode == 0, shown[-2000:]
    assert "analysing" in shown and "lines/s" in shown and f"{EXPECTED['lines']:,} lines" in shown
