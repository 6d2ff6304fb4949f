"""Request-sanity signal: turns what the front door found malformed into evidence."""

from __future__ import annotations

from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts
from shieldware.signals.base import Inspection

register_reason("req.malformed", 15, "Parts of the request were malformed (cookies, forwarding headers, "
                "non-ASCII header bytes or dot segments in the path); browsers do not send these.")
register_reason("req.oversized_cookie", 25, "The Cookie header is far larger than a shop's cookies ever are.")


class RequestSanitySignal:
    name = "request"
    lane = "shape"  # the fast lane only answers requests without notes

    def inspect(self, facts: RequestFacts, inspection: Inspection) -> None:
        if not facts.notes:
            return
        notes = [n for n in facts.notes if n != "cookie.oversized"]
        if len(notes) != len(facts.notes):
            inspection.add("req.oversized_cookie", cookie_bytes=len(facts.header_map.get("cookie", "")))
        if notes:
            inspection.add("req.malformed", notes=notes)
