"""Account takeover and shop abuse against the demo shop on a real uvicorn server, in simulated time.

Every client sends real Chrome navigation headers, so only the account/shop-abuse signals can
catch it. "Challenged" is read from the X-Shield-Verdict header (the challenge page itself is
another feature's).
"""

from __future__ import annotations

import json
import random
import time

import httpx
import pytest

from shieldware.cli import main
from shieldware.demo import build_demo_app
from shieldware.demo.catalogue import GOOD_CARD
from shieldware.policy import default_policy
from tests.support import CHROME_NAVIGATION, SimulatedClock, live_server

BROWSER = dict(CHROME_NAVIGATION)


@pytest.fixture
def shop(tmp_path):
    clock = SimulatedClock()
    log = tmp_path / "decisions.jsonl"
    policy = default_policy(trusted_proxies=["127.0.0.1/32"], decision_log={"path": str(log)})
    app = build_demo_app(policy=policy, clock=clock)
    with live_server(app) as server, httpx.Client(base_url=server.url, headers=BROWSER, timeout=10) as client:
        server.clock, server.client, server.log, server.app = clock, client, log, app
        yield server


def verdict_of(response: httpx.Response) -> str:
    """allow for anything the app answered; the refusal's verdict otherwise."""
    return response.headers.get("x-shield-verdict", "allow")


def login(shop, user: str, password: str, ip: str | None = None) -> httpx.Response:
    headers = {"x-forwarded-for": ip} if ip else {}
    return shop.client.post("/login", data={"username": user, "password": password}, headers=headers)


def log_records(shop) -> list[dict]:
    return [json.loads(line) for line in shop.log.read_text().splitlines() if line.strip()]


def wait_for_login_records(shop, account: str, count: int) -> list[dict]:
    """App reports are fed back in a task after the response: give the server a moment to log them."""
    for _ in range(200):
        records = [r for r in log_records(shop) if r.get("type") == "login" and r["account"] == account]
        if len(records) >= count:
            return records
        time.sleep(0.01)
    return records


