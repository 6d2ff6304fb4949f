"""ShieldMiddleware as pure ASGI: decisions reach the app, refusals are pages, bad input never raises."""

from __future__ import annotations

import asyncio
import inspect
import warnings

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

from shieldware.decision import Verdict
from shieldware.engine import Engine
from shieldware.metrics import Metrics
from shieldware.middleware import ShieldMiddleware, send_simple
from shieldware.policy import default_policy, policy_from_text
from tests.support import CHROME_NAVIGATION


async def echo(request: Request) -> JSONResponse:
    shield = request.state.shield
    return JSONResponse({
        "verdict": shield.verdict.value, "score": shield.bot_score, "ref": shield.ref,
        "group": shield.route_group,
        "headers": {k: v for k, v in request.headers.items() if k.startswith("x-shield-")},
    })


async def ws_echo(websocket):
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def make_app(**policy_overrides):
    app = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"]), WebSocketRoute("/ws", ws_echo)])
    engine = Engine(default_policy(**policy_overrides), metrics=Metrics())
    return ShieldMiddleware(app, engine=engine)


def test_allowed_request_carries_decision_and_trusted_headers():
    client = TestClient(make_app())
    response = client.get("/product/1", headers={**dict(CHROME_NAVIGATION), "x-shield-score": "0",
                                                 "x-shield-verdict": "allow"})
    body = response.json()
    assert body["verdict"] == "allow" and body["group"] == "product"
    assert body["headers"]["x-shield-ref"] == body["ref"]
    assert body["headers"]["x-shield-score"] == str(round(body["score"]))
    assert body["headers"]["x-shield-verdict"] == "allow"


def test_forged_shield_headers_from_the_client_are_dropped():
    client = TestClient(make_app(mode="monitor"))
    response = client.get("/product/1", headers={"user-agent": "curl/8.0", "x-shield-verdict": "allow",
                                                 "x-shield-score": "0"}).json()
    assert response["headers"]["x-shield-verdict"] == "block"
    assert response["headers"]["x-shield-score"] == str(round(response["score"])) != "0"


def test_underscore_spellings_of_shield_headers_cannot_pose_to_a_wsgi_shop():
    """A WSGI (or PHP, or Rack) shop reads "X_Shield_Verdict" as X-Shield-Verdict: both are
    HTTP_X_SHIELD_VERDICT. The client's spellings are taken off, on the lane's path as on Python's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in favour of a2wsgi; the mapping is the same
        from starlette.middleware.wsgi import WSGIMiddleware

    def wsgi_shop(environ, start_response):
        start_response("200 OK", [("content-type", "text/plain")])
        return [environ.get("HTTP_X_SHIELD_VERDICT", "").encode()]

    client = TestClient(ShieldMiddleware(WSGIMiddleware(wsgi_shop), policy=default_policy(mode="monitor")))
    forged = {"x_shield_verdict": "allow", "X-Shield_Score": "0"}
    for headers in [dict(CHROME_NAVIGATION)] * 3 + [{**dict(CHROME_NAVIGATION), **forged}] * 3:
        seen = client.get("/product/1", headers=headers).text
        assert seen in {verdict.value for verdict in Verdict}  # ours alone: two would be joined, "allow,allow"
    for _ in range(3):
        assert client.get("/product/1", headers={"user-agent": "curl/8.0", **forged}).text == "block"


def test_monitor_mode_evaluates_but_lets_through():
    client = TestClient(make_app(mode="monitor"))
    response = client.get("/product/1", headers={"user-agent": "python-requests/2.31"})
    assert response.status_code == 200
    assert response.json()["verdict"] == "block"


def test_rules_allow_and_block():
    policy = policy_from_text("""
groups: [{name: browse, paths: ["/*"], challenge_above: 50, block_above: 80}]
rules:
  - {name: office, when: {ip: [127.0.0.0/8]}, action: allow}
  - {name: no-libraries, when: {ua.category: [http-library]}, action: block}
