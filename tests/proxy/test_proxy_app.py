"""The proxy app in-process (engine feedback), its header rules, and the command's options."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import socket
import time

import httpx
import pytest
import requests
import yaml

from shieldware.commands.proxy import parse_count, parse_listen, parse_network, parse_seconds, parse_size
from shieldware.policy import default_policy_text
from shieldware.proxy import ProxySettings, build_proxy_app
from shieldware.proxy.access_log import escape_field
from shieldware.proxy.app import HEALTH_PROBE_EVERY
from shieldware.proxy.headers import MalformedRequest, client_headers_for_upstream, response_headers_for_client
from shieldware.proxy.serving import AddressLimits, counted_as
from shieldware.proxy.settings import LOOPBACK
from tests.challenge_support import page_config, solve
from tests.proxy_support import proxy_process, recorded_upstream
from tests.redis_support import RedisProcess, need_redis, redis_server
from tests.support import CHROME_NAVIGATION, free_port, live_server


@pytest.fixture(scope="module")
def upstream():
    with recorded_upstream() as server:
        yield server


def test_upstream_status_is_fed_back_into_the_engine(upstream):
    app = build_proxy_app(ProxySettings(upstream=upstream.url))
    outcomes: list[tuple[str, int | None]] = []

    async def listener(decision, now, status, event, fields):
        outcomes.append((decision.path, status))

    app.engine.on_event(listener)
    with live_server(app) as proxy, httpx.Client(headers=CHROME_NAVIGATION) as browser:
        assert browser.get(proxy.url + "/status/404").status_code == 404
        assert browser.get(proxy.url + "/status/401").status_code == 401
        assert browser.get(proxy.url + "/page").status_code == 200
    assert outcomes == [("/status/404", 404), ("/status/401", 401), ("/page", 200)]


def test_the_shop_gets_one_set_of_shield_headers_whoever_decided(upstream):
    """The middleware leaves X-Shield-* out of the forwarder's scope and the forwarder writes them
    from the decision: the same for requests the lane answers and those the Python path decides,
    and a client's own are taken off either way. Shoppers behind a trusted edge, one page each, so
    no rate limit speaks: after the first, the lane answers them from its template."""
    app = build_proxy_app(ProxySettings(upstream=upstream.url, monitor=True, trusted_proxies=("127.0.0.1/32",)))
    seen = []

    def lane_served() -> int:
        counts = app.middleware.lane.counts()
        return counts["made"] + counts["hit"]

    with live_server(app) as proxy, httpx.Client(headers=CHROME_NAVIGATION) as browser:
        for n in range(1, 60):
            extra = {"x-forwarded-for": f"192.0.2.{n}"}
            if n == 1:
                extra["x-shield-verdict"] = "allow-me"
            response = browser.get(proxy.url + "/echo-headers", headers=extra)
            assert response.status_code == 200
            seen.append([(name, value) for name, value in response.json()["headers"] if name.startswith("x-shield")])
            if lane_served() >= 3:
                break
    assert lane_served() >= 3 and app.middleware.lane.counts()["miss"] >= 1  # both paths were taken
    for headers in seen:
        assert [name for name, _ in headers] == ["x-shield-score", "x-shield-verdict", "x-shield-ref"]
        assert dict(headers)["x-shield-verdict"] == "allow" and dict(headers)["x-shield-score"].isdigit()
    refs = [dict(headers)["x-shield-ref"] for headers in seen]
    assert len(set(refs)) == len(refs) and all(re.fullmatch(r"[0-9a-f]{6}-[0-9a-f]{7}", ref) for ref in refs)


def test_several_workers_with_memory_store_warn_and_serve(upstream):
    with proxy_process("--upstream", upstream.url, "--workers", "2") as proxy:
        with httpx.Client(headers=CHROME_NAVIGATION) as browser:
            # Four pages: within the browse group's per-IP burst of the default policy (5/s).
            statuses = {browser.get(proxy.url + f"/page/{n}").status_code for n in range(4)}
        assert requests.get(proxy.url + "/page/x", timeout=10).status_code == 403
        printed = proxy.stop()
    assert statuses == {200}
    assert "2 workers with the memory:// store" in printed
    assert "redis://" in printed


# No keep-alive: every request a new connection, which the kernel hands to either worker.
EACH_REQUEST_A_CONNECTION = httpx.Limits(max_keepalive_connections=0)


def worker_of(response: httpx.Response) -> str:
    """The answering worker's process tag: the first part of every reference id it makes (in the
    response when refused, in the headers the upstream saw and echoed when passed)."""
    ref = response.headers.get("x-shield-ref") or dict(response.json()["headers"])["x-shield-ref"]
    return ref.split("-")[0]


def wait_for_both_workers(browser: httpx.Client) -> None:
    """The second worker may still be starting when the first answers the health check. Each probe
    names an address of its own, so where the proxy trusts loopback's X-Forwarded-For, probes
    spend no client's rate limit."""
    deadline, seen, probe = time.monotonic() + 60, set(), 0
    while len(seen) < 2 and time.monotonic() < deadline:
        probe += 1
        seen.add(worker_of(browser.get("/echo-headers", headers={"x-forwarded-for": f"192.0.2.{probe}"})))