def leaked_pairs(count: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = [(f"user{rng.randrange(10**6):06d}@mail.example", f"pw{rng.randrange(10**9)}") for _ in range(count)]
    if count >= 10:
        pairs[count // 2] = ("alice", "wonderland")  # one real credential hidden in the list
    return pairs


def test_stuffing_from_one_ip_is_stopped_within_20_attempts(shop):
    rng = random.Random(1)
    first_refusal, verdicts, successes = None, [], 0
    for attempt, (user, password) in enumerate(leaked_pairs(500, seed=1), start=1):
        shop.clock.advance(rng.uniform(1.0, 3.0))
        response = login(shop, user, password, ip="203.0.113.50")
        verdict = verdict_of(response)
        verdicts.append(verdict)
        successes += response.status_code == 303
        if verdict in ("challenge", "block") and first_refusal is None:
            first_refusal = attempt
    assert first_refusal is not None and first_refusal <= 20
    assert "block" in verdicts[:20]  # a stuffing IP that keeps going is blocked, not just challenged
    assert verdicts[-1] == "block"
    assert successes == 0  # the real credential in the middle of the list never got through
    assert verdicts.count("allow") <= 20
    first = next(r for r in log_records(shop) if r.get("verdict") in ("challenge", "block"))
    assert "ato.username_spray" in [c["code"] for c in first["reasons"]]


def test_stuffing_over_200_ips_with_one_fingerprint_is_detected_and_switches_under_attack(shop):
    rng = random.Random(2)
    ips = [f"{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
           for _ in range(200)]
    attempts = [(ip, pair) for n, ip in enumerate(ips) for pair in leaked_pairs(3, seed=n)]
    rng.shuffle(attempts)
    first_refusal = None
    for index, (ip, (user, password)) in enumerate(attempts, start=1):
        shop.clock.advance(0.5)
        verdict = verdict_of(login(shop, user, password, ip=ip))
        if verdict != "allow" and first_refusal is None:
            first_refusal = index
        if index == 100:
            break
    assert first_refusal is not None and first_refusal <= 100
    # The shared client stack itself is recognised, not only the site-wide failure share.
    refused = [r for r in log_records(shop) if r.get("route_group") == "login" and r.get("verdict") != "allow"]
    assert any(c["code"] == "ato.fingerprint_spray" for r in refused for c in r["reasons"])
    state = shop.client.get("/.shieldware/admin/state").json()
    assert state["under_attack"]["login"]["auto"] is True
    # Under attack, everybody on the login group is challenged, even a clean new visitor ...
    shop.clock.advance(1.0)
    fresh = shop.client.get("/login", headers={"x-forwarded-for": "192.0.2.99"})
    assert verdict_of(fresh) == "challenge"
    reasons = [r["code"] for r in next(r for r in reversed(log_records(shop)) if r.get("ref") ==
                                       fresh.headers["x-shield-ref"])["reasons"]]
    assert "switch.under_attack" in reasons
    # ... and other groups are untouched.
    assert verdict_of(shop.client.get("/product/3", headers={"x-forwarded-for": "192.0.2.99"})) == "allow"
    # The switch is recorded in the decision log as an automatic one.
    assert any(r.get("type") == "switch" and r.get("auto") and r.get("on") for r in log_records(shop))
    metrics = shop.client.get("/.shieldware/metrics").text
    assert 'shieldware_under_attack_engaged' in metrics and 'how="auto"' in metrics
    # Once the attack stops, the automatic switch lets go by itself.
    shop.clock.advance(700.0)
    assert verdict_of(shop.client.get("/login", headers={"x-forwarded-for": "192.0.2.98"})) == "allow"
    assert shop.client.get("/.shieldware/admin/state").json()["under_attack"] == {}


def test_slow_guessing_one_account_from_many_ips_is_challenged_within_10_failures(shop, capsys):
    rng = random.Random(3)
    failures, challenged_after, verdicts = 0, None, []
    for attempt in range(30):
        shop.clock.advance(rng.uniform(120.0, 240.0))  # one guess every two to four minutes
        response = login(shop, "alice", f"guess{attempt}", ip=f"198.18.{attempt}.{attempt + 7}")
        verdict = verdict_of(response)
        verdicts.append(verdict)
        if response.status_code == 401:
            failures += 1
        if verdict == "challenge" and challenged_after is None:
            challenged_after = failures
    assert challenged_after is not None and challenged_after <= 10
    # The account is protected with challenges, never a block anyone could use to lock alice out.
    assert "block" not in verdicts
    first = next(r for r in log_records(shop) if r.get("verdict") == "challenge")
    assert {c["code"] for c in first["reasons"]} & {"ato.account_distributed", "ato.account_guessing"}
    # alice herself, from home, is challenged (at most) but never blocked while the attack lasts.
    shop.clock.advance(5.0)
    assert verdict_of(login(shop, "alice", "wonderland", ip="192.0.2.10")) in ("allow", "challenge")
    # Support sees the attack on the account: answered failures and the refused attempts.
    assert main(["account", "alice", "--log", str(shop.log), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    outcomes = [row["outcome"] for row in report["attempts"]]
    assert outcomes.count("failed") == failures and "refused" in outcomes
    refused = next(row for row in report["attempts"] if row["outcome"] == "refused")
    assert refused["verdict"] == "challenge" and refused["client_ip"].startswith("198.18.")


def test_a_person_who_mistypes_twice_then_logs_in_is_never_blocked(shop):
    # Some ordinary traffic around, so the site-wide baseline is realistic.
    for i in range(12):
        shop.clock.advance(20.0)
        login(shop, ["bob", "carol", "dave"][i % 3], ["builder", "singer", "diver"][i % 3], ip=f"192.0.2.{20 + i}")
    verdicts, statuses = [], []
    for password in ("wonderlnad", "Wonderland", "wonderland"):
        shop.clock.advance(8.0)
        response = login(shop, "alice", password, ip="198.51.100.7")
        verdicts.append(verdict_of(response))
        statuses.append(response.status_code)
    assert "block" not in verdicts and "throttle" not in verdicts
    assert verdicts.count("challenge") <= 1
    assert statuses == [401, 401, 303]
    # The login records name the account and never carry the password.
    text = shop.log.read_text()
    assert "wonderlnad" not in text and "Wonderland" not in text and "wonderland" not in text
    records = wait_for_login_records(shop, "alice", 3)
    assert [r["outcome"] for r in records] == ["failed", "failed", "succeeded"]
    assert not any(r.get("takeover_suspected") for r in records)


def test_card_testing_from_one_session_is_blocked_on_checkout(shop):
    shop.client.get("/checkout")  # a session cookie, like a shopper
    assert "shop_session" in shop.client.cookies
    rng = random.Random(4)
    verdicts, declines = [], 0
    for attempt in range(30):
        shop.clock.advance(rng.uniform(15.0, 25.0))  # 30 cards in about 10 minutes
        response = shop.client.post("/checkout", data={"card": f"4000000000{attempt:06d}"})
        verdicts.append(verdict_of(response))
        declines += response.status_code == 402
    assert verdicts[-1] == "block"
    assert verdicts.index("block") < 12
    assert declines <= 5  # the tester learnt almost nothing
    block = next(r for r in log_records(shop) if r.get("verdict") == "block")
    assert "shop.card_testing" in [c["code"] for c in block["reasons"]]
    # A shopper whose card is declined once and then pays is untouched.
    with httpx.Client(base_url=shop.url, headers=BROWSER, timeout=10) as shopper:
        shopper.get("/checkout", headers={"x-forwarded-for": "192.0.2.77"})
        shop.clock.advance(30.0)
        first = shopper.post("/checkout", data={"card": "4000000000000002"}, headers={"x-forwarded-for": "192.0.2.77"})
        shop.clock.advance(30.0)
        second = shopper.post("/checkout", data={"card": GOOD_CARD}, headers={"x-forwarded-for": "192.0.2.77"})
    assert (first.status_code, second.status_code) == (402, 200)


def test_coupon_enumeration_is_throttled(shop):
    shop.client.get("/cart")
    rng = random.Random(5)
    verdicts, statuses, reached_shop = [], [], 0
    for i in range(100):
        shop.clock.advance(rng.uniform(1.0, 6.0))  # irregular, like a person typing codes
        response = shop.client.post("/cart/coupon", data={"code": f"GUESS{i:04d}"})
        verdicts.append(verdict_of(response))
        statuses.append((response.status_code, response.headers.get("retry-after")))
        reached_shop += response.status_code == 400
    first = next(i for i, v in enumerate(verdicts) if v != "allow")
    assert first < 12 and verdicts[first] == "throttle"
    first_ref = log_records(shop)[0]
    assert first_ref["verdict"] == "throttle"
    assert {r["code"] for r in first_ref["reasons"]} & {"shop.coupon_enumeration", "shop.coupon_rate"}
    assert sum(v != "allow" for v in verdicts) >= 85  # refused: throttled (or worse, if behaviour gives it away)
    assert reached_shop <= 15
    assert any(status == 429 and int(wait) >= 1 for status, wait in statuses)
