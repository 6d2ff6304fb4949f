"""`shieldware proxy` as a real process in front of a real upstream on loopback."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import threading
import time

import aiohttp
import httpx
import pytest
import requests

from shieldware.analyze.pipeline import analyze_sources
from tests.proxy_support import MIB, UpstreamRecorder, build_upstream, memory_kib, proxy_process, recorded_upstream
from tests.support import CHROME_NAVIGATION, free_port, live_server, read_until_closed

MEMORY_GROWTH_LIMIT_KIB = 50 * 1024


@pytest.fixture(scope="module")
def upstream():
    with recorded_upstream(ws="websockets-sansio") as server:
        yield server


@pytest.fixture(scope="module")
def monitor_proxy(upstream, tmp_path_factory):
    """Monitor mode: every request passes, so plain test clients exercise the forwarding itself."""
    log = tmp_path_factory.mktemp("proxy") / "access.log"
    with proxy_process("--upstream", upstream.url, "--monitor", "--max-body", "64M", "--read-timeout", "3",
                       "--access-log", str(log)) as proxy:
        proxy.access_log = log
        yield proxy


@pytest.fixture(scope="module")
def enforce_proxy(upstream):
    with proxy_process("--upstream", upstream.url) as proxy:
        yield proxy


def upstream_headers(response: requests.Response) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name, []).append(value)
    return seen


def failures_counted(url: str) -> dict[tuple[str, str, str], float]:
    """shieldware_proxy_failures_total, by (side, reason, answered), from the proxy's metrics."""
    text = requests.get(url + "/.shieldware/metrics", timeout=10).text
    counted = {}
    for labels, value in re.findall(r"^shieldware_proxy_failures_total\{(.*)\} (\S+)$", text, re.MULTILINE):
        named = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        counted[(named["side"], named["reason"], named["answered"])] = float(value)
    return counted