def statuses_by_worker(browser: httpx.Client, **request: object) -> dict[str, list[int]]:
    """GET /echo-headers until each worker has answered three times (60 requests at most)."""
    answered: dict[str, list[int]] = {}
    for _ in range(60):
        page = browser.get("/echo-headers", **request)
        answered.setdefault(worker_of(page), []).append(page.status_code)
        if len(answered) == 2 and min(len(v) for v in answered.values()) >= 3:
            break
    return answered


def write_policy(tmp_path, browse_limits: list[str], **changes: object) -> str:
    """The shipped policy with the browse group's per-address limits replaced, and `changes`."""
    policy = yaml.safe_load(default_policy_text())
    for group in policy["groups"]:
        if group["name"] == "browse":
            group["limits"] = {"ip": browse_limits}
    policy.update(changes)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return str(path)


def test_several_workers_share_a_signing_key_so_a_clearance_holds_on_each(upstream, tmp_path):
    # Limits out of the way: this test is about keys, and every request comes from one address.
    policy = write_policy(tmp_path, ["1000/s"], challenge={"difficulty": 8}, rules=[
        {"name": "challenge-echo", "when": {"path": "/echo-headers"}, "action": "challenge"}])
    unset = {name: "" for name in ("SHIELDWARE_KEYS", "SHIELDWARE_KEY_FILE")}
    with proxy_process("--upstream", upstream.url, "--workers", "2", "--policy", policy, env=unset) as proxy, \
            httpx.Client(base_url=proxy.url, headers=CHROME_NAVIGATION, limits=EACH_REQUEST_A_CONNECTION,
                         timeout=10) as browser:
        wait_for_both_workers(browser)
        config = page_config(browser.get("/echo-headers").text)
        answer = browser.post("/.shieldware/challenge/verify", headers={"accept": "application/json"}, json={
            "challenge": config["token"], "counter": solve(config["token"], config["difficulty"]),
            "url": config["url"], "solve_ms": 40, "telemetry": {}})
        assert answer.status_code == 200, answer.text
        answered = statuses_by_worker(browser)
        printed = proxy.stop()
    assert len(answered) == 2 and all(statuses == [200] * len(statuses) for statuses in answered.values()), answered
    assert "the workers share a key made for this run" in printed


def test_several_workers_with_redis_share_one_rate_limit(upstream, tmp_path):
    """One allowance an hour per address, two workers, one Redis: a client gets it once in all,
    not once from each worker."""
    policy = write_policy(tmp_path, ["1/hour"])
    with redis_server(tmp_path / "redis") as redis, \
            proxy_process("--upstream", upstream.url, "--workers", "2", "--policy", policy,
                          "--store", redis.uri, "--trusted-proxy", "127.0.0.1/32") as proxy, \
            httpx.Client(base_url=proxy.url, headers=CHROME_NAVIGATION, limits=EACH_REQUEST_A_CONNECTION,
                         timeout=10) as browser:
        wait_for_both_workers(browser)
        answered = statuses_by_worker(browser, headers={"x-forwarded-for": "198.51.100.7"})
    statuses = [status for worker in answered.values() for status in worker]
    assert len(answered) == 2, answered  # both workers were asked
    # Past the allowance every answer is a refusal: 429, or 403 once the client's score reaches
    # block (a cookieless client hammering one page draws behaviour signals too). The kernel may
    # hand one worker a long run of connections before the other answers three times.
    assert statuses.count(200) == 1, answered
    assert all(status in (429, 403) for status in statuses if status != 200), answered
    assert 429 in statuses, answered


