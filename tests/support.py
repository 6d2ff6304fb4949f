"""Shared test helpers: real uvicorn servers on loopback and realistic client header sets."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

# A desktop Chrome 120 navigation, header names and order as Chrome sends them over HTTP/1.1.
CHROME_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/120.0.0.0 Safari/537.36")
CHROME_NAVIGATION = [
    ("connection", "keep-alive"),
    ("sec-ch-ua", '"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"'),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", '"Windows"'),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", CHROME_UA),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;"
               "q=0.8,application/signed-exchange;v=b3;q=0.7"),
    ("sec-fetch-site", "none"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-user", "?1"),
    ("sec-fetch-dest", "document"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-language", "en-GB,en;q=0.9"),
]
CHROME_SUBRESOURCE = [
    ("connection", "keep-alive"),
    ("sec-ch-ua", '"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"'),
    ("sec-ch-ua-mobile", "?0"),
    ("user-agent", CHROME_UA),
    ("sec-ch-ua-platform", '"Windows"'),
    ("accept", "text/css,*/*;q=0.1"),
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "no-cors"),
    ("sec-fetch-dest", "style"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-language", "en-GB,en;q=0.9"),
]


# Debian's Chromium, as the tests drive it (Playwright with executable_path; never a downloaded
# browser). Without the background-networking flags it tries Google's hosts at every start.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


class SimulatedClock:
    """A middleware clock the test moves instead of sleeping (a live server's thread reads it)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def raw_get(port: int, path: str, headers: list[tuple[str, str]]) -> int:
    """GET `path` from 127.0.0.1:`port` with exactly `headers`, in their order (no Host or
    Accept-Encoding of http.client's own); the response's status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    for name, value in headers:
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def read_until_closed(connection: socket.socket, wait: float = 15.0) -> bytes:
    """Everything a server sends on `connection` until it closes it (a socket timeout fails the test)."""
    connection.settimeout(wait)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """A real uvicorn server on 127.0.0.1 in a background thread, stopped on exit.

    uvicorn's own proxy-header handling is off: it would rewrite the client address from
    X-Forwarded-For before shieldware, which decides itself whom to trust.
    """

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                     access_log=False, lifespan="off",
                                     **{"proxy_headers": False, **config})
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 15 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def live_server(app: Any, **config: Any) -> Iterator[LiveServer]:
    with LiveServer(app, **config) as server:
        yield server