""")
    app = Starlette(routes=[Route("/{path:path}", echo)])
    client = TestClient(ShieldMiddleware(app, engine=Engine(policy, metrics=Metrics())), client=("127.0.0.1", 1))
    assert client.get("/x", headers={"user-agent": "curl/8"}).status_code == 200
    other = TestClient(ShieldMiddleware(app, engine=Engine(policy, metrics=Metrics())), client=("192.0.2.1", 1))
    refused = other.get("/x", headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 "
                                                    "Firefox/120.0 python-requests/2.0"})
    assert refused.status_code == 403


def test_websocket_handshake_is_checked():
    client = TestClient(make_app())
    with client.websocket_connect("/ws", headers=dict(CHROME_NAVIGATION)) as ws:
        assert ws.receive_text() == "hello"
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as closed, \
            client.websocket_connect("/ws", headers={"user-agent": "python-requests/2"}):
        pass
    assert closed.value.code == 1008


def test_metrics_endpoint_serves_prometheus_text_to_loopback_only():
    app = make_app()
    local = TestClient(app, client=("127.0.0.1", 1))
    local.get("/product/1", headers={"user-agent": "curl/8"})
    text = local.get("/.shieldware/metrics").text
    assert 'shieldware_decisions_total{action="block",group="product",verdict="block"} 1.0' in text
    assert 'shieldware_reasons_total{code="ua.tool",group="product"} 1.0' in text
    assert "shieldware_decision_seconds_bucket" in text
    assert 'shieldware_store_up{kind="memory"} 1.0' in text
    families = {family.name: family for family in text_string_to_metric_families(text)}  # all of it parses
    assert families["shieldware_store_up"].type == "gauge"
    remote = TestClient(app, client=("192.0.2.7", 1))
    assert remote.get("/.shieldware/metrics").status_code == 404


def test_a_failing_signal_is_skipped_not_fatal():
    class Broken:
        name = "broken"

        def inspect(self, facts, inspection):
            raise RuntimeError("boom")

    app = Starlette(routes=[Route("/{path:path}", echo)])
    engine = Engine(default_policy(), signals=[Broken()], metrics=Metrics())
    response = TestClient(ShieldMiddleware(app, engine=engine)).get("/x")
    assert response.status_code == 200


def test_lifespan_passes_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(ShieldMiddleware(app)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


def test_servers_take_the_middleware_for_an_asgi3_app():
    # uvicorn asks asyncio, hypercorn asks inspect whether __call__ is a coroutine function: the
    # frameless entry (handle) must stay beside it, never replace it.
    middleware = ShieldMiddleware(make_app())
    config = uvicorn.Config(middleware, log_level="warning")
    config.load()
    assert config.interface == "asgi3"
    assert inspect.iscoroutinefunction(middleware.__call__)


header_text = st.binary(max_size=300)
header_lists = st.lists(
    st.tuples(st.sampled_from([b"user-agent", b"cookie", b"forwarded", b"x-forwarded-for", b"accept",
                               b"host", b"x-real-ip", b"sec-ch-ua", b"accept-language"]) | st.binary(max_size=20),
              header_text),
    max_size=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers=header_lists, path=st.text(max_size=40), method=st.sampled_from(["GET", "POST", "B\xe4D", ""]))
def test_malformed_requests_never_raise(headers, path, method):
    sent = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    middleware = ShieldMiddleware(app, policy=default_policy(trusted_proxies=["0.0.0.0/0", "::/0"]))
    scope = {"type": "http", "method": method, "path": "/" + path, "headers": headers,
             "client": ("10.0.0.1", 1), "query_string": b"\xff\xfe", "scheme": "http", "http_version": "1.1"}
    asyncio.run(middleware(scope, receive, send))
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] in (200, 403, 429)


async def test_large_cookie_and_duplicate_headers_over_real_http():
    from tests.support import live_server

    app = make_app()
    with live_server(app) as server:
        async with httpx.AsyncClient() as client:
            headers = [*CHROME_NAVIGATION, ("cookie", "a=" + "x" * 100_000), ("accept", "text/html"),
                       ("forwarded", "for=;;=")]
            response = await client.get(server.url + "/product/2", headers=headers)
    assert response.status_code == 200
    # The oversized cookie and the broken Forwarded header became evidence, not an error.
    assert response.json()["score"] >= 25


def routing_middleware() -> tuple[ShieldMiddleware, list]:
    """A monitor-mode middleware in front of an app that keeps the decision of each request."""
    seen: list = []

    async def app(scope, receive, send):
        seen.append(scope["state"]["shield"])
        await send_simple(send, 200, [], b"ok")

    return ShieldMiddleware(app, engine=Engine(default_policy(mode="monitor"), metrics=Metrics())), seen


async def get_paths(middleware: ShieldMiddleware, paths: list[str], client_ip: str) -> None:
    """Each path, as one Chrome client's GET, through the middleware as a server would call it."""
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    headers = [(name.lower().encode(), value.encode()) for name, value in CHROME_NAVIGATION]
    for path in paths:
        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": headers, "client": (client_ip, 5000), "scheme": "http", "http_version": "1.1"}
        await middleware.handle(scope, receive, send)


