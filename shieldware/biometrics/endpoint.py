"""The telemetry endpoint, the collector script endpoint, and the per-session verdict in the store.

`install_telemetry(middleware)` adds, under the middleware's prefix:

* `POST /.shieldware/telemetry` — a batch from the collector (sendBeacon). The body is read
  in chunks and refused with 413 as soon as it passes the cap; batches are rate-limited per
  session and per client IP (429); malformed bodies get 400 with the reason and are counted;
  a good batch is scored and merged into the session's record (`bio`, session id) with a TTL.
  The answer is 204 with no score: a bot must not be able to tune itself against it.
* `GET /.shieldware/collector.js` — the collector, with the session cookie set if missing.

It also wraps the app so HTML pages of the groups named in `biometrics.inject_groups` get the
collector's `<script>` tag. Session binding: the `sw_sid` cookie (random, HttpOnly), and the
record remembers a hash of the user agent, so a record cannot be carried to another browser.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import zlib
from collections import OrderedDict
from importlib import resources
from typing import Any

from shieldware.biometrics.features import warm_up
from shieldware.biometrics.model import load_model
from shieldware.biometrics.scoring import Assessment, assess, combined_probability
from shieldware.biometrics.settings import BiometricsSettings
from shieldware.biometrics.telemetry import TelemetryError, parse_telemetry
from shieldware.evidence import Weights
from shieldware.facts import RequestFacts

log = logging.getLogger("shieldware.biometrics")

RECORD_KIND = "bio"
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")
SESSION_MAX_AGE = 86_400
# Reasons that say something about the whole session once seen (the others can be one odd batch,
# but they are kept too: the session record is the union, with each code's largest weight).
_DROPPED_ONCE_INPUT = "bio.no_input"
_DROPPED_IF_ANY_POSITIVE = "bio.human_motion"

def valid_session_id(value: str | None) -> str | None:
    return value if value and SESSION_ID.match(value) else None


def user_agent_hash(user_agent: str) -> str:
    return format(zlib.crc32(user_agent.encode("utf-8", "replace")), "08x")


def session_cookie(name: str, session_id: str, secure: bool) -> bytes:
    attributes = f"{name}={session_id}; Path=/; Max-Age={SESSION_MAX_AGE}; HttpOnly; SameSite=Lax"
    return (attributes + ("; Secure" if secure else "")).encode()


# The numbers kept from the latest batch, so an analyst (and the tests) can see what was measured.
RECORDED_FEATURES = (
    "pointer.moves", "pointer.segments", "pointer.straightness_mean", "pointer.straightness_min",
    "pointer.linear_segments", "pointer.constant_segments", "pointer.teleports", "pointer.speed_mean",
    "pointer.speed_cv", "pointer.pauses", "pointer.submovements", "pointer.overshoots", "pointer.clicks",
    "pointer.hold_mean", "pointer.model_bot_probability", "keys.count", "keys.hold_mean", "keys.hold_cv",
    "keys.gap_cv", "scroll.count", "scroll.gap_cv", "touch.count", "fills.count",
)


def merge_session(previous: dict | None, batch: Assessment, now: float, ua_hash: str,
                  weights: Weights | None = None) -> dict:
    """The session record after one more batch: reasons are the union (largest weight per code).

    The record stays bound to the user agent that started it. A batch from another user agent
    is merged all the same (sending telemetry under a new UA must not wipe a bad record) and
    adds `bio.ua_changed`: one browser does not change its user agent mid-session.
    """
    by_code: dict[str, dict] = {}
    events = batch.events
    batches = 1
    bound_ua = ua_hash
    if previous:
        events += int(previous.get("events", 0))
        batches += int(previous.get("batches", 0))
        for reason in previous.get("reasons", ()):
            by_code[reason["code"]] = reason
        bound_ua = previous.get("ua", ua_hash)
        if bound_ua != ua_hash:
            weight = (weights or Weights())("bio.ua_changed")
            by_code["bio.ua_changed"] = {"code": "bio.ua_changed", "weight": weight, "detail": {}}
    for code, weight, detail in batch.reasons:
        known = by_code.get(code)
        if known is None or weight > known["weight"]:
            by_code[code] = {"code": code, "weight": round(weight, 2), "detail": detail}
    if events > 0:
        by_code.pop(_DROPPED_ONCE_INPUT, None)
    if any(r["weight"] > 0 for r in by_code.values()):
        by_code.pop(_DROPPED_IF_ANY_POSITIVE, None)
    reasons = sorted(by_code.values(), key=lambda r: -abs(r["weight"]))
    bot = combined_probability([r["weight"] for r in reasons])
    measured = {name: round(batch.features[name], 4) for name in RECORDED_FEATURES if name in batch.features}
    totals = session_totals(previous.get("session") if previous else None, batch.features)
    return {"human": round(1.0 - bot, 4), "bot_probability": round(bot, 4), "reasons": reasons,
            "events": events, "batches": batches, "at": now, "ua": bound_ua, "last_batch": measured,
            "session": totals}


# Counts that add up over a session's batches (a drag can straddle two batches).
SUMMED_FEATURES = (
    "pointer.moves", "pointer.clicks", "pointer.segments", "pointer.linear_segments",
    "pointer.constant_segments", "pointer.teleports", "keys.count", "scroll.count", "touch.count",
    "fills.count",
)


def session_totals(previous: dict | None, features: dict[str, float]) -> dict[str, float]:
    """Session-wide counts, and straightness averaged over every segment seen so far."""
    previous = previous or {}
    totals = {name: float(previous.get(name, 0.0)) + features.get(name, 0.0) for name in SUMMED_FEATURES}
    old_segments = float(previous.get("pointer.segments", 0.0))
    new_segments = features.get("pointer.segments", 0.0)
    if totals["pointer.segments"] > 0:
        weighted = (float(previous.get("pointer.straightness_mean", 0.0)) * old_segments
                    + features.get("pointer.straightness_mean", 0.0) * new_segments)
        totals["pointer.straightness_mean"] = round(weighted / totals["pointer.segments"], 4)
    return totals


class _RateLimiter:
    """Token buckets per key, in process memory, bounded (least recently used keys are dropped).

    Per process on purpose: telemetry is a side channel, and a busy multi-worker shop that
    wants one shared limit puts the Redis store's windows in front of it.
    """

    def __init__(self, per_minute: float, burst: float, capacity: int = 50_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.capacity = capacity
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0 if allowed (a token is taken), else the seconds until the next token."""
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            allowed = 0.0
        else:
            self._buckets[key] = (tokens, now)
            allowed = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.capacity:
            self._buckets.popitem(last=False)
        return allowed


