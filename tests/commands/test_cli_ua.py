"""`shieldware ua`: arguments and stdin in, one JSON object a line out."""

from __future__ import annotations

import json
import subprocess
import sys

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36"
)


def run_cli(*args, stdin=""):
    done = subprocess.run(
        [sys.executable, "-m", "shieldware.cli", "ua", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_arguments_are_classified_in_order():
    rows = run_cli(CHROME, "curl/8.4.0")
    assert [(r["user_agent"], r["is_bot"], r["category"]) for r in rows] == [
        (CHROME, False, "browser"),
        ("curl/8.4.0", True, "http-library"),
    ]
    assert (
        rows[0]["browser"] == "chrome"
        and rows[0]["browser_version"] == 120
        and rows[0]["device"] == "desktop"
    )
    assert set(rows[0]) >= {"is_bot", "category", "name", "browser", "browser_version", "os", "device"}


def test_dash_reads_one_user_agent_a_line_from_stdin_including_blank_and_odd_lines():
    rows = run_cli("-", stdin=f"{CHROME}\n\nGPTBot/1.2\r\n\u00ff\u2603 weird\n")
    assert [r["user_agent"] for r in rows] == [CHROME, "", "GPTBot/1.2", "\u00ff\u2603 weird"]
    assert rows[1]["category"] == "unknown" and rows[2]["category"] == "ai-crawler"