async def test_crafted_paths_cannot_move_a_request_out_of_its_route_group():
    """"/static/../login" is "/login" to most shops: routed as the login it is, on the Python path
    (the lane leaves such paths alone), and noted as no browser's URL. The server has already
    decoded %2e, so the scope's path shows plain dots."""
    middleware, seen = routing_middleware()
    await get_paths(middleware, ["/product/1", "/static/../login", "//login", "/static/./..//login"] * 3,
                    "203.0.113.7")
    groups = [(decision.path, decision.route_group, "req.malformed" in decision.reason_codes) for decision in seen]
    assert groups[:4] == [("/product/1", "product", False), ("/login", "login", True), ("/login", "login", False),
                          ("/login", "login", True)]
    assert groups[4:8] == groups[8:] == groups[:4]  # the same again once the lane has plans
    if middleware.lane is not None:
        assert middleware.lane.counts()["path"] >= 9  # every dotted or doubled path was left to Python

    # Java servlet containers drop path parameters ("..;" climbs), IIS reads "\\" as "/". ("/about"
    # gives the lane a plan for the browse group, where a lane reading these paths as written
    # would put them.)
    seen.clear()
    await get_paths(middleware, ["/product/1", "/about", "/login;jsessionid=7", "/static/..;/login",
                                 "/static\\..\\login"] * 3, "203.0.113.8")
    groups = [(decision.path, decision.route_group, "req.malformed" in decision.reason_codes) for decision in seen]
    assert groups[:5] == [("/product/1", "product", False), ("/about", "browse", False), ("/login", "login", False),
                          ("/login", "login", True), ("/login", "login", True)]
    assert groups[5:10] == groups[10:] == groups[:5]


async def test_a_path_spelled_in_capitals_or_with_a_trailing_slash_stays_in_its_route_group():
    """Express, ASP.NET, IIS and Spring serve "/LOGIN" and "/login/" as "/login": both route as the
    login, in the lane and in Python alike, and the lane keeps them (no path of these is odd)."""
    middleware, seen = routing_middleware()
    paths = ["/product/1", "/LOGIN", "/login/", "/Account/Login/", "/Static/App.CSS", "/loginx"]
    await get_paths(middleware, paths * 3, "203.0.113.7")
    groups = [(decision.path, decision.route_group) for decision in seen]
    expected = [("/product/1", "product"), ("/LOGIN", "login"), ("/login/", "login"),
                ("/Account/Login/", "login"), ("/Static/App.CSS", "static"), ("/loginx", "browse")]
    assert groups == expected * 3  # the lane, once it has plans, groups as Python did
    if middleware.lane is not None:
        assert middleware.lane.counts()["path"] == 0
