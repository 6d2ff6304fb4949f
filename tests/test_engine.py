"""The engine's spine: evidence → score → policy → Decision, with time as an argument."""

from __future__ import annotations

from shieldware.decision import Verdict
from shieldware.decision_log import DecisionLog, find_decision
from shieldware.engine import Engine
from shieldware.evidence import Evidence
from shieldware.facts import facts_from_headers
from shieldware.metrics import Metrics
from shieldware.policy import default_policy, policy_from_text
from shieldware.score import bot_score, ranked
from tests.support import CHROME_NAVIGATION


def test_score_combines_positive_evidence_without_passing_100():
    assert bot_score([]) == 0
    assert bot_score([Evidence("a", 50)]) == 50
    assert bot_score([Evidence("a", 50), Evidence("b", 50)]) == 75
    assert bot_score([Evidence("a", 100), Evidence("b", 90)]) == 100
    assert bot_score([Evidence("a", 60), Evidence("trust", -40)]) == 20
    assert bot_score([Evidence("trust", -40)]) == 0
    assert [e.code for e in ranked([Evidence("s", 5), Evidence("t", -30), Evidence("b", 20)])] == ["t", "b", "s"]


async def test_decision_uses_the_facts_time_and_policy_thresholds():
    engine = Engine(default_policy(), metrics=Metrics())
    facts = facts_from_headers("198.51.100.1", "GET", "/product/9", 1234.5, [("user-agent", "curl/8.1")])
    decision = await engine.decide(facts)
    assert decision.time == 1234.5
    assert decision.verdict is Verdict.BLOCK and decision.route_group == "product"
    assert decision.reason_codes == ("ua.tool",)
    assert decision.reasons[0].detail == {"name": "curl", "category": "http-library"}


async def test_browser_with_library_headers_is_challenged_with_specific_reasons():
    engine = Engine(default_policy(), metrics=Metrics())
    ua = dict(CHROME_NAVIGATION)["user-agent"]
    requests_like = [("user-agent", ua), ("accept-encoding", "gzip, deflate"), ("accept", "*/*"),
                     ("connection", "keep-alive")]
    decision = await engine.decide(facts_from_headers("198.51.100.2", "GET", "/product/3", 0.0, requests_like))
    assert decision.verdict in (Verdict.CHALLENGE, Verdict.BLOCK)
    assert "hdr.browser_missing" in decision.reason_codes
    browser = await engine.decide(facts_from_headers("198.51.100.3", "GET", "/product/3", 0.0, CHROME_NAVIGATION))
    assert browser.verdict is Verdict.ALLOW and browser.bot_score == 0


async def test_weights_are_data_the_policy_can_override():
    engine = Engine(default_policy(weights={"ua.tool": 10}), metrics=Metrics())
    decision = await engine.decide(facts_from_headers("198.51.100.4", "GET", "/product/1", 0.0,
                                                      [("user-agent", "Wget/1.21")]))
    assert decision.bot_score == 10 and decision.verdict is Verdict.ALLOW


async def test_weigh_rules_add_points_and_decisive_rules_name_themselves():
    policy = policy_from_text("""
groups: [{name: browse, paths: ["/*"], challenge_above: 30, block_above: 90}]
rules:
  - {name: suspicious-path, when: {path: "/wp-admin*"}, action: weigh, weight: 35}
  - {name: partner-feed, when: {header: {x-partner-key: "^feed-[0-9]+$"}}, action: allow}
""")
    engine = Engine(policy, metrics=Metrics())
    probe = await engine.decide(facts_from_headers("192.0.2.1", "GET", "/wp-admin/setup.php", 0.0, CHROME_NAVIGATION))
    assert probe.verdict is Verdict.CHALLENGE and probe.bot_score == 35
    partner = await engine.decide(facts_from_headers("192.0.2.1", "GET", "/x", 0.0,
                                                     [("user-agent", "curl/8"), ("x-partner-key", "feed-42")]))
    assert partner.verdict is Verdict.ALLOW and partner.rule == "partner-feed"


async def test_rules_a_category_cannot_match_are_skipped_and_the_rest_keep_their_order():
    policy = policy_from_text("""
groups: [{name: browse, paths: ["/*"], challenge_above: 30, block_above: 90}]
rules:
  - {name: tools-weigh, when: {ua.category: [http-library]}, action: weigh, weight: 10}
  - {name: no-ua-block, when: {ua.category: [unknown, "none"]}, action: block}
  - {name: tools-block, when: {ua.category: [http-library], method: [POST]}, action: block}
  - {name: anyone-on-x, when: {path: "/x"}, action: challenge}
""")
    engine = Engine(policy, metrics=Metrics())
    group = policy.route_table.group_for("GET", "/x")
    rules = engine.plan(group)[2]
    assert [r.name for r in engine.rules_for(group, rules, "browser")] == ["anyone-on-x"]
    libraries = engine.rules_for(group, rules, "http-library")
    assert [r.name for r in libraries] == ["tools-weigh", "tools-block", "anyone-on-x"]
    assert [r.name for r in engine.rules_for(group, rules, None)] == ["no-ua-block", "anyone-on-x"]
    assert engine.rules_for(group, rules, ["not", "hashable"]) == rules
    # Decisions agree: a tool posting is weighed, then blocked by the first decisive rule in order.
    curl = await engine.decide(facts_from_headers("192.0.2.1", "POST", "/x", 0.0, [("user-agent", "curl/8")]))
    assert curl.rule == "tools-block" and "policy.weigh" in [e.code for e in curl.reasons]
    browser = await engine.decide(facts_from_headers("192.0.2.2", "GET", "/x", 0.0, CHROME_NAVIGATION))
    assert browser.rule == "anyone-on-x" and browser.verdict is Verdict.CHALLENGE


async def test_non_allow_decisions_are_logged_and_found_by_reference(tmp_path):
    log_path = tmp_path / "decisions.jsonl"
    engine = Engine(default_policy(), decision_log=DecisionLog(log_path), metrics=Metrics())
    blocked = await engine.decide(facts_from_headers("192.0.2.9", "GET", "/product/1", 10.0,
                                                     [("user-agent", "Scrapy/2.11")]))
    allowed = await engine.decide(facts_from_headers("192.0.2.9", "GET", "/product/1", 11.0, CHROME_NAVIGATION))
    engine.decision_log.close()
    record = find_decision(log_path, blocked.ref)
    assert record["client_ip"] == "192.0.2.9" and record["verdict"] == "block"
    assert record["reasons"][0]["code"] == "ua.tool"
    assert find_decision(log_path, allowed.ref) is None  # allow decisions only when `all: true`


async def test_feedback_reaches_signals_that_learn():
    seen = []

    class Learner:
        name = "learner"

        def inspect(self, facts, inspection):
            pass

        async def feedback(self, engine, decision, now, status, event, fields):
            seen.append((decision.ref, now, status, event, fields))

    engine = Engine(default_policy(), signals=[Learner()], metrics=Metrics())
    decision = await engine.decide(facts_from_headers("192.0.2.1", "POST", "/login", 5.0, CHROME_NAVIGATION))
    await engine.feedback(decision, 6.0, status=401)
    await engine.feedback(decision, 7.0, event="login_failed", fields={"account": "alice"})
    assert seen == [(decision.ref, 6.0, 401, None, {}), (decision.ref, 7.0, None, "login_failed", {"account": "alice"})]