class TelemetryEndpoint:
    """The telemetry and collector endpoints of one middleware."""

    def __init__(self, middleware: Any) -> None:
        self.middleware = middleware
        self.engine = middleware.engine
        self.settings: BiometricsSettings = self.engine.policy.section("biometrics")
        self.weights: Weights = self.engine.policy.weights
        self.per_session = _RateLimiter(self.settings.rate_per_minute, self.settings.burst)
        self.per_client = _RateLimiter(self.settings.rate_per_minute * 4, self.settings.burst * 4)
        self.collector_js = resources.files("shieldware.web").joinpath("collector.js").read_bytes()

    def count(self, outcome: str) -> None:
        """`shieldware_telemetry_batches_total{outcome}`: accepted, malformed, too_large, rate_limited, error."""
        self.engine.metrics.count("telemetry_batches", outcome=outcome)

    async def ingest(self, session_id: str, body: bytes | str | dict, facts: RequestFacts) -> dict:
        """Score a telemetry body for a session and store the merged record; raises TelemetryError.

        Public so the challenge page can hand over the telemetry posted with its solution.
        """
        telemetry = parse_telemetry(body)
        batch = assess(telemetry, self.weights)
        store = self.engine.store
        previous = await store.get_record(RECORD_KIND, session_id, facts.now)
        record = merge_session(previous, batch, facts.now, user_agent_hash(facts.user_agent), self.weights)
        await store.put_record(RECORD_KIND, session_id, record, self.settings.record_ttl, facts.now)
        self.count("accepted")
        return record

    async def ingest_alongside(self, body: Any, facts: RequestFacts) -> list[tuple[bytes, bytes]]:
        """Take telemetry that arrived inside another request (the challenge solution).

        Never raises: a malformed batch is counted and dropped, so it cannot fail the request that
        carried it. Returns the Set-Cookie header to add when the session had to be started here.
        """
        session_id = valid_session_id(facts.cookies.get(self.settings.cookie))
        headers: list[tuple[bytes, bytes]] = []
        if session_id is None:
            session_id = secrets.token_urlsafe(18)
            headers.append((b"set-cookie", session_cookie(self.settings.cookie, session_id,
                                                          facts.over_https)))
        try:
            await self.ingest(session_id, body, facts)
        except TelemetryError:
            self.count("malformed")
            return []
        except Exception:  # the carrying request matters more than its telemetry
            log.exception("telemetry carried by %s could not be processed", facts.path)
            self.count("error")
            return []
        return headers

    async def handle_telemetry(self, scope: dict, receive: Any, send: Any, facts: RequestFacts) -> None:
        try:
            await self._telemetry(scope, receive, send, facts)
        except Exception:  # a telemetry bug must never take a request down with it
            log.exception("telemetry endpoint failed")
            self.count("error")
            await _answer(send, 500, {"error": "telemetry could not be processed"})

    async def _telemetry(self, scope: dict, receive: Any, send: Any, facts: RequestFacts) -> None:
        if facts.method != "POST":
            await _answer(send, 405, {"error": "telemetry is sent with POST"}, [(b"allow", b"POST")])
            return
        cap = self.settings.max_body_bytes
        declared = facts.header_map.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            self.count("too_large")
            await _answer(send, 413, {"error": f"telemetry body larger than {cap} bytes"})
            return
        cookie_name = self.settings.cookie
        session_id = valid_session_id(facts.cookies.get(cookie_name))
        new_session = session_id is None
        if new_session:
            session_id = secrets.token_urlsafe(18)
        wait = max(self.per_client.take(facts.client_ip, facts.now),
                   0.0 if new_session else self.per_session.take(session_id, facts.now))
        if wait > 0:
            self.count("rate_limited")
            await _answer(send, 429, {"error": "too many telemetry batches"},
                          [(b"retry-after", b"%d" % max(1, round(wait)))])
            return
        body = await _read_body(receive, cap)
        if body is None:
            self.count("too_large")
            await _answer(send, 413, {"error": f"telemetry body larger than {cap} bytes"})
            return
        try:
            await self.ingest(session_id, body, facts)
        except TelemetryError as exc:
            self.count("malformed")
            await _answer(send, 400, {"error": f"malformed telemetry: {exc}"})
            return
        headers = []
        if new_session:
            headers.append((b"set-cookie", session_cookie(cookie_name, session_id, facts.over_https)))
        await _answer(send, 204, None, headers)

    async def handle_collector(self, scope: dict, receive: Any, send: Any, facts: RequestFacts) -> None:
        headers = [(b"content-type", b"text/javascript; charset=utf-8"),
                   (b"cache-control", b"private, max-age=3600"),
                   (b"x-content-type-options", b"nosniff")]
        if valid_session_id(facts.cookies.get(self.settings.cookie)) is None:
            headers.append((b"set-cookie", session_cookie(self.settings.cookie, secrets.token_urlsafe(18),
                                                          facts.over_https)))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.collector_js})


