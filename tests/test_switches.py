"""Incident switches and support tools: under-attack, allow/deny entries, `shieldware account`, admin endpoint."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from shieldware.cli import main
from shieldware.demo import build_demo_app
from shieldware.engine import Engine
from shieldware.facts import facts_from_headers
from shieldware.metrics import Metrics
from shieldware.policy import default_policy
from shieldware.store import MemoryStore
from shieldware.switches import parse_duration, set_under_attack
from tests.support import CHROME_NAVIGATION, SimulatedClock, live_server


@pytest.fixture
def shop(tmp_path):
    clock = SimulatedClock()
    log = tmp_path / "decisions.jsonl"
    policy = default_policy(trusted_proxies=["127.0.0.1/32"], decision_log={"path": str(log)})
    with live_server(build_demo_app(policy=policy, clock=clock)) as server, \
            httpx.Client(base_url=server.url, headers=dict(CHROME_NAVIGATION), timeout=10) as client:
        server.clock, server.client, server.log = clock, client, log
        yield server


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def get(shop, path: str, ip: str, **headers: str) -> httpx.Response:
    shop.clock.now += 5  # a person's pace: the per-IP hard limits stay out of the way
    return shop.client.get(path, headers={"x-forwarded-for": ip, **headers})


def records(shop) -> list[dict]:
    return [json.loads(line) for line in shop.log.read_text().splitlines() if line.strip()]


def test_deny_entry_blocks_with_reason_until_removed(shop, capsys):
    assert get(shop, "/product/1", "203.0.113.9").status_code == 200
    code, out, _ = cli(capsys, "deny", "ip", "203.0.113.9", "--for", "2h", "--reason", "ticket 4512",
                       "--server", shop.url)
    assert code == 0 and "deny ip 203.0.113.9" in out
    refused = get(shop, "/product/1", "203.0.113.9")
    assert refused.status_code == 403 and refused.headers["x-shield-verdict"] == "block"
    decision = next(r for r in records(shop) if r.get("ref") == refused.headers["x-shield-ref"])
    deny = next(r for r in decision["reasons"] if r["code"] == "list.deny")
    assert deny["detail"]["reason"] == "ticket 4512"
    assert get(shop, "/product/1", "203.0.113.10").status_code == 200  # neighbours unaffected
    code, out, _ = cli(capsys, "deny", "list", "--server", shop.url)
    assert "203.0.113.9" in out and "ticket 4512" in out
    code, out, _ = cli(capsys, "deny", "remove", "ip", "203.0.113.9", "--server", shop.url)
    assert code == 0 and out.strip() == "removed"
    assert get(shop, "/product/1", "203.0.113.9").status_code == 200
    changes = [(r["change"], r["list"], r["value"]) for r in records(shop) if r.get("type") == "list"]
    assert changes == [("add", "deny", "203.0.113.9"), ("remove", "deny", "203.0.113.9")]


def test_allow_entry_lets_a_blocked_client_through_and_expires(shop, capsys):
    curl = {"user-agent": "curl/8.5.0"}
    assert get(shop, "/product/1", "198.51.100.20", **curl).status_code == 403
    code, _, _ = cli(capsys, "allow", "ip", "198.51.100.0/24", "--for", "1h", "--reason", "partner feed",
                     "--server", shop.url)
    assert code == 0
    allowed = get(shop, "/product/1", "198.51.100.20", **curl)
    assert allowed.status_code == 200
    # ... even while it sprays the login form (an operator's allow entry wins over signal demands).
    for i in range(12):
        shop.clock.now += 2
        response = shop.client.post("/login", data={"username": f"u{i}", "password": "x"},
                                    headers={"x-forwarded-for": "198.51.100.20"})
        assert response.status_code == 401
    shop.clock.now += 3601  # the entry expires by itself
    assert get(shop, "/product/1", "198.51.100.20", **curl).status_code == 403


def test_under_attack_switch_by_cli_challenges_the_group_then_expires(shop, capsys):
    assert get(shop, "/login", "192.0.2.5").status_code == 200
    code, out, _ = cli(capsys, "under-attack", "on", "--group", "login", "--for", "30m", "--server", shop.url)
    assert code == 0 and "login: under attack until" in out
    assert get(shop, "/login", "192.0.2.5").headers["x-shield-verdict"] == "challenge"
    assert get(shop, "/product/2", "192.0.2.5").status_code == 200
    code, out, _ = cli(capsys, "under-attack", "status", "--server", shop.url)
    assert "login: under attack" in out and "by admin@127.0.0.1" in out
    code, out, _ = cli(capsys, "under-attack", "off", "--group", "login", "--server", shop.url)
    assert code == 0 and "switched off" in out
    assert get(shop, "/login", "192.0.2.5").status_code == 200
    cli(capsys, "under-attack", "on", "--for", "30m", "--server", shop.url)
    shop.clock.now += 1801
    assert get(shop, "/login", "192.0.2.6").status_code == 200  # expired
    switches = [(r["on"], r["by"]) for r in records(shop) if r.get("type") == "switch"]
    assert switches == [(True, "admin@127.0.0.1"), (False, "admin@127.0.0.1"), (True, "admin@127.0.0.1")]


def test_admin_endpoint_refuses_clients_outside_allow_from(shop):
    # The trusted proxy says the client is on the internet: the admin endpoint is not there for it.
    response = shop.client.post("/.shieldware/admin/under-attack", json={"group": "login", "on": True},
                                headers={"x-forwarded-for": "203.0.113.77"})
    assert response.status_code == 404
    assert shop.client.get("/.shieldware/admin/state").json()["under_attack"] == {}
    bad = shop.client.post("/.shieldware/admin/list", json={"list": "deny", "target": "ip", "value": "not-an-ip"})
    assert bad.status_code == 400 and "not an IP" in bad.json()["error"]
    assert shop.client.post("/.shieldware/admin/list", content=b"{oops").status_code == 400


def test_account_command_shows_attempts_and_a_suspected_takeover(shop, capsys):
    for password in ("a", "b", "c", "wonderland"):
        shop.clock.now += 30
        shop.client.post("/login", data={"username": "alice", "password": password},
                         headers={"x-forwarded-for": "203.0.113.44"})
    for _ in range(200):  # the success is fed back in a task after the response
        if '"takeover_suspected":true' in shop.log.read_text():
            break
        time.sleep(0.01)
    code, out, _ = cli(capsys, "account", "alice", "--server", shop.url)
    assert code == 0
    assert "3 failed logins from 1 IPs" in out
    assert "TAKEOVER SUSPECTED" in out
    assert out.count("203.0.113.44") >= 4 and out.count("failed") >= 3 and "succeeded" in out
    code, out, _ = cli(capsys, "account", "Alice", "--log", str(shop.log), "--json")
    report = json.loads(out)
    assert [a["outcome"] for a in report["attempts"]] == ["failed", "failed", "failed", "succeeded"]
    assert report["attempts"][-1]["takeover_suspected"] is True
    assert "wonderland" not in shop.log.read_text()


def test_cli_explains_how_to_reach_a_memory_store(capsys):
    code, _, err = cli(capsys, "under-attack", "on", "--store", "memory://")
    assert code == 2 and "--server" in err
    code, _, err = cli(capsys, "allow", "ip", "1.2.3.4", "--server", "http://127.0.0.1:9", "--for", "soon")
    assert code == 2


def test_every_engine_on_a_shared_store_follows_a_switch():
    store = MemoryStore()
    policy = default_policy()
    first, second = Engine(policy, store, metrics=Metrics()), Engine(policy, store, metrics=Metrics())
    headers = list(CHROME_NAVIGATION)

    async def scenario() -> list[str]:
        now = 1_800_000_000.0
        verdicts = [(await second.decide(facts_from_headers("192.0.2.1", "GET", "/login", now, headers))).verdict]
        await set_under_attack(store, first.decision_log, "login", True, now, 600, "drill")
        await asyncio.sleep(0)
        for step in (0.5, 3.0):  # within the refresh interval the cache may lag; after it, it follows
            now += step
            await second.decide(facts_from_headers("192.0.2.1", "GET", "/login", now, headers))
            await asyncio.sleep(0.01)
        verdicts.append((await second.decide(facts_from_headers("192.0.2.1", "GET", "/login", now, headers))).verdict)
        return [str(v) for v in verdicts]

    assert asyncio.run(scenario()) == ["allow", "challenge"]


def test_durations():
    assert parse_duration("2h") == 7200 and parse_duration("30m") == 1800 and parse_duration("1d") == 86400
    assert parse_duration("90") == 90 and parse_duration("forever") is None
    for bad in ("soon", "-1h", "0s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_cli_store_mode_reaches_servers_sharing_a_redis_store(tmp_path, capsys):
    """`shieldware under-attack on --store redis://…` reaches every server sharing that Redis."""
    from shieldware.store import open_store
    from tests.redis_support import redis_server

    with redis_server(tmp_path / "redis") as redis:
        log = tmp_path / "changes.jsonl"
        code, _out, err = cli(capsys, "under-attack", "on", "--group", "login", "--for", "10m", "--store",
                              redis.uri, "--log", str(log))
        assert code == 0, err

        async def verdict() -> str:
            store = open_store(redis.uri)  # a server process of the shop, sharing the same Redis
            engine = Engine(default_policy(), store, metrics=Metrics())
            try:
                now = time.time()
                headers = list(CHROME_NAVIGATION)
                await engine.decide(facts_from_headers("192.0.2.1", "GET", "/login", now, headers))
                await asyncio.sleep(0.2)  # the background refresh lands
                later = await engine.decide(facts_from_headers("192.0.2.1", "GET", "/login", now + 3, headers))
                return str(later.verdict)
            finally:
                await store.close()

        assert asyncio.run(verdict()) == "challenge"
        assert json.loads(log.read_text().splitlines()[0])["type"] == "switch"
        code, _out, err = cli(capsys, "under-attack", "off", "--group", "login", "--store", redis.uri)
        assert code == 0, err


def test_admin_endpoint_behind_an_untrusted_proxy_and_with_a_token(tmp_path, monkeypatch, capsys):
    # No trusted_proxies: a local nginx would make every visitor look like 127.0.0.1.
    app = build_demo_app(policy=default_policy(decision_log={"path": str(tmp_path / "d.jsonl")}))
    with live_server(app) as server:
        forwarded = httpx.get(f"{server.url}/.shieldware/admin/state", headers={"x-forwarded-for": "203.0.113.1"})
        assert forwarded.status_code == 404
        assert httpx.get(f"{server.url}/.shieldware/admin/state").status_code == 200
        monkeypatch.setenv("SHIELDWARE_ADMIN_TOKEN", "s3cret-token")
        assert httpx.get(f"{server.url}/.shieldware/admin/state").status_code == 404
        wrong = httpx.get(f"{server.url}/.shieldware/admin/state", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 404
        code, out, _ = cli(capsys, "allow", "list", "--server", server.url)  # the CLI sends the token
        assert code == 0 and "empty" in out
