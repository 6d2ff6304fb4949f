"""A mixed stream of ASGI requests for the fast-lane tests: people, bots, tools and odd input.

Seeded, so a failing stream can be replayed; every request is a plain ASGI scope the tests
hand to the middleware directly, with the simulated time at which it arrives.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tests.support import CHROME_NAVIGATION, CHROME_SUBRESOURCE

FIREFOX = [
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("accept-language", "de-DE,de;q=0.8,en;q=0.5"), ("accept-encoding", "gzip, deflate, br"),
    ("upgrade-insecure-requests", "1"), ("sec-fetch-dest", "document"), ("sec-fetch-mode", "navigate"),
    ("sec-fetch-site", "none"), ("sec-fetch-user", "?1"),
]
CURL = [("user-agent", "curl/8.5.0"), ("accept", "*/*")]
REQUESTS = [("user-agent", "python-requests/2.31.0"), ("accept-encoding", "gzip, deflate"), ("accept", "*/*"),
            ("connection", "keep-alive")]
GOOGLEBOT = [("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
             ("accept", "*/*"), ("accept-encoding", "gzip, deflate, br")]
# Chrome's headers in another order, with a header claiming to be shieldware's own.
SHUFFLED = [CHROME_NAVIGATION[i] for i in (5, 0, 2, 1, 3, 4, 6, 7, 8, 9, 10, 11, 12)]
# Scripts that ask for JSON, whose refusals must be JSON too: a page's fetch() and a tool.
FETCH = [*(h for h in CHROME_SUBRESOURCE if not h[0].startswith(("accept", "sec-fetch"))),
         ("accept", "application/json"), ("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "cors"),
         ("sec-fetch-dest", "empty"), ("accept-encoding", "gzip, deflate, br"), ("accept-language", "en-GB,en;q=0.9")]
JSON_TOOL = [("user-agent", "python-requests/2.31.0"), ("accept", "application/json"),
             ("accept-encoding", "gzip, deflate")]
KINDS = {"chrome": 10, "firefox": 3, "curl": 2, "requests": 2, "googlebot": 1, "shuffled": 1, "nameless": 1}
WITH_SCRIPTS = {**KINDS, "fetch": 3, "json-tool": 3}


@dataclass
class Client:
    kind: str
    address: str
    session: str | None
    walks: bool  # opens product ids in order, fast: a scraper's pattern
    rotates: bool = False  # a walker on rotating proxies: a new address and no session on every request


def _headers(kind: str, asset: bool) -> list[tuple[str, str]]:
    if kind == "chrome":
        return list(CHROME_SUBRESOURCE if asset else CHROME_NAVIGATION)
    return list({"firefox": FIREFOX, "curl": CURL, "requests": REQUESTS, "googlebot": GOOGLEBOT,
                 "shuffled": SHUFFLED, "nameless": [("accept", "*/*")], "fetch": FETCH, "json-tool": JSON_TOOL}[kind])


def _address(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return f"2001:db8:{rng.randrange(16):x}::{rng.randrange(1, 500):x}"
    if roll < 0.12:
        return f"34.102.0.{rng.randrange(1, 250)}"  # a cloud network the hosting database lists
    return f"198.18.{rng.randrange(40)}.{rng.randrange(1, 250)}"


def clients(rng: random.Random, count: int, kinds: dict[str, int] = KINDS) -> list[Client]:
    """`count` clients, of each kind in proportion to its weight."""
    crowd = [Client(rng.choices(list(kinds), list(kinds.values()))[0], _address(rng),
                    f"s{rng.randrange(10**6)}" if rng.random() < 0.8 else None, rng.random() < 0.1)
             for _ in range(count)]
    for client in crowd:
        client.rotates = client.walks and rng.random() < 0.5
    return crowd


def _path(rng: random.Random, client: Client, step: int) -> tuple[str, str, bool]:
    """(path, query, is_asset)"""
    if client.walks:
        # scripts walk the catalogue's JSON API (a group of its own with product_ids: true)
        api = client.kind in ("fetch", "json-tool")
        return f"{'/api/product' if api else '/product'}/{step % 1300 + 1}", "", False
    roll = rng.random()
    if roll < 0.45:
        return f"/product/{rng.randrange(1, 1100)}", "", False
    if roll < 0.6:
        return f"/static/img/{rng.randrange(1, 1000)}.svg", "", True
    if roll < 0.66:
        return "/static/app.css", "", True
    if roll < 0.74:
        return "/products", f"page={rng.randrange(1, 50)}", False
    if roll < 0.8:
        return "/search", "q=lamp", False
    if roll < 0.84:
        return "/", "", False
    if roll < 0.87:
        return "/cart", "", False
    if roll < 0.9:
        return "/login", "", False
    if roll < 0.93:
        return f"/p/{rng.randrange(1, 99)}-teapot/", "", False
    if roll < 0.94:
        return "/health", "", False
    if roll < 0.95:
        return f"/api/product/{rng.randrange(1, 1100)}", "", False
    if roll < 0.97:
        return "/no/such/page", "", False
    return "/api/products", "", False


def _odd(rng: random.Random, headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Now and then, input the lane must hand to Python: non-ASCII, repeated or client-set X-Shield-*."""
    raw = [(n.encode(), v.encode("latin-1")) for n, v in headers]
    roll = rng.random()
    if roll < 0.01:
        raw.append((b"x-odd", "caf\xe9".encode("latin-1")))
    elif roll < 0.02:
        raw.append((b"accept", b"*/*"))
    elif roll < 0.03:
        raw.append((b"x-shield-verdict", b"allow"))
    elif roll < 0.04:
        raw.append((b"forwarded", b"for=203.0.113.9"))
    return raw


