"""Capture the headers real Firefox sends for every request kind a shop page makes.

Writes tests/fixtures/firefox_requests.json, which tests/signals/test_headers.py holds the header checks
to. Needs Debian's firefox-esr (`apt-get install firefox-esr`); Playwright cannot drive it, and
need not: Firefox runs headless on a loopback page whose own script makes the requests (styles,
scripts, images, a frame, fetches, a HEAD, a beacon, workers, a service worker, a WebSocket,
a clicked link and a posted form), and a recording ASGI app keeps each one's headers in arrival
order. Run from the repository root: `python scripts/capture_firefox_headers.py`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import live_server  # noqa: E402  (the tests' loopback server)

OUT = ROOT / "tests" / "fixtures" / "firefox_requests.json"
PAGE = b"""<!doctype html><html><head><link rel="stylesheet" href="/k/style.css"><script src="/k/app.js"></script>
</head><body><img src="/k/image.svg"><iframe src="/k/iframe"></iframe><a id="go" href="/k/link">go</a><script>
fetch('/k/fetch');
fetch('/k/fetch-post', {method: 'POST', headers: {'content-type': 'application/json'}, body: '{}'});
fetch('/k/fetch-head', {method: 'HEAD'});
navigator.sendBeacon('/k/beacon', 'x');
try { new Worker('/k/worker.js'); new SharedWorker('/k/shared.js'); } catch (e) {}
try { navigator.serviceWorker.register('/k/sw.js').catch(() => {}); } catch (e) {}
try { new WebSocket('ws://' + location.host + '/k/websocket'); } catch (e) {}
setTimeout(() => document.getElementById('go').click(), 1500);
</script></body></html>"""
# The clicked link's page posts a form.
LINKED = (b"<html><body><form method=post action=/k/form><input name=q value=x></form>"
          b"<script>setTimeout(() => document.forms[0].submit(), 500)</script></body></html>")
TYPES = {".js": b"text/javascript", ".css": b"text/css", ".svg": b"image/svg+xml"}
SVG = b"<svg xmlns='http://www.w3.org/2000/svg'/>"
BODIES = {"/page": PAGE, "/k/link": LINKED}


def recorder(seen: list[dict[str, Any]]) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen.append({"method": scope.get("method", "GET"), "path": scope["path"], "scheme": scope["scheme"],
                     "headers": [[name.decode(), value.decode("latin-1")] for name, value in scope["headers"]]})
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})
            return
        while (await receive()).get("more_body"):
            pass
        path = scope["path"]
        body = BODIES.get(path) or (SVG if path.endswith(".svg") else b"<html><body>ok</body></html>")
        kind = TYPES.get(Path(path).suffix, b"text/html")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", kind), (b"set-cookie", b"s=1; Path=/")]})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> int:
    firefox = shutil.which("firefox-esr") or shutil.which("firefox")
    if firefox is None:
        print("firefox-esr is not installed (apt-get install firefox-esr)", file=sys.stderr)
        return 2
    version = subprocess.run([firefox, "--version"], capture_output=True, text=True).stdout.strip()
    seen: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as profile, live_server(recorder(seen)) as server:
        browser = subprocess.Popen([firefox, "--headless", "--no-remote", "--profile", profile, f"{server.url}/page"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(12)  # the page's requests, the click at 1.5 s, the form at 2 s; slack for a slow start
        browser.terminate()
        browser.wait(10)
    document = {"source": f"{version} (headless, a new profile) loading a loopback page that makes every request "
                          f"kind a shop page makes; captured by scripts/capture_firefox_headers.py on "
                          f"{time.strftime('%Y-%m-%d')}",
                "requests": seen}
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {OUT} ({len(seen)} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
