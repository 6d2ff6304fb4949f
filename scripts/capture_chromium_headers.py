"""Capture the header lists the installed Chromium sends on a navigation, sub-resources and fetch/XHR.

Used by scripts/build_fingerprints.py: a loopback server records each request's headers in
arrival order (as an ASGI app sees them) while headless Chromium, with its UA set to its own
non-headless form, loads a page that pulls a stylesheet, a script, an image and makes fetch calls.
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Debian's Chromium and its launch flags: one definition, the one the tests drive it with.
from tests.support import CHROMIUM, CHROMIUM_ARGS

PAGE = b"""<!doctype html><html><head><link rel="stylesheet" href="/style.css"><script src="/app.js"></script>
</head><body><img src="/picture.svg"><script>
fetch('/api/get').then(() => fetch('/api/post', {method: 'POST',
  headers: {'content-type': 'application/json'}, body: '{}'})).then(() => { document.title = 'done'; });
</script></body></html>"""
SHOWN_PORT = 48215  # the port the shipped capture was made on
KINDS = {"/page": "navigation", "/style.css": "stylesheet", "/app.js": "script", "/picture.svg": "image",
         "/api/get": "fetch", "/api/post": "fetch-post"}
CONTENT_TYPES = {"/page": "text/html", "/style.css": "text/css", "/app.js": "text/javascript",
                 "/picture.svg": "image/svg+xml"}


def capture() -> tuple[str, dict[str, list[list[str]]]] | None:
    """(Chromium major version, {kind: [[name, value], ...]}), or None without Chromium/Playwright."""
    if shutil.which(CHROMIUM) is None:
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    seen: dict[str, list[list[str]]] = {}

    class Recorder(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in KINDS and KINDS[path] not in seen:
                seen[KINDS[path]] = [[name.lower(), value] for name, value in self.headers.items()]
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            body = PAGE if path == "/page" else b"<svg xmlns='http://www.w3.org/2000/svg'/>" if path.endswith(
                ".svg") else b"{}"
            self.send_response(200)
            self.send_header("content-type", CONTENT_TYPES.get(path, "application/json"))
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", port), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            major = browser.version.split(".")[0]
            agent = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                     f"Chrome/{major}.0.0.0 Safari/537.36")
            context = browser.new_context(user_agent=agent)
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/page")
            page.wait_for_function("document.title === 'done'", timeout=10000)
            context.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    # The port is the OS's pick and changes every run: written as one fixed port, a refresh's diff
    # shows only what Chromium itself changed.
    here, fixed = f"127.0.0.1:{port}", f"127.0.0.1:{SHOWN_PORT}"
    return major, {kind: [[name, value.replace(here, fixed)] for name, value in headers]
                   for kind, headers in seen.items()}
