"""The challenge action: interstitial page, solution and no-JS endpoints, clearance cookie, metrics.

`install_challenges(middleware)` answers the CHALLENGE verdict and adds, under the middleware's
prefix: `/challenge` (a challenge page for `?return=URL`, where JSON clients send people),
`/challenge/verify` (POST of the proof of work and telemetry), `/challenge/nojs` (the
meta-refresh target for browsers with JavaScript off) and `/challenge/pixel` (loaded by such
browsers, so a bare HTTP client cannot take the no-JS path by reading one header) and
`/challenge/check` (the page asks whether the clearance cookie came back before leaving, so a
browser that drops cookies is told so instead of being challenged in a loop).
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from dataclasses import replace
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from shieldware.actions.challenge_policy import ChallengeSettings
from shieldware.actions.page_template import PageTemplate, template
from shieldware.actions.pages import decision_response, html_escape, wants_json
from shieldware.actions.proof import (
    Binding,
    Rejected,
    check_clearance_binding,
    client_binding,
    issue_challenge,
    issue_clearance,
    safe_return_url,
    verify_challenge_token,
    verify_clearance_signature,
    verify_solution,
)
from shieldware.actions.tokens import Keyring, default_keyring
from shieldware.decision import Decision, Verdict, new_reference
from shieldware.evidence import describe
from shieldware.facts import RequestFacts
from shieldware.signals.clearance import ClearanceSignal

log = logging.getLogger("shieldware.challenge")

MAX_SOLUTION_BYTES = 16 * 1024
MAX_TELEMETRY_KEYS = 48
PIXEL_GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f904010000000"
                          "02c000000000100010000020144003b")
_HTML = b"text/html; charset=utf-8"
_JSON = b"application/json"


SOLVE_SECONDS_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


class ChallengeMetrics:
    """Challenges issued, solved, failed (by reason), expired, and the time people took to solve.

    Exported through the engine's Metrics as shieldware_challenges_issued_total{kind},
    _solved_total{mode}, _failed_total{reason}, _expired_total and the histogram
    shieldware_challenge_solve_seconds (issue to accepted solution, measured by the server).
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine  # read at each update: the engine's Metrics may be swapped (tests do)

    def issued(self, kind: str) -> None:
        self.engine.metrics.count("challenges_issued", kind=kind)

    def solved(self, mode: str, seconds: float) -> None:
        self.engine.metrics.count("challenges_solved", mode=mode)
        self.engine.metrics.observe("challenge_solve_seconds", seconds, SOLVE_SECONDS_BUCKETS)

    def failed(self, reason: str) -> None:
        self.engine.metrics.count("challenges_failed", reason=reason)
        if reason == "challenge.expired":
            self.engine.metrics.count("challenges_expired")


@lru_cache(maxsize=1)
def challenge_script() -> str:
    # Inlined into the page: one response, nothing else to fetch, and a CSP nonce can cover it.
    # The browser collector (biometrics) runs first, so the solution can carry its telemetry.
    web = resources.files("shieldware.web")
    return (web.joinpath("collector.js").read_text(encoding="utf-8") + "\n"
            + web.joinpath("challenge.js").read_text(encoding="utf-8"))


