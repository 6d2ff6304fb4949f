"""Traffic signals through the engine (no server): each behaviour, the policy fields, the keys."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shieldware.decision import Verdict
from shieldware.engine import Engine
from shieldware.facts import facts_from_headers
from shieldware.policy import PolicyError, default_policy, default_policy_text, policy_from_mapping
from shieldware.signals import default_signals
from shieldware.signals.traffic_keys import header_fingerprint, ip_prefix, product_id
from shieldware.store import MemoryStore
from shieldware.store.base import Observation, Rate
from tests.fastlane.traffic import FETCH as FETCH_JSON
from tests.support import CHROME_NAVIGATION, CHROME_SUBRESOURCE, CHROME_UA

T0 = 1_700_000_000.0
SESSION = "shop_session=x"


def engine(**policy_overrides) -> Engine:
    return Engine(default_policy(**policy_overrides), MemoryStore(capacity=2048))


def request(path: str, now: float, ip: str = "203.0.113.9", headers=CHROME_NAVIGATION, cookies: str = ""):
    headers = list(headers) + ([("cookie", cookies)] if cookies else [])
    return facts_from_headers(ip, "GET", path, now, headers)


async def visit(eng: Engine, path: str, now: float, status: int = 200, **kw):
    decision = await eng.decide(request(path, now, **kw))
    if decision.verdict is Verdict.ALLOW:
        await eng.feedback(decision, now, status=status)
    return decision


async def test_cookie_amnesia_when_the_session_cookie_never_comes_back():
    eng = engine()
    codes: set[str] = set()
    for i in range(14):
        # irregular gaps and listing pages in between: only the missing cookie stands out
        path = "/products?page=2" if i % 2 else f"/product/{(i * 37) % 900 + 1}"
        decision = await visit(eng, path, T0 + i * (3 + i % 4))
        codes |= set(decision.reason_codes)
    assert "behav.cookie_amnesia" in codes
    kept = engine()
    kept_codes: set[str] = set()
    for i in range(14):
        path = "/products?page=2" if i % 2 else f"/product/{(i * 37) % 900 + 1}"
        decision = await visit(kept, path, T0 + i * (3 + i % 4), cookies="shop_session=abc123")
        kept_codes |= set(decision.reason_codes)
    assert "behav.cookie_amnesia" not in kept_codes


async def walk(eng: Engine, product_ids: list[int]) -> list:
    """Product pages in the given order with a listing page after every fifth, irregular gaps
    (1-4 s, no metronome, under the rate limits) and the session cookie kept: decisions of all."""
    decisions, now = [], T0
    for n, pid in enumerate(product_ids):
        now += 1.0 + (n * 7 % 4)
        decisions.append(await visit(eng, f"/product/{pid}", now, cookies=SESSION))
        if n % 5 == 4:
            now += 2.5
            decisions.append(await visit(eng, "/products?page=3", now, cookies=SESSION))
    return decisions


def enumeration_patterns(decisions: list) -> set[str]:
    return {e.detail["pattern"] for d in decisions for e in d.reasons if e.code == "behav.enumeration"}


async def test_walking_ids_in_order_is_enumeration_even_when_some_arrive_out_of_order():
    # A scraper on several connections: ids dispatched in order, every eighth pair arriving
    # swapped. Each page asks the IP key whether the previous id was among its last pages.
    ids = list(range(300, 360))
    for i in range(0, len(ids) - 1, 8):
        ids[i], ids[i + 1] = ids[i + 1], ids[i]
    assert enumeration_patterns(await walk(engine(), ids)) == {"sequential ids"}
    # The same pages in a person's order (neighbours rarely one after another): no walk.
    shuffled = random.Random(7).sample(range(300, 360), 60)
    assert enumeration_patterns(await walk(engine(), shuffled)) == set()


async def test_no_assets_only_when_the_policy_says_assets_pass_through():
    served = engine()
    cdn = engine(traffic={"assets_through_shieldware": False})
    for eng, expected in ((served, True), (cdn, False)):
        found = False
        for i in range(16):
            decision = await visit(eng, f"/products?page={i + 1}", T0 + i * (4 + i % 5), cookies=SESSION)
            found |= "behav.no_assets" in decision.reason_codes
        assert found is expected


async def test_assets_keep_no_assets_away():
    eng = engine()
    for i in range(16):
        decision = await visit(eng, f"/products?page={i + 1}", T0 + i * 5.3, cookies=SESSION)
        assert "behav.no_assets" not in decision.reason_codes
        await visit(eng, "/static/app.css", T0 + i * 5.3 + 0.1, headers=CHROME_SUBRESOURCE, cookies=SESSION)


async def test_regular_timing_evidence_carries_the_numbers():
    eng = engine()
    for i in range(20):
        decision = await visit(eng, f"/products?page={(i * 7) % 40 + 1}", T0 + i * 2.0, cookies=SESSION)
    timing = next(e for e in decision.reasons if e.code == "behav.regular_timing")
    assert timing.detail["gaps"] == 19 and timing.detail["cv"] < 0.01 and timing.detail["mean_gap_s"] == 2.0


async def test_hard_limit_gives_exact_retry_after_and_is_per_group():
    eng = engine()
    for _ in range(3):  # search: 3/s per IP
        assert (await visit(eng, "/search?q=mug", T0)).verdict is Verdict.ALLOW
    throttled = await visit(eng, "/search?q=mug", T0 + 0.1)
    assert throttled.verdict is Verdict.THROTTLE
    # GCRA: after 3 at T0 the next conforming time is T0 + 1/3 s, so the wait at T0+0.1 is 0.2333 s.
    assert throttled.retry_after == pytest.approx(1 / 3 - 0.1)
    limit = next(e for e in throttled.reasons if e.code == "rate.ip.limit")
    assert limit.detail["group"] == "search" and limit.detail["limits"] == ["3/s", "60/min"]
    # Another group has its own budget.
    assert (await visit(eng, "/product/5", T0 + 0.1)).verdict is Verdict.ALLOW


async def test_limits_per_session_from_policy():
    raw_groups = [{"name": "product", "paths": ["/product/*"], "limits": {"session": ["2/min"]}}]
    from shieldware.policy import policy_from_mapping

    eng = Engine(policy_from_mapping({"groups": raw_groups}), MemoryStore(capacity=256))
    for i in range(2):
        assert (await visit(eng, f"/product/{i + 1}", T0 + i, ip=f"198.51.100.{i}",
                            cookies="shop_session=s1")).verdict is Verdict.ALLOW
    # Third request of the same session from yet another IP: the session limit holds.
    third = await visit(eng, "/product/9", T0 + 2, ip="198.51.100.77", cookies="shop_session=s1")
    assert third.verdict is Verdict.THROTTLE and "rate.session.limit" in third.reason_codes
    # 2/min = one every 30 s with a burst of 2: the next slot opens at T0 + 30, 28 s from now.
    assert third.retry_after == pytest.approx(28.0)


def test_policy_limits_are_validated_with_field_names():
    with pytest.raises(PolicyError) as error:
        default_policy(groups=[{"name": "product", "paths": ["/p/*"], "limits": {"ip": ["10/fortnight"],
                                                                                 "planet": ["1/s"]}}])
    text = str(error.value)
    assert "groups[0].limits.ip[0]" in text and "groups[0].limits.planet" in text
    with pytest.raises(PolicyError, match=r"traffic\.assets_through_shieldware"):
        default_policy(traffic={"assets_through_shieldware": "sometimes"})
    group = default_policy().group("product")
    assert group.setting("limits")["ip"] == (Rate(4, 1.0), Rate(120, 60.0))


async def test_published_fingerprint_is_used_when_present():
    class SetsFingerprint:
        name = "fixed-fp"

        def inspect(self, facts, inspection):
            inspection.attrs["fingerprint"] = "fp-from-headers-signal"

    captured = []

    class Capture:
        name = "capture"

        def inspect(self, facts, inspection):
            captured.append(inspection)

    # Placed just before the traffic signal, after the header signal that publishes its own.
    others = [s for s in default_signals() if s.name != "traffic"]
    traffic = [s for s in default_signals() if s.name == "traffic"]
    eng = Engine(default_policy(), MemoryStore(capacity=256),
                 signals=[*others, SetsFingerprint(), *traffic, Capture()])
    await eng.decide(request("/product/1", T0))
    assert captured[0].attrs["traffic.fingerprint"] == "fp-from-headers-signal"
    assert any(o.kind == "client" and o.key == "203.0.113.9|fp-from-headers-signal"
               for o in captured[0].observations)


def test_keys_prefix_fingerprint_and_product_ids():
    assert ip_prefix("203.0.113.77") == "203.0.113.0/24"
    assert ip_prefix("2001:db8:1:2:3::9") == "2001:db8:1:2::/64"
    assert ip_prefix("not an ip") == "not an ip"
    a = header_fingerprint(request("/", T0))
    b = header_fingerprint(request("/x", T0 + 5, cookies="shop_session=1"))
    c = header_fingerprint(request("/", T0, headers=CHROME_SUBRESOURCE))
    assert a == b and a != c
    assert product_id("/product/42") == 42 and product_id("/p/17-blue-teapot") == 17
    assert product_id("/products") is None


async def test_account_key_observed_when_known():
    class KnowsAccount:
        name = "knows-account"

        def inspect(self, facts, inspection):
            inspection.attrs["account"] = "alice"

    seen = []

    class Capture:
        name = "capture"

        def inspect(self, facts, inspection):
            seen.append(inspection.observations)

    from shieldware.policy import policy_from_mapping

    policy = policy_from_mapping({"groups": [{"name": "login", "paths": ["/login"],
                                              "limits": {"account": ["1/min"]}}]})
    eng = Engine(policy, MemoryStore(capacity=256), signals=[KnowsAccount(), *default_signals(), Capture()])
    first = await eng.decide(request("/login", T0))
    second = await eng.decide(request("/login", T0 + 1, ip="192.0.2.1"))
    assert first.verdict is Verdict.ALLOW
    assert second.verdict is Verdict.THROTTLE and "rate.account.limit" in second.reason_codes
    assert any(o.kind == "rate.account" and o.key.endswith("|alice") for o in seen[0])


def test_kernels_are_compiled_at_store_start_and_honour_numba_cache_dir(tmp_path: Path):
    script = ("from shieldware.store import MemoryStore\n"
              "from shieldware.windows.kernels import observe_events\n"
              "MemoryStore(capacity=8)\n"
              "print(len(observe_events.signatures))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 1  # compiled before any request arrived
    assert list((tmp_path / "numba-cache").rglob("*.nbi")), "no Numba cache index written to NUMBA_CACHE_DIR"


def rotating(n: int) -> str:
    """A residential proxy pool: a new address on every request, over many networks."""
    return f"198.{18 + n % 2}.{n * 7 % 256}.{n % 250 + 1}"


async def test_a_catalogue_walked_through_rotating_proxies_is_challenged():
    # Chrome's own headers, no cookie, one request per address: per address there is nothing to see.
    eng = engine()
    decisions = [await visit(eng, f"/product/{500 + n}", T0 + n * 0.5, ip=rotating(n)) for n in range(60)]
    walked = [d for d in decisions if "behav.distributed_walk" in d.reason_codes]
    first = decisions.index(walked[0])
    assert 20 <= first <= 25  # once the pages of the stack add up (walk_min_pages)
    assert all(d.verdict is Verdict.CHALLENGE for d in decisions[first:])
    detail = next(e for e in walked[-1].reasons if e.code == "behav.distributed_walk").detail
    assert detail["sequential_share"] >= 0.9 and detail["distinct_ips"] >= 30
    assert not {c for d in decisions for c in d.reason_codes if c != "behav.distributed_walk"}


async def test_cookieless_landings_of_people_sharing_the_stack_are_not_a_walk():
    # 3,000 first visits with the very same headers, from as many addresses, on popular products:
    # neighbours now and then (hot ids sit together), never a walk.
    eng, rng = engine(), random.Random(11)
    hot = [rng.randrange(1, 5000) for _ in range(40)]
    codes = set()
    for n in range(3000):
        pid = rng.choice(hot) + rng.choice((0, 0, 1, 2)) if rng.random() < 0.5 else rng.randrange(1, 5000)
        decision = await visit(eng, f"/product/{pid}", T0 + n * 0.4, ip=rotating(n))
        codes |= set(decision.reason_codes)
    assert "behav.distributed_walk" not in codes


async def test_a_walk_whose_addresses_keep_the_session_for_a_second_page_is_challenged():
    # Each address fetches two ids in a row, the second with the session cookie the first earned:
    # the stack sees every second id, a step forward across a gap (WALK_STEP_GAP).
    eng = engine()
    decisions = [await visit(eng, f"/product/{500 + n}", T0 + n * 0.5, ip=rotating(n // 2),
                             cookies=f"shop_session=s{n // 2}" if n % 2 else "") for n in range(90)]
    first = ["behav.distributed_walk" in d.reason_codes for d in decisions].index(True)
    assert first <= 50 and decisions[-2].verdict is Verdict.CHALLENGE  # the pages without a session
    assert "behav.distributed_walk" not in decisions[-1].reason_codes  # its session's page is not watched


async def test_a_walk_sending_cookies_other_than_the_session_is_challenged_as_well():
    # A consent or tracking cookie costs a scraper nothing: only the shop's session cookie counts.
    eng = engine()
    decisions = [await visit(eng, f"/product/{500 + n}", T0 + n * 0.5, ip=rotating(n),
                             cookies=f"consent=yes; _ga=GA1.1.{n}; shop_session=") for n in range(40)]
    assert ["behav.distributed_walk" in d.reason_codes for d in decisions].index(True) <= 25
    assert decisions[-1].verdict is Verdict.CHALLENGE


async def test_a_shop_naming_no_session_cookie_watches_only_pages_without_any_cookie():
    eng = engine(traffic={"session_cookies": []})
    codes: set[str] = set()
    for n in range(40):
        codes |= set((await visit(eng, f"/product/{500 + n}", T0 + n * 0.5, ip=rotating(n),
                                  cookies="consent=yes")).reason_codes)
    assert "behav.distributed_walk" not in codes
    walked = [await visit(eng, f"/product/{900 + n}", T0 + 30 + n * 0.5, ip=rotating(n)) for n in range(40)]
    assert "behav.distributed_walk" in walked[-1].reason_codes


async def test_the_walk_is_per_client_software_and_needs_many_addresses_and_no_session():
    eng = engine()

    firefox = [("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
               ("accept", "text/html,*/*;q=0.8"), ("accept-language", "en-US"), ("accept-encoding", "gzip")]
    # Four client softwares: header orders of their own (the stack key leaves the UA's text out).
    stacks = [CHROME_NAVIGATION, firefox, firefox[::-1], [firefox[1], firefox[0], *firefox[2:]]]
    codes: set[str] = set()
    for n in range(160):  # four stacks take turns: each walks every fourth id, wider than WALK_STEP_GAP
        codes |= set((await visit(eng, f"/product/{n}", T0 + n, ip=rotating(n), headers=stacks[n % 4])).reason_codes)
    assert "behav.distributed_walk" not in codes
    three = engine()  # three take turns: each stack sees every third id, a step within the gap
    walked = [await visit(three, f"/product/{n}", T0 + n, ip=rotating(n), headers=stacks[n % 3]) for n in range(160)]
    assert all("behav.distributed_walk" in d.reason_codes for d in walked[-30:])
    one_address, with_cookies = engine(), engine()
    for n in range(60):
        codes |= set((await visit(one_address, f"/product/{n}", T0 + n * 2, ip="203.0.113.5")).reason_codes)
        codes |= set((await visit(with_cookies, f"/product/{n}", T0 + n * 2, ip=rotating(n),
                                  cookies=f"shop_session=s{n}")).reason_codes)
    assert "behav.distributed_walk" not in codes  # one address is enumeration's; sessions are not watched
    assert "behav.enumeration" in codes


async def test_the_product_api_is_followed_as_the_pages_are():
    # /api/product/<id> has a group of its own in the shipped policy, with product_ids: true.
    one_address, rotating_pool = engine(), engine()
    for n in range(40):
        alone = await visit(one_address, f"/api/product/{300 + n}", T0 + n * 1.7 + (n % 3) * 0.4,
                            headers=FETCH_JSON, cookies="shop_session=s1")
        spread = await visit(rotating_pool, f"/api/product/{900 + n}", T0 + n * 0.5, ip=rotating(n), headers=FETCH_JSON)
    assert alone.route_group == "product-api" and "behav.enumeration" in alone.reason_codes
    assert "behav.distributed_walk" in spread.reason_codes and spread.verdict is Verdict.CHALLENGE


async def test_a_group_may_follow_product_ids_or_not():
    groups = yaml.safe_load(default_policy_text())["groups"]
    unwatched = engine(groups=[{**g, "product_ids": False} if g["name"] == "product" else g for g in groups])
    codes: set[str] = set()
    for n in range(40):
        codes |= set((await visit(unwatched, f"/product/{n}", T0 + n * 1.7 + (n % 3) * 0.4,
                                  cookies="shop_session=s1")).reason_codes)
    assert "behav.enumeration" not in codes
    with pytest.raises(PolicyError, match=r"groups\[0\]\.product_ids.*true or false"):
        policy_from_mapping({"groups": [{"name": "p", "paths": ["/p/*"], "product_ids": "yes"}]})


async def test_log_lines_never_count_as_cookieless():
    # An access log does not say whether a cookie was sent: its product pages stay off the stack key.
    eng = engine()
    lines = [facts_from_headers(rotating(n), "GET", f"/product/{n}", T0 + n, [("user-agent", CHROME_UA)],
                                source="log") for n in range(40)]
    for facts in lines:
        assert "behav.distributed_walk" not in (await eng.decide(facts)).reason_codes
    (stack,) = await eng.store.observe([Observation("stack", header_fingerprint(lines[0]), count=0)], T0 + 50)
    assert stack.total == 0