async def _read_body(receive: Any, cap: int) -> bytes | None:
    """The request body, or None as soon as it passes `cap` bytes (the rest is never buffered)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _answer(send: Any, status: int, payload: dict | None, extra: list | None = None) -> None:
    headers = list(extra or [])
    body = b""
    if payload is not None:
        body = json.dumps(payload).encode()
        headers.append((b"content-type", b"application/json"))
    headers.append((b"cache-control", b"no-store"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class CollectorInjector:
    """Adds the collector's <script> tag to HTML pages of chosen route groups.

    It sits between the middleware and the app and reads the route group from the decision the
    middleware put in the scope. Compressed or very large pages pass through untouched.
    """

    MAX_PAGE = 2 * 1024 * 1024

    def __init__(self, app: Any, groups: frozenset[str], script_path: str) -> None:
        self.app = app
        self.groups = groups
        self.tag = f'<script src="{script_path}" async></script>'.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        decision = (scope.get("state") or {}).get("shield")
        if scope["type"] != "http" or decision is None or decision.route_group not in self.groups:
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []
        passing = False

        async def send_injected(message: dict) -> None:
            nonlocal start, passing
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                if b"text/html" in headers.get(b"content-type", b"") and b"content-encoding" not in headers:
                    start = message
                else:
                    passing = True
                    await send(message)
                return
            if passing or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if sum(len(c) for c in chunks) > self.MAX_PAGE:
                passing = True
                await send(start)
                await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
                await send({**message, "body": b""})
                return
            if not message.get("more_body", False):
                page = b"".join(chunks)
                at = page.rfind(b"</body>")
                page = page + self.tag if at < 0 else page[:at] + self.tag + page[at:]
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                headers.append((b"content-length", b"%d" % len(page)))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, send_injected)


def install_telemetry(middleware: Any) -> TelemetryEndpoint:
    """Wire the telemetry and collector endpoints (and the optional injector) into a middleware."""
    endpoint = TelemetryEndpoint(middleware)
    # Compile (or load from Numba's cache) the kernels and read the model now, not on a request.
    warm_up()
    load_model()
    middleware.add_endpoint(f"{middleware.prefix}/telemetry", endpoint.handle_telemetry)
    middleware.add_endpoint(f"{middleware.prefix}/collector.js", endpoint.handle_collector)
    if endpoint.settings.inject_groups:
        middleware.app = CollectorInjector(middleware.app, frozenset(endpoint.settings.inject_groups),
                                           f"{middleware.prefix}/collector.js")
    middleware.telemetry = endpoint
    return endpoint