def scope_with(headers, client=("127.0.0.1", 5000), scheme="http"):
    return {"type": "http", "headers": headers, "client": client, "scheme": scheme}


def test_connection_named_headers_are_dropped_and_ipv6_forwarded_is_quoted():
    headers, length, chunked = client_headers_for_upstream(
        scope_with([(b"host", b"shop.example"), (b"connection", b"Keep-Alive, X-Hop"), (b"x-hop", b"1"),
                    (b"transfer-encoding", b"chunked"), (b"expect", b"100-continue"), (b"x-kept", b"2")]),
        peer_ip="2001:db8::7", client_ip="2001:db8::7", peer_trusted=False, rewrite_host=None)
    names = [name for name, _ in headers]
    assert "x-hop" not in names and "connection" not in names and "expect" not in names
    assert ("x-kept", "2") in headers
    assert dict(headers)["forwarded"] == 'for="[2001:db8::7]";proto=http;host=shop.example'
    assert (length, chunked) == (None, True)


def test_content_length_is_dropped_when_the_body_is_chunked():
    headers, length, chunked = client_headers_for_upstream(
        scope_with([(b"host", b"shop.example"), (b"content-length", b"5"),
                    (b"transfer-encoding", b"chunked")]),
        peer_ip="127.0.0.1", client_ip="127.0.0.1", peer_trusted=False, rewrite_host=None)
    names = [name for name, _ in headers]
    assert "content-length" not in names and "transfer-encoding" not in names
    assert (length, chunked) == (None, True)


@pytest.mark.parametrize("named", [b"Content-Length", b"host", b"keep-alive, content-length"])
def test_a_connection_header_naming_the_length_or_host_is_malformed(named):
    """Honoured, "Connection: content-length" would send the body on as a request of its own."""
    scope = scope_with([(b"host", b"shop.example"), (b"connection", named), (b"content-length", b"39")])
    with pytest.raises(MalformedRequest, match="frames or routes"):
        client_headers_for_upstream(scope, peer_ip="127.0.0.1", client_ip="127.0.0.1", peer_trusted=False,
                                    rewrite_host=None)


@pytest.mark.parametrize("peer_trusted", [False, True])
def test_underscore_spellings_cannot_pose_as_forwarding_headers(peer_trusted):
    """A PHP or WSGI shop reads "X_Real_IP" as X-Real-IP (both are HTTP_X_REAL_IP to it). (The
    middleware takes the spellings of X-Shield-* off: tests/test_middleware.py.)"""
    posing = [(b"x_real_ip", b"198.51.100.1"), (b"x-forwarded_for", b"198.51.100.2"), (b"x_forwarded_proto", b"https"),
              (b"x_forwarded_host", b"evil.example")]
    scope = scope_with([(b"host", b"shop.example"), *posing, (b"x_custom", b"kept")])
    headers, _, _ = client_headers_for_upstream(scope, peer_ip="127.0.0.1", client_ip="127.0.0.1",
                                                peer_trusted=peer_trusted, rewrite_host=None)
    names = [name for name, _ in headers]
    assert not any(name.encode() in dict(posing) for name in names)
    assert ("x_custom", "kept") in headers  # other names with underscores are the shop's business
    assert dict(headers)["x-real-ip"] == "127.0.0.1" and dict(headers)["x-forwarded-proto"] == "http"


@pytest.mark.parametrize("peer_trusted", [False, True])
def test_headers_that_would_rewrite_the_target_never_reach_the_shop(peer_trusted):
    """Zend Framework 1 (Magento 1) and older Symfony read X-Original-URL / X-Rewrite-URL as the path:
    a request judged as a stylesheet would be served as a product page."""
    overriding = [(b"x-original-url", b"/product/9"), (b"X-Rewrite-URL", b"/product/9"), (b"x_rewrite_url", b"/p/9"),
                  (b"x-original_url", b"/p/9")]
    scope = scope_with([(b"host", b"shop.example"), *[(name.lower(), value) for name, value in overriding]])
    headers, _, _ = client_headers_for_upstream(scope, peer_ip="127.0.0.1", client_ip="127.0.0.1",
                                                peer_trusted=peer_trusted, rewrite_host=None)
    names = {name for name, _ in headers}
    assert not names & {"x-original-url", "x-rewrite-url", "x_rewrite_url", "x-original_url"}
    assert "host" in names


