"""The telemetry endpoint on a real uvicorn server: scoring, session binding, caps, bad bodies, policy."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import yaml

from shieldware.biometrics.endpoint import RECORD_KIND
from shieldware.demo import build_demo_app
from shieldware.policy import default_policy_text, policy_from_mapping
from shieldware.store.memory import MemoryStore
from tests.biometrics_samples import human_telemetry, linear_bot_telemetry
from tests.support import CHROME_NAVIGATION, CHROME_UA, live_server

TELEMETRY = "/.shieldware/telemetry"


def shop_policy(login: dict | None = None, **sections: object):
    """The shipped policy without the traffic signal: these tests send many requests from one
    loopback client on purpose, which its rate limits would (rightly) throttle."""
    raw = yaml.safe_load(default_policy_text())
    for group in raw["groups"]:
        group["skip_signals"] = [*group.get("skip_signals", []), "traffic"]
        if group["name"] == "login" and login:
            group.update(login)
    raw.update(sections)
    return policy_from_mapping(raw, "<test policy>")


@pytest.fixture(scope="module")
def shop():
    store = MemoryStore()
    app = build_demo_app(policy=shop_policy(
        login={"require_telemetry": {"methods": ["POST"], "min_human": 0.5}},
        biometrics={"inject_groups": ["login"], "max_body_bytes": 8192, "rate_per_minute": 600,
                    "burst": 100}),
        store=store)
    with live_server(app) as server:
        server.store = store
        server.app = app
        yield server


def browser(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers=dict(CHROME_NAVIGATION), timeout=10)


def counted(app, outcome: str) -> float:
    registry = app.engine.metrics.registry
    value = registry.get_sample_value("shieldware_telemetry_batches_total", {"outcome": outcome})
    return value or 0.0


async def record_of(server, session_id: str) -> dict | None:
    return await server.store.get_record(RECORD_KIND, session_id, time.time())


def post(client: httpx.Client, body: dict | bytes) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(TELEMETRY, content=content, headers={"content-type": "text/plain;charset=UTF-8"})


async def test_batch_is_scored_and_stored_for_the_session(shop):
    with browser(shop.url) as client:
        answer = post(client, linear_bot_telemetry())
        assert answer.status_code == 204
        assert answer.content == b""  # no score for the client to tune against
        session_id = client.cookies.get("sw_sid")
        assert session_id and "HttpOnly" in answer.headers["set-cookie"]
        record = await record_of(shop, session_id)
        codes = {r["code"] for r in record["reasons"]}
        assert {"bio.linear_path", "bio.automation_flag", "bio.uniform_keys", "bio.instant_click"} <= codes
        assert record["human"] < 0.1
    with browser(shop.url) as client:
        assert post(client, human_telemetry()).status_code == 204
        record = await record_of(shop, client.cookies.get("sw_sid"))
        assert record["human"] > 0.9
        assert record["reasons"][0]["code"] == "bio.human_motion"


async def test_batches_of_one_session_merge(shop):
    with browser(shop.url) as client:
        assert post(client, {"v": 1, "seq": 0, "env": {"webdriver": False}}).status_code == 204
        session_id = client.cookies.get("sw_sid")
        first = await record_of(shop, session_id)
        assert [r["code"] for r in first["reasons"]] == ["bio.no_input"]
        assert post(client, human_telemetry()).status_code == 204
        merged = await record_of(shop, session_id)
        assert merged["batches"] == 2 and merged["events"] > 100
        assert "bio.no_input" not in {r["code"] for r in merged["reasons"]}


BAD_BODIES = [
    b"",
    b"not json at all",
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
    b'{"v": 2}',
    b'{"v": 1, "pointer": [[1, 2, 3]]}',
    b'{"v": 1, "pointer": "lots"}',
    b'{"v": 1, "pointer": [[1, 2, 3, 9]]}',
    b'{"v": 1, "pointer": [[-5, 2, 3, 0]]}',
    b'{"v": 1, "pointer": [[1, 1e400, 3, 0]]}',
    b'{"v": 1, "pointer": [[1, true, 3, 0]]}',
    b'{"v": 1, "keys": [[100, 50]]}',
    b'{"v": 1, "env": {"webdriver": "yes"}}',
    b'{"v": 1, "env": {"globals": [1, 2]}}',
    b'{"v": 1, "seq": -1}',
    b'{"v": 1, "t": "soon"}',
    b'{"v": 1, "pointer": [' + b",".join([b"[1,2,3,0]"] * 5000) + b"]}",
    b"[" * 4000 + b"]" * 4000,
    b'{"v": 1, "pointer": [[1, 2, 3, ' + b"9" * 400 + b"]]}",
    b'{"v": 1, "pointer": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}',
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_malformed_body_gets_400_with_reason_and_is_counted(shop, body):
    before = counted(shop.app, "malformed") + counted(shop.app, "too_large")
    with browser(shop.url) as client:
        answer = post(client, body)
        assert answer.status_code in (400, 413)
        assert answer.json()["error"]
        if answer.status_code == 400:
            assert answer.json()["error"].startswith("malformed telemetry:")
    assert counted(shop.app, "malformed") + counted(shop.app, "too_large") == before + 1
    with browser(shop.url) as client:  # and the server carries on
        assert client.get("/login").status_code == 200


def test_oversized_bodies_are_refused_without_buffering(shop):
    with browser(shop.url) as client:
        declared = post(client, b"x" * 9000)
        assert declared.status_code == 413

        def chunks():  # no Content-Length: the cap must hold while reading
            for _ in range(40):
                yield b"y" * 1024

        streamed = client.post(TELEMETRY, content=chunks())
        assert streamed.status_code == 413
        assert "larger than 8192" in streamed.json()["error"]
        assert client.get("/login").status_code == 200


def test_only_post(shop):
    with browser(shop.url) as client:
        assert client.get(TELEMETRY).status_code == 405


def test_collector_script_is_served_and_starts_a_session(shop):
    with browser(shop.url) as client:
        answer = client.get("/.shieldware/collector.js")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/javascript")
        assert "sendBeacon" in answer.text
        assert client.cookies.get("sw_sid")


def test_collector_tag_injected_into_configured_groups_only(shop):
    with browser(shop.url) as client:
        login = client.get("/login")
        assert '<script src="/.shieldware/collector.js" async></script></body>' in login.text
        assert int(login.headers["content-length"]) == len(login.content)
        assert "collector.js" not in client.get("/products").text


def test_login_requires_human_telemetry(shop):
    form = {"username": "alice", "password": "wonderland"}
    with browser(shop.url) as client:
        client.get("/login")  # GET is not covered by the requirement
        refused = client.post("/login", data=form)
        assert refused.status_code == 403
        assert post(client, human_telemetry()).status_code == 204
        assert client.post("/login", data=form).status_code == 303
    with browser(shop.url) as client:
        assert post(client, linear_bot_telemetry()).status_code == 204
        assert client.post("/login", data=form).status_code == 403


def test_bot_telemetry_raises_the_score_of_later_requests(shop):
    with browser(shop.url) as client:
        assert client.get("/product/7").status_code == 200
        assert post(client, linear_bot_telemetry()).status_code == 204
        assert client.get("/product/7").status_code == 403
    with browser(shop.url) as client:
        assert post(client, human_telemetry()).status_code == 204
        assert client.get("/product/7").status_code == 200


def test_session_cookie_moved_to_another_browser_carries_no_verdict(shop):
    with browser(shop.url) as client:
        assert post(client, linear_bot_telemetry()).status_code == 204
        session_id = client.cookies.get("sw_sid")
    other = {**dict(CHROME_NAVIGATION), "user-agent": CHROME_UA.replace("120.0.0.0", "121.0.0.0")}
    with httpx.Client(base_url=shop.url, headers=other, cookies={"sw_sid": session_id}, timeout=10) as client:
        assert client.get("/product/8").status_code == 200


def test_rate_cap_per_session():
    policy = shop_policy(biometrics={"rate_per_minute": 6, "burst": 3})
    app = build_demo_app(policy=policy, store=MemoryStore())
    with live_server(app) as server, browser(server.url) as client:
        statuses = [post(client, {"v": 1}).status_code for _ in range(5)]
        assert statuses[:3] == [204, 204, 204]
        assert statuses[-1] == 429
        limited = post(client, {"v": 1})
        assert int(limited.headers["retry-after"]) >= 1
        assert counted(app, "rate_limited") >= 2
