"""The outcome feed: the shop's statuses and X-Shield-Event headers read back from an edge's log,
for forward auth.

The line forms (nginx's `REF STATUS "EVENT"`, Traefik's and Caddy's JSON) and the clear refusal of
any other; the decisions waiting for their line (once each, bounded in age and number); a growing
log followed through appends, half-written lines, logrotate's rename and copytruncate; and the
whole feed into a real engine: 404s through forward auth become probing evidence on the next
check, a 401 from the login route becomes a failed login in the decision log, and the accounts the
shop's events name show one address trying many.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import pytest

from shieldware import Engine
from shieldware.facts import facts_from_headers
from shieldware.policy import default_policy
from shieldware.proxy.outcome_feed import (
    MAX_LINE_BYTES,
    AwaitingOutcomes,
    GrowingFile,
    OutcomeFeed,
    OutcomeLineError,
    parse_outcome,
)
from tests.support import CHROME_NAVIGATION

NOW = 1_800_000_000.0


# ---- the lines -------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "expected"), [
    ("a1b2c3 404", ("a1b2c3", 404)),
    ("a1b2c3 200 extra fields the operator added\n", ("a1b2c3", 200)),
    ("  a1b2c3\t301  ", ("a1b2c3", 301)),
    ("- 200", None),  # nginx's empty variable: a request the check never saw
    ("", None),
    (json.dumps({"request_X-Shield-Ref": "t1", "DownstreamStatus": 403, "RequestPath": "/x"}), ("t1", 403)),
    (json.dumps({"request": {"headers": {"X-Shield-Ref": ["c1"]}}, "status": 401}), ("c1", 401)),
    (json.dumps({"request": {"headers": {}}, "resp_headers": {"X-Shield-Ref": ["c3"]}, "status": 404}), ("c3", 404)),
    (json.dumps({"request": {"headers": {"x-shield-ref": "c2"}}, "status": "500"}), ("c2", 500)),
    (json.dumps({"shield_ref": "p1", "status": 410}), ("p1", 410)),
    (json.dumps({"request": {"headers": {}}, "status": 200}), None),  # a Caddy line of an unchecked path
])
def test_each_edges_line_gives_the_reference_and_status(line, expected):
    parsed = parse_outcome(line)
    assert (parsed if parsed is None else (parsed.ref, parsed.status)) == expected
    assert parsed is None or parsed.events == ()


FAILED_ALICE = ("login_failed", {"account": "alice"})


@pytest.mark.parametrize(("line", "events"), [
    # nginx: '$shield_ref $status "$upstream_http_x_shield_event"'
    ('r1 200 "login_failed; account=alice"', (FAILED_ALICE,)),
    ('r1 200 "-"', ()),  # the shop sent none
    ('r1 200 ""', ()),
    ('r1 200 "login_failed; account=al%20ice"', (("login_failed", {"account": "al ice"}),)),
    # nginx's default escaping: a quote and a UTF-8 name arrive as \xHH
    ('r1 200 "login_failed; account=\\x22j\\xC3\\xBCrgen\\x22"', (("login_failed", {"account": "jürgen"}),)),
    ("r1 200 login_failed; account=alice", (FAILED_ALICE,)),  # unquoted: the rest of the line
    ("r1 200 1534 0.004", ()),  # another log format's fields: not an event
    ('r1 200 "payment_declined; password=hunter2; order=7"', (("payment_declined", {"order": "7"}),)),
    # Traefik: --accesslog.fields.headers.names.X-Shield-Event=keep logs it as the shop sent it
    (json.dumps({"request_X-Shield-Ref": "r1", "DownstreamStatus": 200,
                 "origin_X-Shield-Event": "login_failed; account=alice"}), (FAILED_ALICE,)),
    (json.dumps({"request_X-Shield-Ref": "r1", "DownstreamStatus": 200,
                 "downstream_X-Shield-Event": "login_failed; account=alice"}), (FAILED_ALICE,)),
    # Caddy: every value of the response header
    (json.dumps({"request": {"headers": {}}, "status": 200, "resp_headers": {
        "X-Shield-Ref": ["r1"], "X-Shield-Event": ["login_failed; account=alice", "cart_add; sku=9"]}}),
     (FAILED_ALICE, ("cart_add", {"sku": "9"}))),
    (json.dumps({"shield_ref": "r1", "status": 200, "shield_event": "login_failed; account=alice"}), (FAILED_ALICE,)),
    (json.dumps({"shield_ref": "r1", "status": 200, "shield_event": ["signup", "-"]}), (("signup", {}),)),
])
def test_the_shops_events_come_with_the_status(line, events):
    parsed = parse_outcome(line)
    assert (parsed.ref, parsed.status, parsed.events, parsed.unread_events) == ("r1", 200, events, ())


@pytest.mark.parametrize("line", [
    'r1 200 "Login failed!"',
    json.dumps({"shield_ref": "r1", "status": 200, "shield_event": "Login failed!"}),
    json.dumps({"shield_ref": "r1", "status": 200, "resp_headers": {"X-Shield-Event": ["Login failed!"]}}),
])
def test_an_event_not_in_the_headers_form_is_kept_apart_and_the_status_still_counts(line):
    parsed = parse_outcome(line)
    assert (parsed.ref, parsed.status, parsed.events, parsed.unread_events) == ("r1", 200, (), ("Login failed!",))


@pytest.mark.parametrize(("line", "says"), [
    ("a1b2c3", "expected 'REF STATUS'"),
    ("a1b2c3 OK", "not an HTTP status code"),
    ("a1b2c3 99", "not an HTTP status code"),
    ("a1b2c3 1000", "not an HTTP status code"),
    ('{"shield_ref": "x", ', "not JSON"),
    ('["x", 200]', "must be an object"),
    ('{"shield_ref": "x"}', "no status field"),
    ('{"shield_ref": "x", "status": true}', "not an HTTP status code"),
])
def test_a_line_in_no_known_form_is_refused_with_the_reason(line, says):
    with pytest.raises(OutcomeLineError, match=says):
        parse_outcome(line)


# ---- the decisions waiting for their line ---------------------------------------------------


class Held:
    def __init__(self, ref: str) -> None:
        self.ref = ref


def test_a_decision_is_taken_once():
    awaiting = AwaitingOutcomes()
    decision = Held("r1")
    awaiting.remember(decision, NOW)
    assert awaiting.take("r1", NOW + 1) is decision
    assert awaiting.take("r1", NOW + 2) is None
    assert awaiting.take("never", NOW + 2) is None


def test_decisions_too_old_or_too_many_are_given_up_oldest_first():
    awaiting = AwaitingOutcomes(max_held=3, max_age=60)
    for n in range(5):
        awaiting.remember(Held(f"r{n}"), NOW + n)
    assert len(awaiting) == 3 and awaiting.given_up == 2
    assert awaiting.take("r0", NOW + 5) is None and awaiting.take("r1", NOW + 5) is None
    assert awaiting.take("r3", NOW + 62) is not None  # 59 s old
    assert awaiting.take("r2", NOW + 63) is None  # 61 s old: given up
    assert awaiting.given_up == 3


def test_decisions_given_up_are_counted_for_prometheus(tmp_path):
    async def scenario():
        engine = Engine(default_policy())
        awaiting = AwaitingOutcomes(max_held=2, max_age=60)
        feed = OutcomeFeed(engine, awaiting, [str(tmp_path / "outcomes.log")], clock=lambda: NOW)
        before = given_up(engine)
        for n in range(5):
            awaiting.remember(Held(f"r{n}"), NOW)
        await feed.poll(NOW)
        await feed.poll(NOW + 1)  # told once, not again
        return given_up(engine) - before

    assert asyncio.run(scenario()) == 3


def given_up(engine) -> float:
    found = re.search(r"^shieldware_outcome_decisions_given_up_total ([0-9.]+)$",
                      engine.metrics.exposition().decode(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# ---- the growing log ----------------------------------------------------------------------------


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(text)


def test_a_log_present_at_start_is_read_from_its_end_then_as_it_grows(tmp_path):
    log = tmp_path / "outcomes.log"
    log.write_text("old 200\n")
    growing = GrowingFile(str(log))
    assert growing.read_lines() == []
    append(log, "a 200\nb 40")
    assert growing.read_lines() == [b"a 200"]  # the half-written line waits for its end
    append(log, "4\n")
    assert growing.read_lines() == [b"b 404"]
    assert growing.read_lines() == []


def test_a_log_that_appears_later_is_read_from_its_start(tmp_path):
    log = tmp_path / "outcomes.log"
    growing = GrowingFile(str(log))
    assert growing.read_lines() == []
    log.write_text("a 200\n")
    assert growing.read_lines() == [b"a 200"]


def test_logrotates_rename_loses_neither_the_old_files_tail_nor_the_new_files_start(tmp_path):
    log = tmp_path / "outcomes.log"
    log.write_text("")
    growing = GrowingFile(str(log))
    append(log, "a 200\n")
    assert growing.read_lines() == [b"a 200"]
    append(log, "b 404\n")  # written before the rename, read after it
    log.rename(tmp_path / "outcomes.log.1")
    assert growing.read_lines() == [b"b 404"]  # renamed away, not yet replaced
    append(tmp_path / "outcomes.log.1", "c 404\n")  # the edge still writing to its open file
    log.write_text("d 200\n")
    assert growing.read_lines() == [b"c 404", b"d 200"]


def test_a_log_truncated_in_place_is_read_again_from_its_start(tmp_path):
    log = tmp_path / "outcomes.log"
    log.write_text("")
    growing = GrowingFile(str(log))
    append(log, "a 200\nb 200\n")
    assert growing.read_lines() == [b"a 200", b"b 200"]
    with log.open("r+") as handle:  # logrotate's copytruncate
        handle.truncate(0)
    append(log, "c 404\n")
    assert growing.read_lines() == [b"c 404"]


def test_a_run_without_newlines_longer_than_a_line_is_dropped_and_counted(tmp_path):
    log = tmp_path / "outcomes.log"
    log.write_text("")
    growing = GrowingFile(str(log))
    append(log, "x" * (MAX_LINE_BYTES + 10))
    assert growing.read_lines() == [] and growing.oversized == 1
    append(log, "\na 200\n")
    assert growing.read_lines() == [b"", b"a 200"]


# ---- into the engine ----------------------------------------------------------------------------


def browser(method: str, path: str, now: float, ip: str = "198.51.100.20"):
    return facts_from_headers(ip, method, path, now, [("host", "shop.example"), *CHROME_NAVIGATION])


def followed_log(tmp_path: Path) -> tuple[Engine, AwaitingOutcomes, OutcomeFeed, Path]:
    """A real engine with the shipped policy, its held decisions, and a feed following an empty log."""
    engine = Engine(default_policy())
    awaiting = AwaitingOutcomes()
    log = tmp_path / "outcomes.log"
    log.write_text("")
    return engine, awaiting, OutcomeFeed(engine, awaiting, [str(log)], clock=lambda: NOW), log


def test_404s_fed_back_become_probing_evidence_on_the_next_check(tmp_path):
    async def scenario():
        engine, awaiting, feed, log = followed_log(tmp_path)
        now = NOW
        for n in range(12):
            decision = await engine.decide(browser("GET", f"/product/{9000 + n}", now))
            assert n > 0 or "behav.probing" not in decision.reason_codes
            awaiting.remember(decision, now)
            append(log, f"{decision.ref} 404\n")
            assert await feed.poll(now) == {"fed": 1, "not_held": 0, "no_ref": 0, "malformed": 0}
            now += 2.0
        return await engine.decide(browser("GET", "/product/1", now))

    decision = asyncio.run(scenario())
    assert "behav.probing" in decision.reason_codes


def test_without_the_feed_the_same_requests_draw_no_probing_evidence():
    async def scenario():
        engine = Engine(default_policy())
        now = NOW
        for n in range(12):
            await engine.decide(browser("GET", f"/product/{9000 + n}", now))
            now += 2.0
        return await engine.decide(browser("GET", "/product/1", now))

    assert "behav.probing" not in asyncio.run(scenario()).reason_codes


def one_login_logged(tmp_path: Path, answer: str) -> tuple[str, list[dict]]:
    """One POST to /login decided, its line `REF <answer>` in the edge's log fed back; the
    decision's reference and the login records of the decision log."""
    decisions = tmp_path / "decisions.jsonl"

    async def scenario():
        engine = Engine(default_policy(decision_log={"path": str(decisions)}))
        awaiting = AwaitingOutcomes()
        log = tmp_path / "outcomes.log"
        feed = OutcomeFeed(engine, awaiting, [str(log)], clock=lambda: NOW)
        decision = await engine.decide(browser("POST", "/login", NOW))
        awaiting.remember(decision, NOW)
        log.write_text(f"{decision.ref} {answer}\n")  # the log appears after the feed started: read whole
        assert (await feed.poll(NOW + 1))["fed"] == 1
        engine.decision_log.close()
        return decision.ref

    ref = asyncio.run(scenario())
    return ref, [r for r in map(json.loads, decisions.read_text().splitlines()) if r.get("type") == "login"]


