"""Block, throttle and challenge-required responses, as HTML for people or JSON for scripts."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import lru_cache

from shieldware.actions.page_template import PageTemplate, template
from shieldware.decision import Decision, Verdict

HELP_TEXT = ("If you are a customer and think this is a mistake, contact the shop's support and quote the "
             "reference above; it lets them see exactly why this happened.")

_TEXTS = {
    Verdict.BLOCK: ("Access blocked", "This request looked automated, so the shop did not serve it."),
    Verdict.THROTTLE: ("Slow down, please", "Too many requests arrived from your connection in a short time. "
                       "Please wait a moment and try again."),
    Verdict.CHALLENGE: ("Checking your browser", "The shop needs to check that this visit comes from a browser "
                        "before it serves this page."),
    Verdict.TARPIT: ("Please wait", "The shop is busy; please try again shortly."),
    Verdict.UNAVAILABLE: ("Please try again shortly", "This part of the shop is briefly unavailable. "
                          "Please try again in a few seconds."),
}
_STATUS = {Verdict.BLOCK: 403, Verdict.THROTTLE: 429, Verdict.CHALLENGE: 403, Verdict.TARPIT: 503,
           Verdict.UNAVAILABLE: 503}


def html_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def wants_json(header_map: Mapping[str, str]) -> bool:
    """Scripts get JSON: an Accept that prefers JSON over HTML, or a fetch/XHR request."""
    accept = header_map.get("accept", "")
    if "application/json" in accept and "text/html" not in accept:
        return True
    mode = header_map.get("sec-fetch-mode")
    if mode in ("cors", "same-origin") and "text/html" not in accept:
        return True
    return header_map.get("x-requested-with", "").lower() == "xmlhttprequest"


def retry_after_header(seconds: float | None) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it is never early."""
    return str(max(1, math.ceil(seconds or 1)))


@lru_cache(maxsize=16)
def block_page(verdict: Verdict) -> PageTemplate:
    """The page that answers `verdict`, all but its reference filled in."""
    title, message = _TEXTS.get(verdict, _TEXTS[Verdict.BLOCK])
    return template("block.html").bind(title=html_escape(title), message=html_escape(message),
                                       help=html_escape(HELP_TEXT))


def decision_response(decision: Decision, as_json: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The status, headers and body that answer a non-allow decision (JSON for scripts: see
    `wants_json`)."""
    verdict = decision.action
    status = _STATUS.get(verdict, 403)
    _, message = _TEXTS.get(verdict, _TEXTS[Verdict.BLOCK])
    headers = [
        (b"cache-control", b"no-store"),
        (b"x-shield-ref", decision.ref.encode()),
        (b"x-shield-verdict", verdict.value.encode()),
    ]
    if verdict is Verdict.THROTTLE or verdict is Verdict.UNAVAILABLE:
        headers.append((b"retry-after", retry_after_header(decision.retry_after).encode()))
    if as_json:
        payload = {
            "error": verdict.value,
            "message": message,
            "ref": decision.ref,
            "reasons": list(decision.reason_codes),
        }
        if decision.retry_after is not None:
            payload["retry_after"] = math.ceil(decision.retry_after)
        body = json.dumps(payload).encode()
        headers.append((b"content-type", b"application/json"))
    else:
        body = block_page(verdict).fill(ref=html_escape(decision.ref))
        headers.append((b"content-type", b"text/html; charset=utf-8"))
    headers.append((b"content-length", str(len(body)).encode()))
    return status, headers, body
