"""Outcome feedback, three ways (status rules, app API, X-Shield-Event), and the login account field."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shieldware.engine import Engine
from shieldware.metrics import Metrics
from shieldware.middleware import ShieldMiddleware
from shieldware.outcomes import account_from_body, parse_event_header
from shieldware.policy import PolicyError, policy_from_text
from shieldware.store.base import Observation
from tests.support import CHROME_NAVIGATION, live_server

POLICY = """
version: 1
trusted_proxies: [127.0.0.1/32]
decision_log: {path: %(log)s, all: true}
groups:
  - name: login
    paths: [/login, /api/login, /signin, /hdr-login]
    challenge_above: 40
    block_above: 80
    watch: {login: [/login, /api/login, /signin, /hdr-login]}
    account_field: [username, email]
    outcomes:
      - {method: POST, path: [/login, /api/login], status: [401, 403], event: login_failed}
      - {method: POST, path: /hdr-login, status: 200, header: {x-login-result: failed}, event: login_failed}
  - name: browse
    paths: ["/*"]
"""

seen_by_app: list[dict] = []


async def plain_login(request: Request) -> Response:
    """A shop that reports nothing: only its status says how the login went."""
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.json()
    else:
        body = dict(await request.form())
    seen_by_app.append(body)
    ok = body.get("password") == "right"
    if request.query_params.get("report") and not ok:
        request.state.shield.report("login_failed", account=body.get("username") or body.get("email"))
    return JSONResponse({"ok": ok, "user": body.get("username") or body.get("email")}, status_code=200 if ok else 401)


async def header_login(request: Request) -> Response:
    form = await request.form()
    ok = form.get("password") == "right"
    event = "login_succeeded" if ok else f"login_failed; account={form.get('username')}"
    return Response("done", headers={"x-shield-event": event, "x-other": "kept"})


async def status_header_login(request: Request) -> Response:
    form = await request.form()
    return Response("page", headers={"x-login-result": "ok" if form.get("password") == "right" else "failed"})


@pytest.fixture
def server(tmp_path):
    log = tmp_path / "decisions.jsonl"
    clock_now = [1_800_000_000.0]
    app = Starlette(routes=[Route("/login", plain_login, methods=["POST"]),
                            Route("/api/login", plain_login, methods=["POST"]),
                            Route("/signin", header_login, methods=["POST"]),
                            Route("/hdr-login", status_header_login, methods=["POST"])])
    engine = Engine(policy_from_text(POLICY % {"log": log}), metrics=Metrics())
    shield = ShieldMiddleware(app, engine=engine, clock=lambda: clock_now[0])
    seen_by_app.clear()
    with live_server(shield) as live, httpx.Client(base_url=live.url, headers=dict(CHROME_NAVIGATION)) as client:
        live.client, live.engine, live.log, live.now = client, engine, log, clock_now
        yield live


def account_failures(server, account: str, expected: float = 1.0) -> float:
    """Failures in the account's hour window; outcomes land just after the response, so wait a moment."""
    for _ in range(200):
        stats = asyncio.run(server.engine.store.observe([Observation("li.acct", account, count=0.0)],
                                                        server.now[0]))
        if stats[0].count(3) >= expected:
            break
        time.sleep(0.01)
    return stats[0].count(3)


def login_records(server, expected: int) -> list[dict]:
    for _ in range(200):  # reports are fed back in a task after the response
        records = [json.loads(line) for line in server.log.read_text().splitlines()]
        logins = [r for r in records if r.get("type") == "login"]
        if len(logins) >= expected:
            return logins
        time.sleep(0.01)
    return logins


def test_status_rule_counts_a_401_as_a_failure_with_the_account_from_the_form(server):
    response = server.client.post("/login", data={"username": "Alice ", "password": "wrong&=%"})
    assert response.status_code == 401
    # The app read the body the middleware had already looked at, byte for byte.
    assert seen_by_app[-1] == {"username": "Alice ", "password": "wrong&=%"}
    assert account_failures(server, "alice") == 1
    record = login_records(server, 1)[-1]
    assert record["account"] == "alice" and record["outcome"] == "failed" and record["source"] == "status"
    assert "wrong" not in server.log.read_text()


