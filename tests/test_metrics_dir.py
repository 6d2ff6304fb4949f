"""Metrics of several worker processes add up through a shared directory (shieldware.metrics_dir)."""

from __future__ import annotations

import json
import logging
import time

import httpx
import requests
from prometheus_client.parser import text_string_to_metric_families

from shieldware.decision import Decision, Verdict
from shieldware.evidence import Evidence
from shieldware.metrics import Metrics
from tests.proxy_support import UpstreamRecorder, build_upstream, proxy_process
from tests.support import CHROME_NAVIGATION, live_server


def decision(verdict: Verdict = Verdict.ALLOW, group: str = "product", score: float = 10.0) -> Decision:
    return Decision(ref="r", verdict=verdict, bot_score=score, reasons=(Evidence("ua.tool", score),),
                    route_group=group, time=0.0, client_ip="192.0.2.1", method="GET", path="/")


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by name and labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode()) for s in family.samples}


def decisions_total(text: bytes) -> float:
    return sum(v for (name, _), v in samples(text).items() if name == "shieldware_decisions_total")


def test_each_process_scrape_shows_every_process_counts(tmp_path):
    first, second = Metrics(shared_dir=tmp_path), Metrics(shared_dir=tmp_path)
    for _ in range(3):
        first.record_decision(decision())
    second.record_decision(decision(Verdict.BLOCK, score=90.0))
    second.record_latency(0.0002)
    second.count("challenges", outcome="solved")
    second.record_event("login_failed")
    second.shared_dir.flush()  # what its flusher thread does every few seconds

    seen = samples(first.exposition())
    assert seen[("shieldware_decisions_total", (("action", "allow"), ("group", "product"),
                                                 ("verdict", "allow")))] == 3
    assert seen[("shieldware_decisions_total", (("action", "block"), ("group", "product"),
                                                 ("verdict", "block")))] == 1
    assert seen[("shieldware_reasons_total", (("code", "ua.tool"), ("group", "product")))] == 4
    assert seen[("shieldware_bot_score_count", (("group", "product"),))] == 4
    assert seen[("shieldware_bot_score_sum", (("group", "product"),))] == 120.0
    assert seen[("shieldware_bot_score_bucket", (("group", "product"), ("le", "10.0")))] == 3
    assert seen[("shieldware_decision_seconds_count", ())] == 1
    assert seen[("shieldware_challenges_total", (("outcome", "solved"),))] == 1
    assert seen[("shieldware_events_total", (("event", "login_failed"),))] == 1
    # The other process answers a scrape with the same totals, its own counts fresh.
    assert samples(second.exposition()) == seen


def test_scrape_includes_its_own_counts_not_yet_flushed(tmp_path):
    first, second = Metrics(shared_dir=tmp_path), Metrics(shared_dir=tmp_path)
    first.record_decision(decision())
    second.record_decision(decision())
    # first has not flushed since its decision: second sees only what first wrote at start.
    assert decisions_total(second.exposition()) == 1
    assert decisions_total(first.exposition()) == 2  # a scrape writes the answering process's file first
    assert decisions_total(second.exposition()) == 2


def test_a_process_that_ended_keeps_its_counts_in_the_totals(tmp_path):
    survivor, ended = Metrics(shared_dir=tmp_path), Metrics(shared_dir=tmp_path)
    for _ in range(5):
        ended.record_decision(decision())
    ended.shared_dir.flush()
    ended.shared_dir.close()
    del ended
    survivor.record_decision(decision())
    assert decisions_total(survivor.exposition()) == 6  # counters never go down while the service runs


def test_a_broken_or_foreign_snapshot_is_left_out_with_a_warning(tmp_path, caplog):
    metrics = Metrics(shared_dir=tmp_path)
    metrics.record_decision(decision())
    other = Metrics()
    other.record_decision(decision())
    other.observe("challenge_solve_seconds", 0.5, buckets=(1.0, 2.0))
    good = other.snapshot()
    (tmp_path / "1-good.metrics.json").write_text(json.dumps(good))
    (tmp_path / "2-cut.metrics.json").write_text(json.dumps(good)[:40])
    (tmp_path / "3-wrong.metrics.json").write_text(json.dumps({"decisions": [["maybe", "allow", "x", 1]]}))
    other_buckets = dict(good, timings=[["challenge_solve_seconds", [5.0, 9.0], [1, 0, 0], 0.5]])
    (tmp_path / "4-buckets.metrics.json").write_text(json.dumps(other_buckets))
    with caplog.at_level(logging.WARNING, logger="shieldware.metrics"):
        assert decisions_total(metrics.exposition()) == 2  # its own and the good file's
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in ("2-cut", "3-wrong", "4-buckets"):
        assert name in warned
    assert "1-good" not in warned


def test_snapshot_round_trip_keeps_every_counter():
    metrics = Metrics()
    metrics.record_decision(decision(Verdict.CHALLENGE, group="login", score=55.0))
    metrics.record_latency(0.003)
    metrics.count("store_unavailable", during="feedback")
    metrics.observe("challenge_solve_seconds", 1.5, buckets=(1.0, 2.0))
    copy = Metrics.from_snapshot(json.loads(json.dumps(metrics.snapshot())))
    assert copy.exposition() == metrics.exposition()


def test_proxy_workers_answer_every_scrape_with_the_whole_proxy_totals(tmp_path):
    requests_sent = 24
    # TMPDIR: the proxy makes its metrics directory there, so the test can see it come and go.
    with live_server(build_upstream(UpstreamRecorder())) as upstream, \
            proxy_process("--upstream", upstream.url, "--workers", "2", "--monitor",
                          env={"TMPDIR": str(tmp_path)}) as proxy:
        made = list(tmp_path.glob("shieldware-metrics-*"))
        for n in range(requests_sent):
            # A connection each (no client kept): the kernel hands them to either worker.
            assert httpx.get(proxy.url + f"/page/{n}", headers=CHROME_NAVIGATION, timeout=10).status_code == 200
        totals = []
        deadline = time.monotonic() + 30  # the other worker's file is at most a flush old
        while time.monotonic() < deadline:
            totals.append(decisions_total(requests.get(proxy.url + "/.shieldware/metrics", timeout=10).content))
            if totals[-1] == requests_sent and len(totals) > 1 and totals[-2] == requests_sent:
                break
            time.sleep(0.5)
        files = list(made[0].glob("*.metrics.json")) if made else []
        # Every later scrape, whichever worker answers it, shows the same totals.
        later = [decisions_total(requests.get(proxy.url + "/.shieldware/metrics", timeout=10).content)
                 for _ in range(8)]
    assert totals[-1] == requests_sent, totals
    assert later == [requests_sent] * 8, later
    assert len(made) == 1 and len(files) == 2, (made, files)
    assert totals == sorted(totals)  # counters never went down between scrapes
    assert not made[0].exists()  # removed when the proxy stopped