def test_a_401_from_the_login_route_is_a_failed_login_in_the_decision_log(tmp_path):
    ref, login = one_login_logged(tmp_path, "401")
    assert [(r["ref"], r["outcome"], r["source"]) for r in login] == [(ref, "failed", "status")]


def logins_behind_the_edge(tmp_path: Path, attempts: int, logged: str) -> list[str]:
    """POSTs to /login from one address as forward auth judges them (without the body, which the
    check never sees), each followed by the line `logged` (with `{ref}` and `{n}`) in the edge's
    log; answers the reasons of the attempt after them."""
    async def scenario():
        engine, awaiting, feed, log = followed_log(tmp_path)
        now = NOW
        for n in range(attempts):
            decision = await engine.decide(browser("POST", "/login", now))
            awaiting.remember(decision, now)
            append(log, logged.format(ref=decision.ref, n=n) + "\n")
            assert (await feed.poll(now + 0.5))["fed"] == 1
            now += 3.0
        return (await engine.decide(browser("POST", "/login", now))).reason_codes

    return list(asyncio.run(scenario()))


def test_failed_login_events_in_the_log_show_one_address_trying_many_accounts(tmp_path):
    # A shop that answers a failed login with 200 and its form again says so in X-Shield-Event.
    reasons = logins_behind_the_edge(tmp_path, 8, '{ref} 200 "login_failed; account=user{n}%40example.org"')
    assert "ato.username_spray" in reasons