def test_json_login_body_gives_the_account_and_reaches_the_app(server):
    response = server.client.post("/api/login", json={"email": "Bob@Example.com", "password": "nope"})
    assert response.status_code == 401 and response.json()["user"] == "Bob@Example.com"
    assert account_failures(server, "bob@example.com") == 1
    assert "nope" not in server.log.read_text()


def test_app_report_and_status_rule_count_once(server):
    for _ in range(3):
        server.now[0] += 5
        server.client.post("/login?report=1", data={"username": "carol", "password": "x"})
    records = login_records(server, 3)
    assert [r["source"] for r in records] == ["app"] * 3
    assert account_failures(server, "carol", 3) == 3


def test_x_shield_event_is_read_and_stripped(server):
    response = server.client.post("/signin", data={"username": "dave", "password": "bad"})
    assert "x-shield-event" not in response.headers
    assert response.headers["x-other"] == "kept"
    record = login_records(server, 1)[-1]
    assert (record["account"], record["outcome"], record["source"]) == ("dave", "failed", "app")
    assert account_failures(server, "dave") == 1


def test_status_rule_on_a_200_with_a_configured_header(server):
    server.client.post("/hdr-login", data={"username": "erin", "password": "bad"})
    server.client.post("/hdr-login", data={"username": "erin", "password": "right"})
    assert account_failures(server, "erin") == 1
    assert [r["outcome"] for r in login_records(server, 1)] == ["failed"]


def test_large_and_chunked_bodies_pass_through_untouched(server):
    padding = "x" * 40_000
    response = server.client.post("/login", data={"username": "frank", "password": "wrong", "pad": padding})
    assert response.status_code == 401 and seen_by_app[-1]["pad"] == padding

    def chunks():
        yield b"username=gina&"
        yield b"password=wrong"

    response = server.client.post("/login", content=chunks(),
                                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 401 and seen_by_app[-1] == {"username": "gina", "password": "wrong"}
    assert account_failures(server, "gina") == 1


def test_event_header_parsing_and_bad_input():
    assert parse_event_header("login_failed; account=al%20ice") == ("login_failed", {"account": "al ice"})
    assert parse_event_header("Payment_Declined") == ("payment_declined", {})
    assert parse_event_header("login_failed; password=secret")[1] == {}
    assert parse_event_header("<script>") is None
    assert parse_event_header("") is None
    assert account_from_body("application/json", b"{not json", ("username",)) is None
    assert account_from_body("application/json", b"[1, 2]", ("username",)) is None
    assert account_from_body("multipart/form-data; boundary=x", b"--x", ("username",)) is None
    assert account_from_body("application/x-www-form-urlencoded", b"user%6eame=Zed&password=p", ("username",)) == "zed"


def test_policy_refuses_the_password_as_account_field_and_bad_outcomes():
    bad = """
version: 1
groups:
  - name: login
    paths: [/login]
    account_field: password
    outcomes:
      - {status: 999, event: login_failed}
      - {status: 401, event: "Not An Event"}
    watch: {teleport: [/x]}
"""
    with pytest.raises(PolicyError) as caught:
        policy_from_text(bad, "bad.yaml")
    text = str(caught.value)
    assert "groups[0].account_field" in text and "never the password" in text
    assert "groups[0].outcomes[0].status" in text and "groups[0].outcomes[1].event" in text
    assert "groups[0].watch.teleport: unknown field" in text


@given(body=st.binary(max_size=300), content_type=st.sampled_from(
    ["application/x-www-form-urlencoded", "application/json", "application/ld+json; charset=utf-8", "text/plain", ""]))
@settings(max_examples=300, deadline=None)
def test_account_extraction_never_raises_on_arbitrary_bodies(body, content_type):
    account = account_from_body(content_type, body, ("username", "email"))
    assert account is None or (isinstance(account, str) and 0 < len(account) <= 128)


@given(value=st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_event_header_parsing_never_raises(value):
    parsed = parse_event_header(value)
    assert parsed is None or ("password" not in parsed[1] and all(len(v) <= 128 for v in parsed[1].values()))
