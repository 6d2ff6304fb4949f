"""Request-sanity signal: turns what the front door found malformed into evidence."""

from __future__ import annotations

from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.signals.base import Inspection

register_reason("req.malformed", 15, "Parts of the request were malformed (cookies, forwarding headers, "
                "non-ASCII header bytes or dot segments in the path); browsers do not send these.")
register_reason("req.oversized_cookie", 25, "The Cookie header is far larger than a shop's cookies ever are.")
register_reason("req.forged_original", 100, "The edge's headers naming the original request disagreed "
                "(X-Original-URI against X-Forwarded-Uri, or the methods): the client sent its own copy of the "
                "family its edge does not write, to be judged as another request.")

_FORGED_ORIGINAL = {"forward_auth.conflicting_uri": "uri", "forward_auth.conflicting_method": "method"}


class RequestSanitySignal:
    name = "request"
    lane = "shape"  # the fast lane only answers requests without notes

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        if not facts.notes:
            return
        notes = [n for n in facts.notes if n != "cookie.oversized" and n not in _FORGED_ORIGINAL]
        if "cookie.oversized" in facts.notes:
            inspection.add("req.oversized_cookie", cookie_bytes=len(facts.header_map.get("cookie", "")))
        forged = [_FORGED_ORIGINAL[n] for n in facts.notes if n in _FORGED_ORIGINAL]
        if forged:
            inspection.add("req.forged_original", disagree=forged)
        if notes:
            inspection.add("req.malformed", notes=notes)