def json_for_html(value: Any) -> str:
    """JSON that is safe inside a <script> element (no '</script>' or HTML comment can form)."""
    return (json.dumps(value, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def cookie_header(name: str, value: str, max_age: float, path: str, secure: bool) -> tuple[bytes, bytes]:
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max(0, int(max_age))}", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    return b"set-cookie", "; ".join(parts).encode("latin-1")


async def read_body(receive: Any, limit: int) -> bytes | None:
    """The request body, or None when it is larger than `limit` or the client went away."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def clean_telemetry(raw: Any) -> dict[str, Any]:
    """Keep the collector's telemetry small and flat: scalars and short lists of scalars only."""
    if not isinstance(raw, dict):
        return {}
    cleaned: dict[str, Any] = {}
    for key, value in list(raw.items())[:MAX_TELEMETRY_KEYS]:
        if not isinstance(key, str) or len(key) > 40:
            continue
        if isinstance(value, (bool, int, float)) or value is None:
            cleaned[key] = value
        elif isinstance(value, str):
            cleaned[key] = value[:120]
        elif isinstance(value, list) and all(isinstance(v, (bool, int, float, str)) for v in value[:16]):
            cleaned[key] = [v[:60] if isinstance(v, str) else v for v in value[:16]]
    return cleaned


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Challenges:
    """The challenge feature of one middleware: it shares the middleware's engine, store and clock."""

    def __init__(self, middleware: Any, keyring: Keyring | None = None) -> None:
        self.middleware = middleware
        self.engine = middleware.engine
        self.policy = middleware.policy
        self.prefix = middleware.prefix
        self.settings: ChallengeSettings = self.policy.section("challenge")
        self.keyring = keyring or default_keyring()
        self.metrics = ChallengeMetrics(self.engine)
        self.page_path = f"{self.prefix}/challenge"
        self.verify_path = f"{self.prefix}/challenge/verify"
        self.nojs_path = f"{self.prefix}/challenge/nojs"
        self.pixel_path = f"{self.prefix}/challenge/pixel"
        self.check_path = f"{self.prefix}/challenge/check"
        self.probe_cookie = f"{self.settings.cookie_name}_probe"
        self._pages: tuple[ChallengeSettings | None, dict[tuple[str, str], PageTemplate]] = (None, {})

    @property
    def store(self) -> Any:
        return self.engine.store

    # ---- answering a CHALLENGE verdict --------------------------------------------------------

    async def respond(self, decision: Decision, facts: RequestFacts, scope: Any, receive: Any,
                      send: Any) -> None:
        settings = self.settings
        if wants_json(facts.header_map):
            await self._json_challenge(decision, facts, send)
            return
        binding = client_binding(facts, settings)
        target = self._target_of(facts)
        group = self.policy.group(decision.route_group)
        difficulty = settings.difficulty_for(decision.bot_score, group.challenge_above if group else None)
        await self._serve_page(decision.ref, facts, binding, target, difficulty,
                               settings.nojs_allowed(decision.bot_score), 403, send)

    def _target_of(self, facts: RequestFacts) -> str:
        """Where the browser goes after the check: this URL for GET, the referring page otherwise."""
        if facts.method in ("GET", "HEAD"):
            return safe_return_url(facts.url, self.prefix)
        return self._referring_path(facts)

    def _referring_path(self, facts: RequestFacts) -> str:
        referer = facts.header_map.get("referer", "")
        try:
            parts = urlsplit(referer)
        except ValueError:
            return "/"
        if not referer or parts.netloc != facts.host:
            return "/"
        return safe_return_url(parts.path + (f"?{parts.query}" if parts.query else ""), self.prefix)

    def page_url(self, target: str) -> str:
        return f"{self.page_path}?return={quote(target, safe='/')}"

    async def _json_challenge(self, decision: Decision, facts: RequestFacts, send: Any) -> None:
        """Scripts and XHR get JSON that tells the shop's front end where to send the person."""
        target = self._referring_path(facts)
        rate_driven = any(code.startswith("rate.") for code in decision.reason_codes)
        payload = {
            "error": "challenge",
            "message": "A browser check is required. Open challenge.page in the browser, then retry.",
            "ref": decision.ref,
            "reasons": list(decision.reason_codes),
            "challenge": {
                "type": "proof_of_work",
                "page": self.page_url(target),
                "return": target,
                "javascript_required": not self.settings.nojs_allowed(decision.bot_score),
            },
        }
        self.metrics.issued("json")
        headers = [(b"content-type", _JSON), (b"x-shield-ref", decision.ref.encode()),
                   (b"x-shield-verdict", b"challenge")]
        await _send(send, 429 if rate_driven else 403, headers, json.dumps(payload).encode())

    async def _serve_page(self, ref: str, facts: RequestFacts, binding: Binding, target: str, difficulty: int,
                          nojs: bool, status: int, send: Any) -> None:
        settings = self.settings
        token, _claims = issue_challenge(self.keyring, binding, target, difficulty, nojs, settings, facts.now)
        lang, texts = settings.texts_for(facts.header_map.get("accept-language", ""))
        nonce = secrets.token_urlsafe(12)
        quoted = quote(token, safe="")
        if nojs:
            wait = math.ceil(settings.nojs_min_wait) + 1
            refresh = (f'<noscript><meta http-equiv="refresh" content="{wait}; '
                       f'url={self.nojs_path}?t={quoted}"></noscript>')
            pixel = f'<img src="{self.pixel_path}?t={quoted}" alt="" width="1" height="1">'
            nojs_text = texts["nojs_wait"]
        else:
            refresh, pixel, nojs_text = "", "", texts["nojs_blocked"]
        config = {
            "token": token,
            "difficulty": difficulty,
            "url": target,
            "verify": self.verify_path,
            "check": self.check_path,
            "texts": {key: texts[key] for key in ("done", "failed", "cookies")},
        }
        body = self._challenge_page(settings, lang, texts, nojs_text).fill(
            nojs_refresh=refresh, nojs_pixel=pixel, ref=html_escape(ref), config=json_for_html(config), nonce=nonce)
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self'; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'")
        headers = [
            (b"content-type", _HTML),
            (b"content-security-policy", csp.encode()),
            (b"x-shield-ref", ref.encode()),
            (b"x-shield-verdict", b"challenge"),
            # The verify POST must carry this: a client that drops cookies is told so, not looped.
            cookie_header(self.probe_cookie, "1", settings.expires_after, self.page_path,
                          facts.over_https),
        ]
        self.metrics.issued("page")
        await _send(send, status, headers, body)

    def _challenge_page(self, settings: ChallengeSettings, lang: str, texts: dict[str, str],
                        nojs_text: str) -> PageTemplate:
        """The challenge page in `lang`, all but each request's own holes filled in: kept per
        language and no-JS text for the settings in force (the languages are the policy's)."""
        if self._pages[0] is not settings:
            self._pages = (settings, {})
        pages = self._pages[1]
        page = pages.get((lang, nojs_text))
        if page is None:
            page = pages[(lang, nojs_text)] = template("challenge.html").bind(
                lang=html_escape(lang), title=html_escape(texts["title"]), message=html_escape(texts["message"]),
                working=html_escape(texts["working"]), nojs_text=html_escape(nojs_text),
                reference_label=html_escape(texts["reference"]), help=html_escape(texts["help"]),
                script=challenge_script())
        return page

    async def _notice(self, ref: str, facts: RequestFacts, title_key: str, message: str, target: str | None,
                      status: int, send: Any, extra_headers: list[tuple[bytes, bytes]] = ()) -> None:
        lang, texts = self.settings.texts_for(facts.header_map.get("accept-language", ""))
        action = ""
        if target is not None:
            link = html_escape(self.page_url(target))
            action = f'<p><a href="{link}">{html_escape(texts["try_again"])}</a></p>'
        body = template("challenge_notice.html").fill(
            lang=html_escape(lang), title=html_escape(texts[title_key]), message=html_escape(message),
            action=action, reference_label=html_escape(texts["reference"]), ref=html_escape(ref),
            help=html_escape(texts["help"]),
        )
        headers = [(b"content-type", _HTML), (b"x-shield-ref", ref.encode()), *extra_headers]
        await _send(send, status, headers, body)

    # ---- endpoints ----------------------------------------------------------------------------

    async def page_endpoint(self, scope: Any, receive: Any, send: Any, facts: RequestFacts) -> None:
        """GET {prefix}/challenge?return=/path — where a front end sends a person after a JSON refusal."""
        wanted = parse_qs(facts.query).get("return", ["/"])[0]
        target = safe_return_url(wanted, self.prefix)
        path, _, query = target.partition("?")
        decision = await self.engine.decide(replace(facts, path=path, query=query))
        if decision.action is Verdict.BLOCK:
            status, headers, body = decision_response(decision, wants_json(facts.header_map))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        binding = client_binding(facts, self.settings)
        group = self.policy.group(decision.route_group)
        threshold = group.challenge_above if group else None
        difficulty = self.settings.difficulty_for(decision.bot_score, threshold)
        await self._serve_page(decision.ref, facts, binding, target, difficulty,
                               self.settings.nojs_allowed(decision.bot_score), 200, send)

    async def verify_endpoint(self, scope: Any, receive: Any, send: Any, facts: RequestFacts) -> None:
        """POST {prefix}/challenge/verify — JSON {challenge, counter, url, solve_ms, telemetry}."""
        if facts.method != "POST":
            await _send(send, 405, [(b"allow", b"POST"), (b"content-type", _JSON)],
                        b'{"ok":false,"reason":"method_not_allowed"}')
            return
        body = await read_body(receive, MAX_SOLUTION_BYTES)
        try:
            payload = json.loads(body) if body is not None else None
            token, counter, url = payload["challenge"], payload["counter"], payload["url"]
            if not all(isinstance(v, str) for v in (token, counter, url)):
                raise TypeError("challenge, counter and url must be strings")
        except (ValueError, TypeError, KeyError) as exc:
            await self._refuse_solution(facts, send, Rejected("challenge.bad_request", why=str(exc)[:120]))
            return
        binding = client_binding(facts, self.settings)
        try:
            claims = verify_solution(self.keyring, token, counter, url, binding, self.settings, facts.now)
            # Single use first, so a replay is named a replay whatever cookies it carries.
            await self._claim(claims, facts.now)
            if self.probe_cookie not in facts.cookies:
                raise Rejected("challenge.cookies_disabled")
        except Rejected as exc:
            await self._refuse_solution(facts, send, exc)
            return
        telemetry = clean_telemetry(payload.get("telemetry"))
        automation = telemetry.get("webdriver") is True
        solve_ms = payload.get("solve_ms")
        await self._grant(facts, binding, claims, "pow", automation, {
            "telemetry": telemetry,
            "client_solve_ms": solve_ms if isinstance(solve_ms, (int, float)) else None,
        })
        clearance_headers = self._clearance_headers(facts, binding, "pow", automation)
        clearance_headers.append(cookie_header(self.probe_cookie, "", 0, self.page_path,
                                               facts.over_https))
        # The collector's batch rides along (telemetry format v1); biometrics scores it for the session.
        telemetry_sink = getattr(self.middleware, "telemetry", None)
        if telemetry_sink is not None and payload.get("collector") is not None:
            clearance_headers += await telemetry_sink.ingest_alongside(payload["collector"], facts)
        answer = json.dumps({"ok": True, "redirect": claims["u"]}).encode()
        await _send(send, 200, [(b"content-type", _JSON), *clearance_headers], answer)

    async def nojs_endpoint(self, scope: Any, receive: Any, send: Any, facts: RequestFacts) -> None:
        """GET {prefix}/challenge/nojs?t=TOKEN — followed by a meta refresh after the minimum wait."""
        token = parse_qs(facts.query).get("t", [""])[0]
        binding = client_binding(facts, self.settings)
        now = facts.now
        claims: dict[str, Any] = {}
        try:
            claims = verify_challenge_token(self.keyring, token, binding, self.settings, now)
            if not claims.get("nj"):
                raise Rejected("challenge.nojs_not_allowed")
            waited = now - claims["iat"]
            if waited < self.settings.nojs_min_wait:
                raise Rejected("challenge.too_early", waited=round(waited, 2))
            if await self._store_get("challenge.pixel", claims["n"], now) is None:
                raise Rejected("challenge.nojs_incomplete")
            await self._claim(claims, now)
        except Rejected as exc:
            self._count_failure(exc)
            await self._report(facts, "challenge_failed", {"reason": exc.code, "mode": "nojs"})
            await self._notice(new_reference(), facts, "title", describe(exc.code), claims.get("u", "/"),
                               403, send, [(b"x-shield-reason", exc.code.encode())])
            return
        await self._grant(facts, binding, claims, "nojs", False, {})
        headers = [(b"location", claims["u"].encode("latin-1", "replace")), (b"content-type", b"text/plain"),
                   *self._clearance_headers(facts, binding, "nojs", False)]
        await _send(send, 303, headers, b"")

    async def check_endpoint(self, scope: Any, receive: Any, send: Any, facts: RequestFacts) -> None:
        """GET {prefix}/challenge/check — did the clearance cookie come back? The page asks before leaving.

        A browser that accepted the verify answer but does not send the cookie back would be
        challenged on every page; asking first lets the page say so instead of looping.
        """
        answer: dict[str, Any] = {"clearance": "none"}
        token = facts.cookies.get(self.settings.cookie_name)
        if token is not None:
            try:
                claims = verify_clearance_signature(self.keyring, token)
                binding = client_binding(facts, self.settings)
                check_clearance_binding(claims, binding, self.settings, facts.now)
                answer = {"clearance": "valid", "expires_in": round(claims["exp"] - facts.now)}
            except Rejected as exc:
                answer = {"clearance": "invalid", "reason": exc.code}
        if answer["clearance"] != "valid":
            self.metrics.failed("challenge.cookies_disabled")
        await _send(send, 200, [(b"content-type", _JSON)], json.dumps(answer).encode())

    async def pixel_endpoint(self, scope: Any, receive: Any, send: Any, facts: RequestFacts) -> None:
        """GET {prefix}/challenge/pixel?t=TOKEN — a browser without JS loads it; the no-JS path needs it."""
        token = parse_qs(facts.query).get("t", [""])[0]
        try:
            claims = verify_challenge_token(self.keyring, token, client_binding(facts, self.settings),
                                            self.settings, facts.now)
            if claims.get("nj"):
                await self.store.put_record("challenge.pixel", claims["n"], {"at": facts.now},
                                            self.settings.expires_after, facts.now)
        except Rejected:
            pass
        except Exception:
            log.warning("store failed while recording a no-JS pixel", exc_info=True)
        await _send(send, 200, [(b"content-type", b"image/gif")], PIXEL_GIF)

    # ---- shared steps -------------------------------------------------------------------------

    async def _store_get(self, kind: str, key: str, now: float) -> dict | None:
        try:
            return await self.store.get_record(kind, key, now)
        except Exception as exc:
            raise Rejected("challenge.store_unavailable", why=type(exc).__name__) from exc

    async def _claim(self, claims: dict[str, Any], now: float) -> None:
        """Record the nonce as used; a second solution of the same challenge is a replay."""
        ttl = max(1.0, claims["exp"] - now) + 60.0
        try:
            first = await self.store.claim_once("challenge.nonce", claims["n"], ttl, now)
        except Exception as exc:
            raise Rejected("challenge.store_unavailable", why=type(exc).__name__) from exc
        if not first:
            raise Rejected("challenge.replayed")

    def _clearance_headers(self, facts: RequestFacts, binding: Binding, mode: str,
                           automation: bool) -> list[tuple[bytes, bytes]]:
        clearance, lifetime = issue_clearance(self.keyring, binding, self.settings, facts.now, mode=mode,
                                              automation=automation)
        return [cookie_header(self.settings.cookie_name, clearance, lifetime, "/", facts.over_https)]

    async def _grant(self, facts: RequestFacts, binding: Binding, claims: dict[str, Any], mode: str,
                     automation: bool, fields: dict[str, Any]) -> None:
        took = max(0.0, facts.now - claims["iat"])
        self.metrics.solved(mode, took)
        await self._report(facts, "challenge_solved", {
            "mode": mode, "difficulty": claims["d"], "solve_seconds": round(took, 3), "url": claims["u"],
            "automation": automation, **fields,
        })

    def _count_failure(self, exc: Rejected) -> None:
        self.metrics.failed(exc.code)

    async def _refuse_solution(self, facts: RequestFacts, send: Any, exc: Rejected) -> None:
        self._count_failure(exc)
        await self._report(facts, "challenge_failed", {"reason": exc.code, "mode": "pow"})
        status = {"challenge.store_unavailable": 503, "challenge.bad_request": 400}.get(exc.code, 403)
        answer = {"ok": False, "reason": exc.code, "message": describe(exc.code)}
        await _send(send, status, [(b"content-type", _JSON)], json.dumps(answer).encode())

    async def _report(self, facts: RequestFacts, event: str, fields: dict[str, Any]) -> None:
        """Outcomes reach the engine like app reports do, so signals can learn from them."""
        decision = Decision(ref=new_reference(), verdict=Verdict.ALLOW, bot_score=0.0, reasons=(),
                            route_group="challenge", time=facts.now, client_ip=facts.client_ip,
                            method=facts.method, path=facts.path, user_agent=facts.user_agent)
        await self.engine.feedback(decision, facts.now, event=event, fields=fields)


def install_challenges(middleware: Any, keyring: Keyring | None = None) -> Challenges:
    """Wire challenges into a ShieldMiddleware: the CHALLENGE responder, the endpoints, the signal.

    Calling it again (e.g. with another keyring) replaces the previous installation.
    """
    challenges = Challenges(middleware, keyring)
    middleware.set_responder(Verdict.CHALLENGE, challenges.respond)
    middleware.add_endpoint(challenges.page_path, challenges.page_endpoint)
    middleware.add_endpoint(challenges.verify_path, challenges.verify_endpoint)
    middleware.add_endpoint(challenges.nojs_path, challenges.nojs_endpoint)
    middleware.add_endpoint(challenges.pixel_path, challenges.pixel_endpoint)
    middleware.add_endpoint(challenges.check_path, challenges.check_endpoint)
    engine = middleware.engine
    signal = next((s for s in engine.signals if isinstance(s, ClearanceSignal)), None)
    if signal is None:
        # An engine built with its own signal list still needs clearances to count.
        signal = ClearanceSignal()
        signal.bind(engine)
        engine.signals.append(signal)
        engine._plans.clear()
    signal.keyring = challenges.keyring
    middleware.challenges = challenges
    return challenges
