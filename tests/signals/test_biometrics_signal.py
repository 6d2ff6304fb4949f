"""The biometrics signal in the engine: one record read only with a session cookie, failures contained."""

from __future__ import annotations

from shieldware.biometrics.endpoint import RECORD_KIND, merge_session, user_agent_hash
from shieldware.biometrics.scoring import assess
from shieldware.biometrics.telemetry import parse_telemetry
from shieldware.decision import Verdict
from shieldware.engine import Engine
from shieldware.facts import facts_from_headers
from shieldware.store.base import StoreUnavailable
from shieldware.store.memory import MemoryStore
from tests.biometrics.test_biometrics_endpoint import shop_policy
from tests.biometrics_samples import human_telemetry, linear_bot_telemetry
from tests.support import CHROME_NAVIGATION, CHROME_UA

SESSION = "A" * 24
NOW = 1_700_000_000.0


class CountingStore(MemoryStore):
    """The real memory store, counting record reads (and able to fail them on purpose)."""

    def __init__(self, fail: Exception | None = None) -> None:
        super().__init__()
        self.reads = 0
        self.fail = fail

    async def get_record(self, kind: str, key: str, now: float) -> dict | None:
        self.reads += 1
        if self.fail is not None:
            raise self.fail
        return await super().get_record(kind, key, now)


def request(path: str, method: str = "GET", cookie: bool = True, now: float = NOW):
    headers = list(CHROME_NAVIGATION)
    if cookie:
        headers.append(("cookie", f"sw_sid={SESSION}; shop_session=x"))
    return facts_from_headers("203.0.113.9", method, path, now, headers)


async def remember(store: MemoryStore, body: dict, at: float = NOW) -> None:
    record = merge_session(None, assess(parse_telemetry(body)), at, user_agent_hash(CHROME_UA))
    await store.put_record(RECORD_KIND, SESSION, record, 1800, at)


async def test_one_lookup_only_with_the_cookie_and_none_for_static():
    store = CountingStore()
    engine = Engine(shop_policy(), store)
    await engine.decide(request("/product/1", cookie=False))
    assert store.reads == 0
    await engine.decide(request("/product/1"))
    assert store.reads == 1
    await engine.decide(request("/static/app.css"))
    assert store.reads == 1


async def test_stored_reasons_join_the_score():
    store = MemoryStore()
    engine = Engine(shop_policy(), store)
    clean = await engine.decide(request("/product/1"))
    await remember(store, linear_bot_telemetry())
    flagged = await engine.decide(request("/product/1"))
    codes = {r.code for r in flagged.reasons}
    assert {"bio.automation_flag", "bio.linear_path"} <= codes
    assert flagged.bot_score > clean.bot_score + 50
    rule = shop_policy(rules=[{"name": "scripted", "when": {"bio.verdict": "automated"}, "action": "block"}])
    assert (await Engine(rule, store).decide(request("/product/1"))).rule == "scripted"
    await remember(store, human_telemetry())
    trusted = await engine.decide(request("/product/1"))
    assert trusted.bot_score <= clean.bot_score
    assert "bio.human_motion" in {r.code for r in trusted.reasons}


async def test_requirement_wants_recent_human_telemetry():
    store = MemoryStore()
    engine = Engine(shop_policy(login={"require_telemetry": {"methods": ["POST"], "max_age": 600}}), store)
    assert (await engine.decide(request("/login", "POST"))).verdict is Verdict.CHALLENGE
    assert (await engine.decide(request("/login", "GET"))).verdict is Verdict.ALLOW
    await remember(store, human_telemetry())
    assert (await engine.decide(request("/login", "POST"))).verdict is Verdict.ALLOW
    stale = await engine.decide(request("/login", "POST", now=NOW + 900))
    assert stale.verdict is Verdict.CHALLENGE
    assert "bio.telemetry_missing" in {r.code for r in stale.reasons}


async def test_store_failure_in_lookup_is_evidence_not_a_crash():
    engine = Engine(shop_policy(), CountingStore(fail=StoreUnavailable("redis timed out")))
    decision = await engine.decide(request("/product/1"))
    assert decision.verdict is Verdict.ALLOW
    assert "store.unavailable" in {r.code for r in decision.reasons}
    engine = Engine(shop_policy(), CountingStore(fail=KeyError("bug")))
    decision = await engine.decide(request("/product/1"))
    assert "signal.error" in {r.code for r in decision.reasons}


async def test_telemetry_carried_by_another_request_never_fails_it():
    from shieldware.middleware import ShieldMiddleware

    async def app(scope, receive, send):  # pragma: no cover - never reached here
        raise AssertionError

    store = MemoryStore()
    middleware = ShieldMiddleware(app, policy=shop_policy(), store=store)
    fresh = facts_from_headers("203.0.113.9", "POST", "/.shieldware/challenge/verify", NOW, CHROME_NAVIGATION)
    headers = await middleware.telemetry.ingest_alongside(linear_bot_telemetry(), fresh)
    assert headers and headers[0][1].startswith(b"sw_sid=")
    session_id = headers[0][1].split(b";")[0].split(b"=")[1].decode()
    record = await store.get_record(RECORD_KIND, session_id, NOW)
    assert "bio.linear_path" in {r["code"] for r in record["reasons"]}
    assert await middleware.telemetry.ingest_alongside({"v": 1, "pointer": "junk"}, request("/x", "POST")) == []
    assert await middleware.telemetry.ingest_alongside(None, request("/x", "POST")) == []


def test_telemetry_under_another_user_agent_cannot_wipe_the_record():
    bot = merge_session(None, assess(parse_telemetry(linear_bot_telemetry())), NOW, user_agent_hash(CHROME_UA))
    later = merge_session(bot, assess(parse_telemetry(human_telemetry())), NOW + 5, user_agent_hash("other"))
    codes = {r["code"] for r in later["reasons"]}
    assert {"bio.automation_flag", "bio.linear_path", "bio.ua_changed"} <= codes
    assert later["ua"] == user_agent_hash(CHROME_UA)
    assert later["human"] < bot["human"] + 0.01
    same = merge_session(bot, assess(parse_telemetry(human_telemetry())), NOW + 5, user_agent_hash(CHROME_UA))
    assert "bio.ua_changed" not in {r["code"] for r in same["reasons"]}
