"""The HTML report in real headless Chromium: no console errors, no outside requests, charts drawn."""

from __future__ import annotations

import os
import shutil

import pytest

from shieldware.analyze.html import write_html
from shieldware.analyze.pipeline import analyze_sources
from tests.analyze.conftest import LOGS
from tests.support import CHROMIUM, CHROMIUM_ARGS

ARGS = CHROMIUM_ARGS

pytestmark = pytest.mark.chromium


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/setup.sh installs it)")
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_html(analyze_sources([str(LOGS / "production.combined.log")]), str(path))
    return path


def test_report_renders_its_charts_without_errors(report, tmp_path):
    from playwright.sync_api import sync_playwright

    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri())
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        charts = page.eval_on_selector_all(
            "svg.chart",
            "els => els.map(e => ({label: e.getAttribute('aria-label'), "
            "marks: e.querySelectorAll('rect').length, w: e.getBoundingClientRect().width, "
            "h: e.getBoundingClientRect().height}))",
        )
        text = page.inner_text("body")
        page.emulate_media(media="print")
        pdf_ready = page.evaluate("() => document.querySelectorAll('section').length")
        browser.close()
    assert errors == []
    assert requests == [report.as_uri()]  # self-contained: nothing else is fetched
    labels = {c["label"]: c for c in charts}
    for wanted in (
        "Requests over time by verdict of the client",
        "Bot score histogram of clients",
        "Top offenders by requests",
        "Verified vs fake crawlers",
        "Top networks (ASN or provider)",
    ):
        chart = labels[wanted]
        assert chart["marks"] > 0 and chart["w"] > 100 and chart["h"] > 50, chart
    assert labels["Requests over time by verdict of the client"]["marks"] >= 50
    assert "ato.login_failures" in text and "behav.enumeration" in text
    assert pdf_ready >= 6
    assert shot.stat().st_size > 50_000  # a full-page screenshot with drawn charts, not a blank page