def stream(seed: int, requests: int, clients_count: int = 60, kinds: dict[str, int] = KINDS,
           pace: float | None = None) -> list[tuple[float, dict]]:
    """`requests` (delay before it, scope) pairs from `clients_count` clients behind a trusted edge;
    with `pace`, every request `pace` seconds after the one before (a rush: most clients flagged)."""
    rng = random.Random(seed)
    crowd = clients(rng, clients_count, kinds)
    out = []
    steps = [0] * len(crowd)
    for _ in range(requests):
        index = rng.randrange(len(crowd))
        client = crowd[index]
        steps[index] += 1
        path, query, asset = _path(rng, client, steps[index])
        headers = _headers(client.kind, asset)
        if rng.random() < 0.5 and not client.rotates:  # a scraper sends the same headers every time
            headers.append(("referer", "http://127.0.0.1:8000/"))
        cookie = []
        if client.rotates:
            client.address, client.session = _address(rng), None
        if client.session is not None:
            cookie.append(f"shop_session={client.session}")
        roll = rng.random()
        if roll < 0.03:
            cookie.append("shieldware_clearance=forged")
        elif roll < 0.05:
            cookie.append("broken cookie")
        elif roll < 0.07:
            cookie.append(f'theme="dark"; shop_session={client.session or ""}')
        if client.rotates and rng.random() < 0.5:
            headers.append(("cookie", f"consent=yes; _ga=GA1.1.{rng.randrange(10**9)}"))  # any cookie but the session
        elif cookie and not client.rotates:
            headers.append(("cookie", "; ".join(cookie)))
        forwarded = client.address if rng.random() < 0.97 else f"{client.address}, 10.0.0.{rng.randrange(9)}"
        headers.append(("x-forwarded-for", forwarded))
        headers.insert(0, ("host", "127.0.0.1:8000"))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": _odd(rng, headers), "client": ("127.0.0.1", 50000 + index),
                 "server": ("127.0.0.1", 8000)}
        delay = 0.05 if client.walks else rng.choice((0.0, 0.01, 0.2, 1.0, 4.0, 30.0))
        out.append((delay if pace is None else pace, scope))
    return out