def test_statuses_alone_name_no_accounts(tmp_path):
    assert "ato.username_spray" not in logins_behind_the_edge(tmp_path, 8, "{ref} 200")


def test_the_shops_event_wins_over_the_status_rule_of_its_family(tmp_path):
    # 401 from /login is login_failed by the shipped rules, but the shop says it succeeded (say,
    # the second factor is next): its word counts, once.
    _, login = one_login_logged(tmp_path, '401 "login_succeeded; account=alice"')
    assert [(r["outcome"], r["source"], r["account"]) for r in login] == [("succeeded", "app", "alice")]


def test_an_event_the_feed_cannot_read_is_logged_and_its_status_still_fed(tmp_path, caplog):
    async def scenario():
        engine, awaiting, feed, log = followed_log(tmp_path)
        decision = await engine.decide(browser("GET", "/product/3", NOW))
        awaiting.remember(decision, NOW)
        append(log, f'{decision.ref} 404 "Login failed!"\n')
        return await feed.poll(NOW + 1)

    with caplog.at_level(logging.WARNING, logger="shieldware.proxy.outcome_feed"):
        counts = asyncio.run(scenario())
    assert counts["fed"] == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "'Login failed!' is not 'event; field=value'" in warnings[0], warnings


def test_broken_and_foreign_lines_are_counted_and_logged_and_lose_nothing(tmp_path, caplog):
    async def scenario():
        engine, awaiting, feed, log = followed_log(tmp_path)
        decision = await engine.decide(browser("GET", "/product/3", NOW))
        awaiting.remember(decision, NOW)
        append(log, "garbage\n\xff\xfe 200\n- 200\nsomeone-elses-ref 404\n{\"status\": \n"
                    f"{decision.ref} 404\n")
        before = outcome_lines(engine)
        first = await feed.poll(NOW + 1)
        append(log, "more garbage\n")
        second = await feed.poll(NOW + 2)
        after = outcome_lines(engine)
        return first, second, {kind: after[kind] - before.get(kind, 0) for kind in after}

    with caplog.at_level(logging.WARNING, logger="shieldware.proxy.outcome_feed"):
        first, second, metrics = asyncio.run(scenario())
    # "\xff\xfe 200" is read as a reference of replacement characters: not one of ours
    assert first == {"fed": 1, "not_held": 2, "no_ref": 1, "malformed": 2}
    assert second == {"fed": 0, "not_held": 0, "no_ref": 0, "malformed": 1}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings  # one message a minute, the rest counted
    assert "outcome log" in warnings[0] and "expected 'REF STATUS'" in warnings[0] and "garbage" in warnings[0]
    assert metrics == {"fed": 1, "not_held": 2, "no_ref": 1, "malformed": 3}  # exported for Prometheus