def test_a_connection_header_cannot_take_off_shieldware_headers():
    scope = scope_with([(b"host", b"shop.example"), (b"connection", b"close, X-Shield-Verdict, x-shield-score, x-a"),
                        (b"x-a", b"1"), (b"x-shield-score", b"91"), (b"x-shield-verdict", b"block")])
    headers, _, _ = client_headers_for_upstream(scope, peer_ip="127.0.0.1", client_ip="127.0.0.1",
                                                peer_trusted=False, rewrite_host=None)
    assert ("x-shield-score", "91") in headers and ("x-shield-verdict", "block") in headers
    assert "x-a" not in dict(headers)


@pytest.mark.parametrize("rewrite_host", [None, "upstream:8080"])
def test_a_second_host_or_none_in_http_1_1_is_malformed(rewrite_host):
    def forwarded(headers, version="1.1"):
        scope = {**scope_with(headers), "http_version": version}
        return client_headers_for_upstream(scope, peer_ip="127.0.0.1", client_ip="127.0.0.1", peer_trusted=False,
                                           rewrite_host=rewrite_host)[0]

    with pytest.raises(MalformedRequest, match="more than once"):
        forwarded([(b"host", b"shop.example"), (b"accept", b"*/*"), (b"host", b"evil.example")])
    with pytest.raises(MalformedRequest, match="more than once"):
        forwarded([(b"host", b""), (b"host", b"evil.example")])
    with pytest.raises(MalformedRequest, match="must name its host"):
        forwarded([(b"accept", b"*/*")])
    hosts = [value for name, value in forwarded([(b"accept", b"*/*")], version="1.0") if name == "host"]
    assert hosts == ([] if rewrite_host is None else [rewrite_host])  # the forwarder names the upstream
    hosts = [value for name, value in forwarded([(b"host", b"shop.example")]) if name == "host"]
    assert hosts == [rewrite_host or "shop.example"]
    # RFC 9112 §3.2: a Host that is no host is refused too, even when the forwarder names the upstream
    for unlawful in (b"evil.example/reset", b"shop.example@evil.example", b"shop example", b"shop.example:80:80",
                     b"[::1", b"shop.ex\xffample", b"a" * 300):
        with pytest.raises(MalformedRequest, match="not a host name"):
            forwarded([(b"host", unlawful)])
    for lawful in (b"shop.example:8443", b"[2001:db8::1]:8080", b"127.0.0.1", b"b%C3%BCcher.example", b""):
        hosts = [value for name, value in forwarded([(b"host", lawful)]) if name == "host"]
        assert hosts == [rewrite_host or lawful.decode()]


def test_response_headers_keep_repeats_and_drop_hop_by_hop():
    kept, length = response_headers_for_client([
        (b"Set-Cookie", b"a=1"), (b"Connection", b"keep-alive"), (b"Set-Cookie", b"b=2"),
        (b"Content-Length", b"12"), (b"Transfer-Encoding", b"chunked"), (b"Location", b"/x")])
    assert kept == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"content-length", b"12"),
                    (b"location", b"/x")]
    assert length == 12


