"""Proxy test helpers: a test upstream (a real uvicorn app) and `shieldware proxy` as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import pytest
import requests
import yaml
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from shieldware.policy import default_policy_text
from tests.support import CHROMIUM, CHROMIUM_ARGS, LiveServer, free_port, live_server

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
_CHUNK = b"\0" * MIB


class UpstreamRecorder:
    """What the upstream saw: how many requests reached it, and the last request's headers."""

    def __init__(self) -> None:
        self.hits = 0
        self.last_headers: list[tuple[str, str]] = []
        self.slow_started = threading.Event()
        self.endless_chunks = 0
        self.endless_closed = threading.Event()
        self.upload_aborted = threading.Event()
        self.thinking_abandoned = threading.Event()

    def count(self, request: Request) -> None:
        self.hits += 1
        self.last_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]


def build_upstream(recorder: UpstreamRecorder) -> Starlette:
    """A shop stand-in with the awkward responses a proxy must relay faithfully."""

    async def page(request: Request) -> Response:
        recorder.count(request)
        return PlainTextResponse(f"page {request.url.path}")

    async def echo_headers(request: Request) -> Response:
        recorder.count(request)
        return JSONResponse({"headers": recorder.last_headers, "path": request.url.path,
                             "query": request.url.query})

    async def download(request: Request) -> Response:
        recorder.count(request)
        size_mb = int(request.query_params.get("mb", "1"))

        async def chunks():
            for _ in range(size_mb):
                yield _CHUNK

        return StreamingResponse(chunks(), headers={"content-length": str(size_mb * MIB)},
                                 media_type="application/octet-stream")

    async def upload(request: Request) -> Response:
        recorder.count(request)
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
        except ClientDisconnect:
            recorder.upload_aborted.set()
            raise
        return JSONResponse({"received": received})

    async def slow(request: Request) -> Response:
        recorder.count(request)
        recorder.slow_started.set()
        await asyncio.sleep(float(request.query_params.get("seconds", "5")))
        return PlainTextResponse("finally")

    async def thinking(request: Request) -> Response:
        """A slow page (say, a heavy search) that notices when its caller hangs up."""
        recorder.count(request)
        recorder.slow_started.set()
        for _ in range(200):  # 10 s at most
            if await request.is_disconnected():
                recorder.thinking_abandoned.set()
                return PlainTextResponse("nobody is listening")
            await asyncio.sleep(0.05)
        return PlainTextResponse("thought it through")

    async def endless(request: Request) -> Response:
        recorder.count(request)

        async def chunks():
            try:
                for _ in range(4000):  # bounded: 256 MB at most, even if nobody stops it
                    recorder.endless_chunks += 1
                    yield b"x" * 65536
                    await asyncio.sleep(0)
            finally:
                recorder.endless_closed.set()

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def cookies(request: Request) -> Response:
        recorder.count(request)
        response = Response(status_code=302, headers={"location": "/elsewhere?x=1"})
        response.set_cookie("session", "abc123", httponly=True, path="/")
        response.set_cookie("cart", "7", path="/cart")
        response.headers.append("set-cookie", "theme=dark, with-comma; Path=/")
        return response

    async def big_header(request: Request) -> Response:
        recorder.count(request)
        return PlainTextResponse("padded", headers={"x-pad": "p" * int(request.query_params["bytes"])})

    async def status(request: Request) -> Response:
        recorder.count(request)
        return PlainTextResponse("status", status_code=int(request.path_params["code"]))

    async def login(request: Request) -> Response:
        """A shop that refuses every login with 200 and its form again, and says in X-Shield-Event
        which account failed; the body quotes the X-Shield-Ref it was given."""
        recorder.count(request)
        form = parse_qs((await request.body()).decode("latin-1"))
        account = quote(form.get("username", [""])[0])
        return PlainTextResponse(f"wrong password; ref {request.headers.get('x-shield-ref', '')}",
                                 headers={"x-shield-event": f"login_failed; account={account}"})

    async def echo_socket(websocket: WebSocket) -> None:
        protocols = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol=protocols[0] if protocols else None)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") == "?headers":  # the handshake's headers, as the shop got them
                    handshake = [[name.decode(), value.decode()] for name, value in websocket.scope["headers"]]
                    await websocket.send_text(json.dumps(handshake))
                elif message.get("text") is not None:
                    await websocket.send_text("echo:" + message["text"])
                else:
                    await websocket.send_bytes(b"echo:" + message["bytes"])
        except Exception:
            return

    return Starlette(routes=[
        Route("/echo-headers", echo_headers, methods=["GET", "POST", "HEAD"]),
        Route("/download", download),
        Route("/upload", upload, methods=["POST", "PUT"]),
        Route("/slow", slow),
        Route("/endless", endless),
        Route("/thinking", thinking),
        Route("/cookies", cookies),
        Route("/status/{code:int}", status),
        Route("/login", login, methods=["POST"]),
        Route("/big-header", big_header),
        WebSocketRoute("/ws", echo_socket),
        Route("/{path:path}", page, methods=["GET", "POST", "HEAD"]),
    ])