def metric_value(url: str, name: str) -> float:
    """An unlabelled counter from the proxy's metrics (0 before it was first counted)."""
    text = requests.get(url + "/.shieldware/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_the_proxy_decides_each_loop_turns_requests_ahead_of_their_tasks(monitor_proxy):
    """serving.DecidingAhead: the server hands each event-loop turn's requests to the fast lane in
    one call before their tasks run, and every request is then served with the answer left in its
    scope (counted as shieldware_fast_lane_decided_ahead_total), its X-Shield-* headers intact."""
    before = metric_value(monitor_proxy.url, "shieldware_fast_lane_decided_ahead_total")
    with httpx.Client(headers=CHROME_NAVIGATION) as browser:
        for n in range(30):
            response = browser.get(f"{monitor_proxy.url}/echo-headers?page={n}", timeout=10)
            assert response.status_code == 200
            seen = [name for name, _ in response.json()["headers"]]
            assert seen.count("x-shield-verdict") == 1 and seen.count("x-shield-ref") == 1
            assert "shieldware.decided_ahead" not in response.text
    # the 30 pages and the first metrics read, each decided ahead
    assert metric_value(monitor_proxy.url, "shieldware_fast_lane_decided_ahead_total") - before >= 31


# ---- memory: bodies stream, they are never buffered ----------------------------------------------


def test_200_mb_download_streams_with_bounded_proxy_memory(monitor_proxy):
    requests.get(monitor_proxy.url + "/download?mb=2", timeout=30).raise_for_status()  # warm the pool
    before = memory_kib(monitor_proxy.pid)
    received = 0
    with requests.get(monitor_proxy.url + "/download?mb=200", stream=True, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(200 * MIB)
        for chunk in response.iter_content(MIB):
            received += len(chunk)
    after = memory_kib(monitor_proxy.pid)
    assert received == 200 * MIB
    growth = after["VmHWM"] - before["VmRSS"]
    print(f"200 MB download: proxy RSS {before['VmRSS']} KiB before, peak {after['VmHWM']} KiB after")
    assert growth < MEMORY_GROWTH_LIMIT_KIB, f"proxy peak grew by {growth} KiB during a 200 MB download"


def test_50_mb_upload_streams_with_bounded_proxy_memory(monitor_proxy):
    before = memory_kib(monitor_proxy.pid)

    def body():
        for _ in range(50):
            yield b"u" * MIB

    response = requests.post(monitor_proxy.url + "/upload", data=body(), timeout=60)  # chunked upload
    after = memory_kib(monitor_proxy.pid)
    assert response.status_code == 200
    assert response.json() == {"received": 50 * MIB}
    growth = after["VmHWM"] - before["VmRSS"]
    print(f"50 MB upload: proxy RSS {before['VmRSS']} KiB before, peak {after['VmHWM']} KiB after")
    assert growth < MEMORY_GROWTH_LIMIT_KIB, f"proxy peak grew by {growth} KiB during a 50 MB upload"


def test_upload_with_content_length_arrives_whole(monitor_proxy):
    payload = bytes(range(256)) * 4096  # 1 MiB, not all zeros
    response = requests.put(monitor_proxy.url + "/upload", data=payload, timeout=30)
    assert response.json() == {"received": len(payload)}


# ---- failures: 413, 502, 504, client disconnect --------------------------------------------------


def test_oversized_body_is_413_and_never_reaches_upstream(upstream):
    with proxy_process("--upstream", upstream.url, "--monitor", "--max-body", "1M") as proxy:
        hits = upstream.recorder.hits
        declared = requests.post(proxy.url + "/upload", data=b"x" * (2 * MIB), timeout=30)
        assert declared.status_code == 413
        assert "too large" in declared.text
        assert upstream.recorder.hits == hits

        def chunked():
            for _ in range(3):
                yield b"y" * MIB

        streamed = requests.post(proxy.url + "/upload", data=chunked(), timeout=30)
        assert streamed.status_code == 413
        small = requests.post(proxy.url + "/upload", data=b"z" * 1000, timeout=30)
        assert small.json() == {"received": 1000}
        # the declared one and the streamed one: the operator sees what the clients were refused
        assert failures_counted(proxy.url) == {("client", "body_too_large", "413"): 2.0}


def test_a_host_missing_or_given_twice_is_400_and_never_reaches_upstream(monitor_proxy, upstream):
    """RFC 9112 §3.2: the shop and the edge could each read a different host from such a request."""
    hits = upstream.recorder.hits
    refused_before = failures_counted(monitor_proxy.url).get(("client", "bad_request", "400"), 0.0)
    twice = _exchange(monitor_proxy.port,
                      [b"GET /page HTTP/1.1\r\nHost: shop\r\nHost: evil\r\nConnection: close\r\n\r\n"])
    assert twice.startswith(b"HTTP/1.1 400 ") and b"more than once" in twice
    missing = _exchange(monitor_proxy.port, [b"GET /page HTTP/1.1\r\nConnection: close\r\n\r\n"])
    assert missing.startswith(b"HTTP/1.1 400 ") and b"must name its host" in missing
    handshake = (b"GET /ws HTTP/1.1\r\nHost: shop\r\nHost: evil\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    refused = _exchange(monitor_proxy.port, [handshake])
    assert refused.startswith(b"HTTP/1.1 400 ") and b"more than once" in refused
    # a Host that is no host: a shop building a password reset link from it would mail the attacker's
    poisoned = _exchange(monitor_proxy.port, [b"GET /page HTTP/1.1\r\nHost: evil.example/x?\r\n\r\n"])
    assert poisoned.startswith(b"HTTP/1.1 400 ") and b"not a host name" in poisoned
    assert upstream.recorder.hits == hits
    assert failures_counted(monitor_proxy.url)[("client", "bad_request", "400")] == refused_before + 4
    # HTTP/1.0 may leave the host out: the upstream's own name is sent for it
    old = _exchange(monitor_proxy.port, [b"GET /echo-headers HTTP/1.0\r\n\r\n"])
    assert old.startswith(b"HTTP/1.1 200 ") and upstream.recorder.hits == hits + 1
    assert json.loads(old.split(b"\r\n\r\n", 1)[1])["headers"].count(["host", upstream.url.split("//")[1]]) == 1


def _exchange(port: int, pieces: list[bytes], pause: float = 0.0) -> bytes:
    """Send `pieces` as separate writes (pausing between them so each is its own read), then read
    until the proxy closes the connection; a write the closed connection refuses ends the sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(pause)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
        return received


def test_a_connection_header_cannot_smuggle_a_body_past_the_proxy(monitor_proxy, upstream):
    """"Connection: content-length", honoured, would send the POST on without its length, and its
    body, a request of its own, would reach the shop on the pooled connection without any decision
    (and its answer would go to the next client). Refused, nothing reaches the shop; the shop's own
    x-shield headers cannot be named away either, nor posed as with underscores."""
    hits = upstream.recorder.hits
    inner = b"GET /smuggled HTTP/1.1\r\nHost: shop\r\n\r\n"
    for named in (b"content-length", b"Host"):
        outer = (b"POST /page HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive, " + named +
                 b"\r\nContent-Length: %d\r\n\r\n" % len(inner) + inner)
        after = b"GET /after HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
        answer = _exchange(monitor_proxy.port, [outer + after])
        assert answer.startswith(b"HTTP/1.1 400 ") and b"frames or routes" in answer, answer
    assert upstream.recorder.hits == hits
    named_away = _exchange(monitor_proxy.port, [b"GET /echo-headers HTTP/1.1\r\nHost: shop\r\n"
                                                b"Connection: close, X-Shield-Score, X-Shield-Verdict\r\n"
                                                b"X_Shield_Verdict: allow\r\nX_Real_IP: 198.51.100.1\r\n\r\n"])
    seen = dict(json.loads(named_away.split(b"\r\n\r\n", 1)[1])["headers"])
    assert seen["x-shield-score"].isdigit() and seen["x-shield-verdict"] in ("allow", "challenge", "block")
    assert "x_shield_verdict" not in seen and "x_real_ip" not in seen  # CGI servers read them as ours


def test_an_http_1_0_request_with_transfer_encoding_is_400_and_never_reaches_upstream(monitor_proxy, upstream):
    """HTTP/1.0 has no chunked framing, so an edge in front of the proxy may have read this body
    by its Content-Length: the chunked "body" would then hide a request of its own (RFC 9112 §6.1)."""
    hits = upstream.recorder.hits
    inner = b"GET /smuggled HTTP/1.1\r\nHost: shop\r\n\r\n"
    body = b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"
    # with a Content-Length too, the HTTP parser refuses it before the proxy sees it
    for framing, says in ((b"", b"framing is in doubt"), (b"Content-Length: 5\r\n", b"Invalid HTTP request")):
        answer = _exchange(monitor_proxy.port, [b"POST /page HTTP/1.0\r\nHost: shop\r\n" + framing +
                                                b"Transfer-Encoding: chunked\r\n\r\n" + body])
        assert answer.startswith(b"HTTP/1.1 400 ") and says in answer, answer
        assert answer.count(b"HTTP/1.1 ") == 1  # the connection closed: nothing after it was read
    assert upstream.recorder.hits == hits
    # the same body over HTTP/1.1 is lawful, and reaches the shop as one request
    lawful = _exchange(monitor_proxy.port, [b"POST /page HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n"
                                            b"Transfer-Encoding: chunked\r\n\r\n" + body])
    assert lawful.startswith(b"HTTP/1.1 200 ") and upstream.recorder.hits == hits + 1


def test_trace_is_refused_and_never_reaches_upstream(monitor_proxy, upstream):
    """A shop that answers TRACE would echo the X-Shield-* verdict and score back to the client."""
    hits = upstream.recorder.hits
    refused_before = failures_counted(monitor_proxy.url).get(("client", "method_refused", "405"), 0.0)
    answer = requests.request("TRACE", monitor_proxy.url + "/echo-headers", timeout=10)
    assert answer.status_code == 405 and "echo the request back" in answer.text
    assert "x-shield-score" not in answer.text.lower()
    assert upstream.recorder.hits == hits
    assert failures_counted(monitor_proxy.url)[("client", "method_refused", "405")] == refused_before + 1


@contextlib.contextmanager
def raw_upstream(answers: dict[bytes, bytes]):
    """A loopback upstream that answers each request path with fixed raw bytes, keeping connections
    open: for answers no well-behaved server library would write."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            pending = b""
            while chunk := conn.recv(65536):
                pending += chunk
                while b"\r\n\r\n" in pending:
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    conn.sendall(answers[head.split(b" ")[1]])

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_awkward_but_lawful_upstream_answers_keep_the_client_connection():
    """A 304 that names the length it does not send (RFC 9110 §8.6) and a 204 with a length are
    relayed without a body and the client's keep-alive connection goes on; a response followed by
    bytes nobody asked for (a Content-Length too small) is relayed as its length says."""
    answers = {b"/304": b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 1234\r\n\r\n",
               b"/204": b"HTTP/1.1 204 No Content\r\ncontent-length: 3\r\n\r\n",
               b"/short": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nx-planted: 1\r\n\r\n",
               b"/page": b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\npage"}
    with raw_upstream(answers) as upstream_url, proxy_process("--upstream", upstream_url, "--monitor") as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
            for path in (b"/304", b"/204", b"/short", b"/page"):
                client.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: shop\r\n\r\n")
            client.sendall(b"GET /page HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
            answered = read_until_closed(client)
        printed = proxy.stop()
    statuses = re.findall(rb"HTTP/1.1 (\d{3}) ", answered)
    assert statuses == [b"304", b"204", b"200", b"200", b"200"], answered
    assert b"etag: \"v1\"" in answered and b"x-planted" not in answered
    assert answered.count(b"\r\n\r\nok") == 1 and answered.endswith(b"page")
    assert "Exception in ASGI application" not in printed
    assert "sent bytes after its response" in printed


def test_oversized_request_heads_are_431_and_never_reach_upstream(upstream):
    limit = 8 * 1024
    with proxy_process("--upstream", upstream.url, "--monitor", "--max-head", "8k") as proxy:
        hits = upstream.recorder.hits
        # one read: a cookie just past the limit
        cookie = b"sid=" + b"c" * limit
        answer = _exchange(proxy.port, [b"GET /page HTTP/1.1\r\nHost: shop\r\nCookie: " + cookie + b"\r\n\r\n"])
        assert answer.startswith(b"HTTP/1.1 431 ") and b"connection: close" in answer
        # a header trickled in 1 KB writes, never finished: refused once the limit is passed, so the
        # proxy never holds more than the limit and a read of it
        trickle = [b"GET /page HTTP/1.1\r\nHost: shop\r\nX-Pad: "] + [b"p" * 1024] * 64
        answer = _exchange(proxy.port, trickle, pause=0.005)
        assert answer.startswith(b"HTTP/1.1 431 ")
        # a long request line, in pieces
        answer = _exchange(proxy.port, [b"GET /" + b"q" * 4096, b"r" * 4096, b"s" * 4096 + b" HTTP/1.1\r\n\r\n"],
                           pause=0.02)
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert upstream.recorder.hits == hits
        printed = proxy.stop()
    assert printed.count("refused a request head of over 8192 bytes") == 3


def test_head_limit_counts_only_the_head(upstream):
    """No false alarms: a head just under the limit split over reads, a body larger than the limit in
    the head's own read, and pipelined requests after a large body all pass."""
    with proxy_process("--upstream", upstream.url, "--monitor", "--max-head", "8k") as proxy:
        head = b"GET /echo-headers HTTP/1.1\r\nHost: shop\r\nConnection: close\r\nX-Pad: " + b"p" * 7000
        answer = _exchange(proxy.port, [head[:3000], head[3000:], b"\r\n\r\n"], pause=0.02)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"p" * 7000 in answer
        body = b"b" * (64 * 1024)
        upload = b"POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        answer = _exchange(proxy.port, [upload + b"GET /after HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"])
        assert answer.startswith(b"HTTP/1.1 200 ") and b'{"received":65536}' in answer
        assert answer.count(b"HTTP/1.1 200 ") == 2 and b"page /after" in answer
        assert "refused a request head" not in proxy.stop()


def test_an_upstream_response_head_over_max_head_is_502(upstream):
    with proxy_process("--upstream", upstream.url, "--monitor", "--max-head", "8k") as proxy:
        refused = requests.get(proxy.url + "/big-header?bytes=20000", timeout=30)
        passed = requests.get(proxy.url + "/big-header?bytes=7000", timeout=30)
        counted = failures_counted(proxy.url)
        printed = proxy.stop()
    assert counted == {("upstream", "malformed", "502"): 1.0}
    assert refused.status_code == 502 and "could not be reached" in refused.text
    assert "x-pad" not in refused.headers
    assert passed.status_code == 200 and len(passed.headers["x-pad"]) == 7000
    assert "response head of over 8192 bytes" in printed


def test_dot_segments_cannot_reach_above_the_upstream_path(upstream):
    """With --upstream http://shop/base, "/../admin" must not become the shop's "/admin": the
    proxy resolves dot segments (plain or %2e) before it appends the path, as nginx does, and
    refuses the spellings only a looser server climbs with."""
    with proxy_process("--upstream", upstream.url + "/base", "--monitor") as proxy:
        for target, seen in [(b"/a/../../../etc/passwd", b"page /base/etc/passwd"),
                             (b"/a/%2e%2e/%2E%2e/admin?x=1", b"page /base/admin"),
                             (b"/.well-known/security.txt", b"page /base/.well-known/security.txt")]:
            answer = _exchange(proxy.port, [b"GET " + target + b" HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"])
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(seen), (target, answer)
        # what only a looser server climbs with (Tomcat's "..;", IIS's backslash) is refused
        for target in (b"/a/..;/..;/admin", b"/a/..%5c..%5cadmin", b"/a/..%2f..%2fadmin"):
            answer = _exchange(proxy.port, [b"GET " + target + b" HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"])
            assert answer.startswith(b"HTTP/1.1 400 ") and b"loosely" in answer, (target, answer)
        answer = _exchange(proxy.port, [b"GET /cart;jsessionid=7 HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"])
        assert answer.endswith(b"page /base/cart;jsessionid=7")  # path parameters alone pass as they came


def test_late_request_heads_get_408_and_silent_connections_are_closed(upstream):
    """Slowloris: a header trickled a byte at a time, or a connection that never speaks, would
    otherwise hold a file descriptor for ever. A slow upstream is no late head."""
    with proxy_process("--upstream", upstream.url, "--monitor", "--head-timeout", "1") as proxy:
        hits = upstream.recorder.hits
        with socket.create_connection(("127.0.0.1", proxy.port)) as silent, \
                socket.create_connection(("127.0.0.1", proxy.port)) as trickle:
            trickle.sendall(b"GET /page HTTP/1.1\r\nHost: shop\r\nX-Slow: ")
            answered = b""
            for _ in range(100):  # a byte every 0.1 s: 10 s at most, far past the timeout
                try:
                    trickle.sendall(b"a")
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(0.1)
                trickle.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    answered += trickle.recv(65536)
                trickle.setblocking(True)
                if answered:
                    break
            assert answered.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answered
            assert read_until_closed(silent) == b""  # nothing sent, nothing answered: just closed
        # the timeout is for the head alone: a request the upstream takes 2 s over is served
        slow = requests.get(proxy.url + "/slow?seconds=2", timeout=30)
        assert slow.status_code == 200
        assert upstream.recorder.hits == hits + 1
        printed = proxy.stop()
    assert re.search(r"closed \d connection\(s\) with no request head after 1 s \(\d mid-head", printed)


def test_requests_refused_before_the_app_are_in_the_access_log(upstream, tmp_path):
    """Heads too large, too slow or unparsable never reach the app, yet they are the traffic of an
    attack on the proxy itself: each gets an access-log line with what had arrived of it. A
    connection that never spoke gets none (browsers open connections ahead and leave them idle)."""
    log = tmp_path / "access.log"
    with proxy_process("--upstream", upstream.url, "--monitor", "--max-head", "8k", "--head-timeout", "1",
                       "--access-log", str(log)) as proxy:
        big = b"GET /big HTTP/1.1\r\nHost: shop\r\nUser-Agent: Cookie-Monster/1\r\nCookie: " + b"c" * 9000
        assert _exchange(proxy.port, [big + b"\r\n\r\n"]).startswith(b"HTTP/1.1 431 ")
        trickled = [b"GET /slow-head?x=1 HTTP/1.1\r\nHost: shop\r\nX-Slow: "] + [b"a"] * 30
        assert _exchange(proxy.port, trickled, pause=0.1).startswith(b"HTTP/1.1 408 ")
        assert _exchange(proxy.port, [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]).startswith(b"HTTP/1.1 400 ")
        with socket.create_connection(("127.0.0.1", proxy.port)) as silent:
            assert read_until_closed(silent) == b""
        assert requests.get(proxy.url + "/after", timeout=10).status_code == 200
        proxy.stop()
    lines = [line for line in log.read_text().splitlines() if "/.shieldware/health" not in line]  # readiness
    combined = re.compile(r'^127\.0\.0\.1 - - \[[^]]+\] "([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$')
    parsed = [combined.match(line) for line in lines]
    assert all(parsed), lines
    assert [m.group(1, 2, 5) for m in parsed] == [
        ("GET /big HTTP/1.1", "431", "Cookie-Monster/1"),
        ("GET /slow-head?x=1 HTTP/1.1", "408", "-"),
        ("-", "400", "-"),
        ("GET /after HTTP/1.1", "200", f"python-requests/{requests.__version__}"),
    ]
    assert all(int(m.group(3)) > 0 for m in parsed)  # the bytes of each answer


def _wait_for_line(path, fragment: str, seconds: float = 10) -> str:
    """The log's text once it holds `fragment` (lines are flushed in batches, at least once a second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if fragment in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{fragment!r} never reached {path}")


def test_the_access_log_follows_logrotate_and_caps_itself(upstream, tmp_path):
    """logrotate renames the log and expects a new one: the proxy notices within a second, with no
    signal. With --access-log-max it rotates the file itself."""
    log = tmp_path / "access.log"
    with proxy_process("--upstream", upstream.url, "--monitor", "--access-log", str(log)) as proxy:
        requests.get(proxy.url + "/before-rotation", timeout=10)
        _wait_for_line(log, "/before-rotation")
        log.rename(tmp_path / "access.log.1")
        time.sleep(1.2)
        requests.get(proxy.url + "/after-rotation", timeout=10)
        assert "/before-rotation" not in _wait_for_line(log, "/after-rotation")
        assert "/after-rotation" not in (tmp_path / "access.log.1").read_text()
    capped = tmp_path / "capped" / "access.log"
    capped.parent.mkdir()
    with proxy_process("--upstream", upstream.url, "--monitor", "--access-log", str(capped),
                       "--access-log-max", "1k", "--access-log-keep", "2") as proxy:
        for n in range(3):  # each line longer than the cap: each flush fills a file
            requests.get(f"{proxy.url}/page-{n}-{'x' * 1200}", timeout=10)
            _wait_for_line(capped.parent / "access.log.1", f"/page-{n}-")
    assert sorted(p.name for p in capped.parent.glob("access.log*")) == [
        "access.log", "access.log.1", "access.log.2", "access.log.lock"]
    kept = "".join((capped.parent / name).read_text() for name in ("access.log.2", "access.log.1", "access.log"))
    assert "/page-1-" in kept and "/page-2-" in kept and "/page-0-" not in kept  # the oldest file dropped


def test_the_analyzer_names_a_slowloris_run_from_the_proxys_access_log(upstream, tmp_path):
    """The refusals in the access log are evidence: `shieldware analyze` names the address that
    held the proxy's connections with heads it never finished, and not the client beside it."""
    log = tmp_path / "access.log"
    with proxy_process("--upstream", upstream.url, "--monitor", "--head-timeout", "1",
                       "--access-log", str(log)) as proxy:
        held = [socket.create_connection(("127.0.0.1", proxy.port), source_address=("127.0.0.2", 0))
                for _ in range(70)]
        try:
            for sock in held:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: shop\r\nX-Slow: ")
            answers = [read_until_closed(sock) for sock in held]
        finally:
            for sock in held:
                sock.close()
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
        assert requests.get(proxy.url + "/page", headers=dict(CHROME_NAVIGATION), timeout=10).status_code == 200
        proxy.stop()
    result = analyze_sources([str(log)])
    by_ip = {finding.ip: finding for finding in result.ips}
    slowloris = by_ip["127.0.0.2"]
    assert slowloris.category == "bad-bot", slowloris.reason_codes
    refused = next(e for e in slowloris.reasons if e.code == "conn.refused_requests")
    assert refused.detail["refused"] == 70 and refused.detail["without_request_line"] == 0
    assert "conn.refused_requests" not in by_ip["127.0.0.1"].reason_codes


def _connect_from(address: str, port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(address, 0))


def _served(sock: socket.socket) -> bool:
    """One keep-alive request on an open connection: True when it is answered 200."""
    try:
        sock.sendall(b"GET /page HTTP/1.1\r\nHost: shop\r\n\r\n")
        return sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    except (ConnectionResetError, BrokenPipeError):
        return False


def _closed_at_once(sock: socket.socket) -> bool:
    """The proxy closed the connection without a byte (a reset counts as closed too)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


async def test_one_address_holds_at_most_max_connections_per_ip(upstream):
    """A socket flood from one address gets --max-connections-per-ip connections and the next is
    closed at once, with a log line naming the address. Other addresses, and the same one once it
    lets a connection go, are served; a WebSocket the engine let through leaves the count.
    (Loopback is exempt only while no --trusted-proxy is given.)"""
    with proxy_process("--upstream", upstream.url, "--monitor", "--trusted-proxy", "10.9.0.0/16",
                       "--max-connections-per-ip", "3") as proxy:
        held = [_connect_from("127.0.0.3", proxy.port) for _ in range(3)]
        try:
            with _connect_from("127.0.0.3", proxy.port) as over:
                assert _closed_at_once(over)
            with _connect_from("127.0.0.4", proxy.port) as other:
                assert _served(other)
            assert all(_served(sock) for sock in held)  # the held connections are served as ever
            held.pop().close()
            for _ in range(50):  # the proxy counts the close once it has seen it
                with _connect_from("127.0.0.3", proxy.port) as again:
                    if _served(again):
                        break
                time.sleep(0.1)
            else:
                pytest.fail("a connection let go did not make room for another")
        finally:
            for sock in held:
                sock.close()
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.5", 0))
        async with aiohttp.ClientSession(connector=connector) as session, session.ws_connect(
                proxy.url.replace("http", "ws") + "/ws") as websocket:
            await websocket.send_str("hello")
            assert (await websocket.receive()).data.endswith("hello")
            beside = [_connect_from("127.0.0.5", proxy.port) for _ in range(3)]
            try:
                assert all(_served(sock) for sock in beside)
            finally:
                for sock in beside:
                    sock.close()
        printed = proxy.stop()
    assert re.search(r"closed 1 new connection\(s\) at once from addresses holding 3 open already "
                     r"\(--max-connections-per-ip\): 127\.0\.0\.3 \(1\)", printed), printed


def test_a_request_body_that_stalls_gets_408(upstream):
    """A body that stops arriving (a slow-body attack, or a client gone quiet) would hold the upstream
    connection as well; a body that keeps coming, however slowly overall, is taken whole."""
    with proxy_process("--upstream", upstream.url, "--monitor", "--body-timeout", "1") as proxy:
        head = b"POST /upload HTTP/1.1\r\nHost: shop\r\nContent-Length: 1000\r\n\r\n"
        with socket.create_connection(("127.0.0.1", proxy.port)) as stalled:
            stalled.sendall(head + b"x" * 10)  # and then nothing
            answer = read_until_closed(stalled)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"stopped arriving for 1 seconds" in answer
        with socket.create_connection(("127.0.0.1", proxy.port)) as steady:
            steady.sendall(head)
            for _ in range(4):  # 1.6 s in all, never 1 s without bytes
                time.sleep(0.4)
                steady.sendall(b"y" * 250)
            steady.settimeout(15)
            answer = b""
            while b"received" not in answer and (chunk := steady.recv(65536)):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ") and b'{"received":1000}' in answer
        assert failures_counted(proxy.url) == {("client", "body_stalled", "408"): 1.0}


def test_upstream_down_is_502_with_a_plain_page():
    with proxy_process("--upstream", f"http://127.0.0.1:{free_port()}", "--monitor") as proxy:
        response = requests.get(proxy.url + "/product/1", timeout=30)
        counted = failures_counted(proxy.url)
    assert counted == {("upstream", "unreachable", "502"): 1.0}
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "could not be reached" in response.text
    assert "<script" not in response.text


def test_slow_upstream_is_504(monitor_proxy):
    before = failures_counted(monitor_proxy.url).get(("upstream", "timeout", "504"), 0.0)
    response = requests.get(monitor_proxy.url + "/slow?seconds=8", timeout=30)  # read timeout is 3 s
    assert failures_counted(monitor_proxy.url).get(("upstream", "timeout", "504")) == before + 1
    assert response.status_code == 504
    assert "did not answer in time" in response.text


@contextlib.contextmanager
def unaccepting_listener():
    """A loopback port whose listen queue is full and never served, like a shop too busy to accept:
    connecting to it neither succeeds nor is refused (its SYNs are dropped) until the caller gives up."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        for _ in range(3):  # one fills the queue; the others' SYNs are dropped as the proxy's will be
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
        time.sleep(0.2)
        yield listener.getsockname()[1]


def test_an_upstream_that_does_not_accept_in_time_is_504():
    with unaccepting_listener() as port, proxy_process(
            "--upstream", f"http://127.0.0.1:{port}", "--monitor", "--connect-timeout", "1") as proxy:
        response = requests.get(proxy.url + "/product/1", timeout=30)
        counted = failures_counted(proxy.url)
    assert counted == {("upstream", "timeout", "504"): 1.0}
    assert response.status_code == 504
    assert "did not answer in time" in response.text


def test_client_disconnect_cancels_the_upstream_request(monitor_proxy, upstream):
    recorder = upstream.recorder
    recorder.endless_closed.clear()
    recorder.endless_chunks = 0
    response = requests.get(monitor_proxy.url + "/endless", stream=True, timeout=30)
    assert response.status_code == 200
    next(response.iter_content(65536))
    response.close()  # the client walks away after the first chunk
    assert recorder.endless_closed.wait(20), "the upstream kept streaming for a client that left"
    assert recorder.endless_chunks < 4000


def test_client_leaving_while_the_upstream_thinks_abandons_the_upstream_request(upstream):
    import socket

    recorder = upstream.recorder
    recorder.slow_started.clear()
    recorder.thinking_abandoned.clear()
    # A read timeout far beyond the upstream's 10 s of thinking: only the client leaving can end it.
    with proxy_process("--upstream", upstream.url, "--monitor", "--read-timeout", "60") as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
            raw.sendall(b"GET /thinking HTTP/1.1\r\nHost: shop.example\r\n\r\n")
            assert recorder.slow_started.wait(10)
        assert recorder.thinking_abandoned.wait(8), "the proxy kept the upstream busy for a client that left"


# ---- headers, cookies, redirects -----------------------------------------------------------------


def test_forwarding_headers_are_set_and_spoofed_ones_discarded(monitor_proxy):
    response = requests.get(monitor_proxy.url + "/echo-headers?a=1&b=%20x", timeout=10, headers={
        "Host": "shop.example",
        "X-Forwarded-For": "6.6.6.6",
        "Forwarded": "for=6.6.6.6",
        "X-Shield-Verdict": "allow-me-please",
        "Connection": "keep-alive, X-Private-Hop",
        "X-Private-Hop": "secret",
        "TE": "trailers",
        "Cookie": "a=1; b=2",
    })
    assert response.status_code == 200
    seen = upstream_headers(response)
    assert response.json()["query"] == "a=1&b=%20x"
    assert seen["host"] == ["shop.example"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == ["shop.example"]
    assert seen["forwarded"] == ["for=127.0.0.1;proto=http;host=shop.example"]
    assert seen["x-real-ip"] == ["127.0.0.1"]
    assert seen["cookie"] == ["a=1; b=2"]
    for hop in ("x-private-hop", "te", "connection-specific"):
        assert hop not in seen
    assert seen.get("connection") != ["keep-alive, X-Private-Hop"]
    assert len(seen["x-shield-verdict"]) == 1 and seen["x-shield-verdict"][0] != "allow-me-please"
    assert re.fullmatch(r"\d{1,3}", seen["x-shield-score"][0])
    assert seen["x-shield-ref"][0]


def test_trusted_proxy_chain_is_extended_not_replaced(upstream):
    with proxy_process("--upstream", upstream.url, "--monitor", "--trusted-proxy", "127.0.0.0/8",
                       "--rewrite-host") as proxy:
        response = requests.get(proxy.url + "/echo-headers", timeout=10,
                                headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
                                         "Host": "shop.example",
                                         # the client's own, which the trusted edge passed on untouched
                                         "Forwarded": "for=66.249.66.1", "X-Real-IP": "66.249.66.1"})
    seen = upstream_headers(response)
    assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-real-ip"] == ["203.0.113.9"]  # the client the trusted X-Forwarded-For chain names
    assert seen["forwarded"] == ["for=66.249.66.1, for=127.0.0.1;proto=http;host=shop.example"]
    assert seen["host"] == [upstream.url.removeprefix("http://")]  # --rewrite-host
    assert seen["x-forwarded-host"] == ["shop.example"]


def test_the_client_ip_header_names_the_one_header_believed(upstream):
    with proxy_process("--upstream", upstream.url, "--monitor", "--trusted-proxy", "127.0.0.0/8",
                       "--client-ip-header", "X-Real-IP") as proxy:
        response = requests.get(proxy.url + "/echo-headers", timeout=10, headers={
            "X-Real-IP": "203.0.113.7", "X-Forwarded-For": "66.249.66.1", "Host": "shop.example"})
    assert upstream_headers(response)["x-real-ip"] == ["203.0.113.7"]


def test_redirects_and_every_set_cookie_pass_untouched(monitor_proxy):
    response = requests.get(monitor_proxy.url + "/cookies", allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert response.headers["location"] == "/elsewhere?x=1"
    cookies = response.raw.headers.getlist("set-cookie")
    assert len(cookies) == 3
    assert cookies[0].startswith("session=abc123;") and "HttpOnly" in cookies[0]
    assert cookies[1].startswith("cart=7;") and "Path=/cart" in cookies[1]
    assert cookies[2] == "theme=dark, with-comma; Path=/"


def test_head_and_bodyless_statuses(monitor_proxy):
    head = requests.head(monitor_proxy.url + "/download?mb=3", timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert requests.get(monitor_proxy.url + "/status/204", timeout=10).status_code == 204
    missing = requests.get(monitor_proxy.url + "/status/404", timeout=10)
    assert missing.status_code == 404 and missing.text == "status"


# ---- websocket -----------------------------------------------------------------------------------


async def test_websocket_echo_through_the_proxy(monitor_proxy):
    async with aiohttp.ClientSession() as session, session.ws_connect(
            monitor_proxy.url.replace("http", "ws") + "/ws", protocols=("chat.v1",),
            headers={"X-Shield-Verdict": "allow-me"}) as socket:
        assert socket.protocol == "chat.v1"
        await socket.send_str("hello")
        assert (await socket.receive(timeout=10)).data == "echo:hello"
        await socket.send_bytes(b"\x00\x01binary")
        assert (await socket.receive(timeout=10)).data == b"echo:\x00\x01binary"
        await socket.send_str("?headers")
        seen = json.loads((await socket.receive(timeout=10)).data)
    shield = [(name.lower(), value) for name, value in seen if name.lower().startswith("x-shield")]
    assert [name for name, _ in shield] == ["x-shield-score", "x-shield-verdict", "x-shield-ref"]
    assert dict(shield)["x-shield-verdict"] in ("allow", "challenge", "block")  # ours, not the client's own


async def test_a_websocket_the_shop_will_not_open_is_refused_and_counted(monitor_proxy):
    key = ("upstream", "handshake_refused", "403")
    before = failures_counted(monitor_proxy.url).get(key, 0.0)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # /page answers, but not as a websocket
            await session.ws_connect(monitor_proxy.url.replace("http", "ws") + "/page")
    assert refused.value.status == 403
    assert failures_counted(monitor_proxy.url).get(key) == before + 1


async def test_websocket_from_a_tool_is_refused_in_enforce_mode(enforce_proxy):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(enforce_proxy.url.replace("http", "ws") + "/ws")
    assert refused.value.status == 403


# ---- detection at the proxy ----------------------------------------------------------------------


def test_requests_scraper_is_blocked_and_never_reaches_upstream(enforce_proxy, upstream):
    hits = upstream.recorder.hits
    for page in range(1, 6):
        response = requests.get(f"{enforce_proxy.url}/product/{page}", timeout=10)
        assert response.status_code == 403
        assert response.headers["x-shield-ref"] in response.text
    assert upstream.recorder.hits == hits
    with httpx.Client(headers=CHROME_NAVIGATION) as browser:
        response = browser.get(enforce_proxy.url + "/echo-headers")
    assert response.status_code == 200
    assert upstream.recorder.hits == hits + 1
    assert dict(response.json()["headers"])["x-shield-verdict"] == "allow"


def test_a_browser_like_flood_is_refused_from_held_assessments(upstream):
    """A flood with a browser's headers from one address crosses the product pages' rate limit and
    is throttled; the proxy answers most of it from the held assessment (the lane outcome "held"),
    each refusal with a reference of its own, and none of them reaches the upstream."""
    with proxy_process("--upstream", upstream.url) as proxy, httpx.Client(headers=CHROME_NAVIGATION) as browser:
        hits = upstream.recorder.hits
        responses = [browser.get(f"{proxy.url}/product/{n % 40 + 1}") for n in range(200)]
        served = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code != 200]
        assert len(served) >= 1 and len(refused) > 150
        assert {r.status_code for r in refused} <= {403, 429}
        assert upstream.recorder.hits == hits + len(served)
        refs = [r.headers["x-shield-ref"] for r in refused]
        assert len(set(refs)) == len(refs)
        metrics = requests.get(proxy.url + "/.shieldware/metrics", timeout=10).text
    held = next(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                if line.startswith("shieldware_fast_lane_requests_total{") and 'outcome="held"' in line)
    assert held > 100, metrics


def test_access_log_is_combined_format(monitor_proxy):
    requests.get(monitor_proxy.url + "/product/9?ref=a%22b", headers={"Referer": "http://x.example/"},
                 timeout=10)
    with httpx.Client(headers=CHROME_NAVIGATION) as browser:
        browser.get(monitor_proxy.url + "/status/404?from=log-test")
    combined = re.compile(r'^(\S+) - - \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
                          r'"([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$')
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:  # the log is flushed in batches, at least once a second
        lines = monitor_proxy.access_log.read_text().splitlines()
        if any("from=log-test" in line for line in lines):
            break
        time.sleep(0.2)
    parsed = [combined.match(line) for line in lines]
    assert all(parsed), [line for line, match in zip(lines, parsed, strict=True) if not match]
    product = next(m for m in parsed if "/product/9" in m.group(3))
    assert product.group(1) == "127.0.0.1"
    assert product.group(3) == "GET /product/9?ref=a%22b HTTP/1.1"
    assert product.group(4) == "200"
    assert product.group(6) == "http://x.example/"
    assert product.group(7).startswith("python-requests/")
    missing = next(m for m in parsed if "from=log-test" in m.group(3))
    assert missing.group(4) == "404" and missing.group(5) == "6"
    assert "Chrome/120" in missing.group(7)


def test_sigterm_lets_in_flight_requests_finish(upstream):
    proxy_ctx = proxy_process("--upstream", upstream.url, "--monitor", "--shutdown-timeout", "20")
    proxy = proxy_ctx.__enter__()
    try:
        upstream.recorder.slow_started.clear()
        outcome: dict[str, requests.Response] = {}
        client = threading.Thread(target=lambda: outcome.setdefault(
            "response", requests.get(proxy.url + "/slow?seconds=1.5", timeout=30)))
        client.start()
        assert upstream.recorder.slow_started.wait(10)
        proxy.process.send_signal(signal.SIGTERM)
        client.join(30)
        assert outcome["response"].status_code == 200
        assert outcome["response"].text == "finally"
        proxy.process.wait(30)
        assert proxy.process.returncode in (0, -signal.SIGTERM)
        with pytest.raises(requests.ConnectionError):
            requests.get(proxy.url + "/.shieldware/health", timeout=2)
    finally:
        proxy_ctx.__exit__(None, None, None)


def test_health_endpoint(enforce_proxy):
    response = requests.get(enforce_proxy.url + "/.shieldware/health", timeout=10)  # even for a tool
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["mode"] == "enforce"


def test_post_after_the_upstream_closed_an_idle_connection_still_works(upstream):
    recorder = UpstreamRecorder()
    # An upstream that drops idle keep-alive connections after one second (gunicorn's default is 2 s).
    with live_server(build_upstream(recorder), timeout_keep_alive=1) as impatient, \
            proxy_process("--upstream", impatient.url, "--monitor") as proxy:
        for _ in range(3):
            response = requests.post(proxy.url + "/upload", data=b"x" * 100, timeout=10)
            assert response.status_code == 200 and response.json() == {"received": 100}
            time.sleep(1.5)  # let the upstream close the pooled connection


def test_client_leaving_mid_upload_cancels_the_upstream_request(monitor_proxy, upstream):
    import socket

    upstream.recorder.upload_aborted.clear()
    with socket.create_connection(("127.0.0.1", monitor_proxy.port), timeout=10) as raw:
        raw.sendall(b"POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 10000000\r\n\r\n"
                    + b"x" * 65536)
        time.sleep(0.5)  # let the first bytes reach the upstream before the client vanishes
    assert upstream.recorder.upload_aborted.wait(20), "the upstream kept waiting for an upload nobody sends"
    assert requests.get(monitor_proxy.url + "/page", timeout=10).status_code == 200  # still serving