def test_command_line_values():
    assert parse_size("10M") == 10 * 1024 * 1024
    assert parse_size("512k") == 512 * 1024
    assert parse_size("1048576") == 1048576
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    assert parse_listen(":9000") == ("0.0.0.0", 9000)
    for bad in ("ten", "-1M"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_listen("localhost")
    assert parse_seconds("0.5") == 0.5 and parse_seconds("30") == 30.0
    for bad in ("0", "-3", "soon", "nan", "inf"):  # a timeout of none, or never, is a mistake
        with pytest.raises(argparse.ArgumentTypeError, match="seconds above 0"):
            parse_seconds(bad)
    assert parse_count("256") == 256 and parse_count("0") == 0
    for bad in ("-1", "many", "2.5", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="whole number"):
            parse_count(bad)
    assert parse_network("10.0.0.0/8") == "10.0.0.0/8" and parse_network(" 2001:db8::1 ") == "2001:db8::1"
    for bad in ("300.1.1.1/8", "10.0.0.0/33", "edge.internal", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="address or network"):
            parse_network(bad)
    for bad, says in (("ftp://shop", "http:// or https://"), ("shop:8000", "http:// or https://"),
                      ("http://[::1", "not a usable URL"), ("http://127.0.0.1:99999", "not a usable URL"),
                      ("http://127.0.0.1:80x", "not a usable URL"), ("http://:8000", "names no host"),
                      ("http://127.0.0.1:0", "from 1 to 65535"), ("http://shop:s3cret@127.0.0.1:8000", "password"),
                      ("http://127.0.0.1:8000/?a=1", "base URL"), ("http://127.0.0.1:8000/#top", "base URL"),
                      ("http://127.0.0.1:8000/shop?", "base URL"), ("http://shop:s3cret@:8000", "names no host"),
                      ("http://shop:s3cret@127.0.0.1:99999", "not a usable URL")):
        with pytest.raises(ValueError, match=re.escape(says)) as refused:
            ProxySettings(upstream=bad)
        assert "s3cret" not in str(refused.value)
    for good in ("http://127.0.0.1:8000", "https://shop.internal", "http://[::1]:8000/base/", "http://shop:8000/b"):
        assert ProxySettings(upstream=good).upstream == good
    with pytest.raises(ValueError, match="--check-path must start with '/'"):
        ProxySettings(upstream="http://shop", check_path="check")
    with pytest.raises(ValueError, match="one would hide the other"):
        ProxySettings(upstream="http://shop", check_path="/.well", health_path="/.well")


async def test_address_limits_count_open_connections_per_address_or_ipv6_64(caplog):
    limits = AddressLimits(asyncio.get_running_loop(), 2, LOOPBACK)
    assert limits.admit("203.0.113.7") and limits.admit("203.0.113.7")
    assert not limits.admit("203.0.113.7") and not limits.admit("203.0.113.7")
    assert limits.admit("198.51.100.1")  # another address has its own count
    assert limits.exempt.trusts("127.0.0.1") and limits.exempt.trusts("::1")  # a local edge: not counted
    # an IPv6 subscriber's whole /64 is one share; an IPv4 address mapped into IPv6 is itself
    assert counted_as("2001:db8:0:1::5") == counted_as("2001:db8:0:1:ffff::9") == "2001:db8:0:1::/64"
    assert counted_as("2001:db8:0:2::5") == "2001:db8:0:2::/64"
    assert counted_as("::ffff:203.0.113.7") == counted_as("203.0.113.7") == "203.0.113.7"
    limits.release("203.0.113.7")
    assert limits.admit("203.0.113.7") and not limits.admit("203.0.113.7")
    for _ in range(3):
        limits.release("203.0.113.7")
    assert "203.0.113.7" not in limits.open  # an address with nothing open is forgotten
    # the first refusal was logged at once; the two after it wait for the period's line
    assert [r.getMessage().split(": ")[-1] for r in caplog.records] == ["203.0.113.7 (1)"]
    assert limits.report() and caplog.records[-1].getMessage().startswith("closed 2 new connection(s)")
    assert not limits.report()


def test_log_fields_are_escaped_like_nginx():
    assert escape_field('say "hi"\\') == "say \\x22hi\\x22\\x5C"
    assert escape_field("plain text") == "plain text"


def test_health_says_degraded_while_redis_is_down_and_never_shows_its_password(upstream, tmp_path):
    """The proxy goes on serving while Redis is away (each route group as its on_store_failure
    says), so the health answer stays 200; its body tells the operator, and the store's password
    appears neither there nor on the proxy's start-up line."""
    need_redis()
    redis = RedisProcess(tmp_path / "redis", None, "--requirepass", "s3cret").start()
    store = f"redis://:s3cret@127.0.0.1:{redis.port}/0?timeout=0.2&breaker_cooldown=0.2"
    try:
        with proxy_process("--upstream", upstream.url, "--store", store, "--monitor") as proxy:
            health = requests.get(proxy.url + "/.shieldware/health", timeout=10).json()
            assert health["status"] == "ok" and health["mode"] == "monitor", health
            assert health["store"] == {"kind": "redis", "reachable": True,
                                       "uri": store.replace(":s3cret@", ":***@")}, health
            redis.stop()
            answer = requests.get(proxy.url + "/.shieldware/health", timeout=10)
            assert answer.status_code == 200 and answer.json()["status"] == "degraded", answer.text
            assert answer.json()["store"]["reachable"] is False and "failed" in answer.json()["store"]["error"]
            metrics = requests.get(proxy.url + "/.shieldware/metrics", timeout=10).text
            assert 'shieldware_store_up{kind="redis"} 0.0' in metrics
            shopper = httpx.get(proxy.url + "/echo-headers", headers=CHROME_NAVIGATION, timeout=10)
            assert shopper.status_code == 200  # served all the same
            redis.start()
            for _ in range(200):  # the breaker lets a PING through after 0.2 s; bounded
                if requests.get(proxy.url + "/.shieldware/health", timeout=10).json()["status"] == "ok":
                    break
                time.sleep(0.05)
            assert requests.get(proxy.url + "/.shieldware/health", timeout=10).json()["status"] == "ok"
            metrics = requests.get(proxy.url + "/.shieldware/metrics", timeout=10).text
            assert 'shieldware_store_up{kind="redis"} 1.0' in metrics
            printed = proxy.stop()
        assert "s3cret" not in printed + answer.text and f"redis://:***@127.0.0.1:{redis.port}/0" in printed
    finally:
        redis.stop()


def test_health_says_degraded_while_the_shop_accepts_no_connection():
    """The proxy can relay nothing while its upstream is down: health says so (still 200, as for a
    store outage), with the reason for the operator, and says ok again once the shop listens."""
    port = free_port()
    with proxy_process("--upstream", f"http://127.0.0.1:{port}", "--monitor") as proxy:
        answer = requests.get(proxy.url + "/.shieldware/health", timeout=10)
        assert answer.status_code == 200 and answer.json()["status"] == "degraded", answer.text
        shop = answer.json()["upstream"]
        assert shop["url"] == f"http://127.0.0.1:{port}" and shop["reachable"] is False
        assert f"cannot connect to 127.0.0.1:{port}" in shop["error"]
        assert answer.json()["store"]["reachable"] is True  # the store is fine: the shop is the cause
        time.sleep(HEALTH_PROBE_EVERY)  # one probe of the shop answers the health asks of a second
        with socket.create_server(("127.0.0.1", port)):  # the shop is back: it accepts connections
            back = requests.get(proxy.url + "/.shieldware/health", timeout=10).json()
        assert back["status"] == "ok" and back["upstream"] == {"url": f"http://127.0.0.1:{port}", "reachable": True}


def accepted(listener: socket.socket) -> int:
    """How many connections wait on `listener`, each accepted and closed."""
    listener.setblocking(False)
    count = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            listener.accept()[0].close()
            count += 1
    return count


async def test_one_probe_of_the_shop_answers_the_health_asks_of_a_second():
    """The health endpoint is open to anyone: a flood of asks must not be a flood of connections
    on the shop. Asks at the same moment share one probe; a second later there is a new one."""
    with socket.create_server(("127.0.0.1", 0)) as shop:
        app = build_proxy_app(ProxySettings(upstream=f"http://127.0.0.1:{shop.getsockname()[1]}"))
        try:
            answers = await asyncio.gather(*(app.shop_unreachable(100.0) for _ in range(5)))  # while it runs
            answers.append(await app.shop_unreachable(100.0 + HEALTH_PROBE_EVERY / 2))  # after, within the second
            assert answers == [None] * 6
            assert accepted(shop) == 1  # a probe returns once connected: its connection is queued
            assert await app.shop_unreachable(100.0 + HEALTH_PROBE_EVERY) is None
            assert accepted(shop) == 1
        finally:
            await app.close()


def test_health_tells_only_its_status_to_addresses_outside_the_metrics_allowlist(upstream, tmp_path):
    """Whether blocking is on, where the shop is and what the store is are for the operator:
    the health page shows them to `metrics.allow_from` (loopback by default) and no one else."""
    policy = write_policy(tmp_path, ["1000/s"], metrics={"path": "/.shieldware/metrics",
                                                          "allow_from": ["192.0.2.0/24"]})
    with proxy_process("--upstream", upstream.url, "--policy", policy) as proxy:
        answer = requests.get(proxy.url + "/.shieldware/health", timeout=10)
        assert answer.status_code == 200 and answer.json() == {"status": "ok"}, answer.text
        assert answer.headers["cache-control"] == "no-store"
        trusted = requests.get(proxy.url + "/.shieldware/health", headers={"x-forwarded-for": "192.0.2.9"},
                               timeout=10)
        assert trusted.json() == {"status": "ok"}  # an address a client names itself is no credential