@contextlib.contextmanager
def recorded_upstream(**config: object) -> Iterator[LiveServer]:
    """The test upstream served live, with what it saw as `.recorder` (live_server's options)."""
    recorder = UpstreamRecorder()
    with live_server(build_upstream(recorder), **config) as server:
        server.recorder = recorder
        yield server


class ProxyProcess:
    """`python -m shieldware.cli proxy ...` on a free loopback port, waited for and stopped on exit."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "shieldware.cli", "proxy", "--listen", f"127.0.0.1:{self.port}",
                     *args]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        # Served over https with --tls-cert: the tests' certificates are self-signed, so the
        # certificate is also what a client verifies the proxy against.
        self.scheme, self.verify = "http", True
        if "--tls-cert" in args:
            self.scheme, self.verify = "https", args[args.index("--tls-cert") + 1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def __enter__(self) -> ProxyProcess:
        # A file, not a pipe: a chatty proxy must never block on a full pipe nobody reads.
        self.output = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=self.output,
                                        stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"proxy exited with {self.process.returncode}: {self.printed()}")
            try:
                if requests.get(self.url + "/.shieldware/health", timeout=1, verify=self.verify).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or busy starting
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("proxy did not become healthy within 60 s")
            time.sleep(0.05)

    def stop(self) -> str:
        """Stop the proxy (SIGTERM, then SIGKILL if it hangs) and return what it printed."""
        if self.process is None:
            return ""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.printed()

    def printed(self) -> str:
        self.output.seek(0)
        return self.output.read()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def proxy_process(*args: str, env: dict[str, str] | None = None) -> Iterator[ProxyProcess]:
    with ProxyProcess(*args, env=env) as proxy:
        yield proxy


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB, from /proc."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def forward_auth_checks(base_url: str) -> dict[tuple[str, str], float]:
    """shieldware_forward_auth_checks_total by (answer, read), from a proxy's metrics endpoint."""
    prefix = "shieldware_forward_auth_checks_total{"
    counted = {}
    for line in requests.get(base_url + "/.shieldware/metrics", timeout=10).text.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix):].split("} ")
            pairs = dict(pair.split("=") for pair in labels.split(","))
            counted[pairs["answer"].strip('"'), pairs["read"].strip('"')] = float(value)
    return counted


def roomy_policy(path: Path) -> Path:
    """The shipped policy, written to `path`, with per-address limits far above what a test module
    sends: every test client is 127.0.0.1 (as a NAT's customers are one address), and the limits
    are not what those tests are about. `/challenge-me/*` is challenged for everyone, so a real
    browser can be walked through the challenge."""
    policy = yaml.safe_load(default_policy_text())
    for group in policy["groups"]:
        if "limits" in group:
            group["limits"] = {"ip": ["1000/s"]}
    policy["rules"].append({"name": "challenge-me", "when": {"path": "/challenge-me/*"}, "action": "challenge"})
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return path


@contextlib.contextmanager
def chromium_browser(*args: str) -> Iterator[Any]:
    """Debian's headless Chromium under Playwright, launched with these extra arguments; skips the
    test, saying how to install it, when it is missing."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed; scripts/setup.sh installs Debian chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            *CHROMIUM_ARGS, "--disable-blink-features=AutomationControlled", *args])
        try:
            yield browser
        finally:
            browser.close()