def outcome_lines(engine) -> dict[str, float]:
    """shieldware_outcome_lines_total by result, as Prometheus reads it (the engine's metrics are
    the process's, so other tests' lines are in it too)."""
    found = re.findall(r'^shieldware_outcome_lines_total\{result="(\w+)"\} ([0-9.]+)$',
                       engine.metrics.exposition().decode(), re.MULTILINE)
    return {kind: float(value) for kind, value in found}


def test_the_feed_runs_until_stopped_and_reads_once_more_on_the_way_out(tmp_path):
    async def scenario():
        engine, awaiting, feed, log = followed_log(tmp_path)
        decisions = [await engine.decide(browser("GET", f"/product/{n}", NOW)) for n in range(2)]
        for decision in decisions:
            awaiting.remember(decision, NOW)
        stopping = asyncio.Event()
        running = asyncio.create_task(feed.run(stopping))
        append(log, f"{decisions[0].ref} 200\n")
        for _ in range(200):  # the feed polls every quarter second; give it up to ten
            await asyncio.sleep(0.05)
            if len(awaiting) == 1:
                break
        append(log, f"{decisions[1].ref} 404\n")
        stopping.set()
        await asyncio.wait_for(running, 5)
        return len(awaiting)

    assert asyncio.run(scenario()) == 0



def test_workers_reading_one_log_each_feed_the_lines_of_their_own_decisions(tmp_path):
    async def scenario():
        log = tmp_path / "outcomes.log"
        log.write_text("")
        workers = []
        for _ in range(2):
            engine = Engine(default_policy())
            awaiting = AwaitingOutcomes()
            decision = await engine.decide(browser("GET", "/product/5", NOW))
            awaiting.remember(decision, NOW)
            workers.append((OutcomeFeed(engine, awaiting, [str(log)], clock=lambda: NOW), decision))
        append(log, "".join(f"{decision.ref} 404\n" for _, decision in workers))
        return [await feed.poll(NOW + 1) for feed, _ in workers]

    for counts in asyncio.run(scenario()):
        assert counts == {"fed": 1, "not_held": 1, "no_ref": 0, "malformed": 0}


# ---- the command line ---------------------------------------------------------------------------


def proxy_settings(*args: str):
    import argparse

    from shieldware.commands.proxy import register, settings_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return settings_from_args(parser.parse_args(["proxy", "--auth-only", *args]))


def test_outcome_logs_reach_every_worker(tmp_path, monkeypatch):
    from shieldware.proxy.settings import SETTINGS_ENV, ProxySettings

    first, second = tmp_path / "nginx.log", tmp_path / "edge2.log"  # the edge creates them later
    settings = proxy_settings("--outcome-log", str(first), "--outcome-log", str(second))
    assert settings.outcome_logs == (str(first), str(second))
    monkeypatch.setenv(SETTINGS_ENV, settings.to_environment())
    assert ProxySettings.from_environment() == settings


@pytest.mark.parametrize(("where", "says"), [
    ("{tmp}/no/such/dir/outcomes.log", "does not exist (the edge creates the file, not its directory)"),
    ("{tmp}", "is a directory"),
])
def test_an_outcome_log_that_cannot_be_is_refused_with_the_reason(tmp_path, where, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        proxy_settings("--outcome-log", where.format(tmp=tmp_path))


def test_the_bare_forwarder_takes_no_outcome_log(tmp_path):
    with pytest.raises(ValueError, match="--bare turns off"):
        proxy_settings("--bare", "--outcome-log", str(tmp_path / "x.log"))
