"""Who is behind a request, as the account signals' window keys: fingerprint, IP prefix, ASN, session.

The fingerprint comes from the header signal (``inspection.attrs["fingerprint"]``); without it
(a policy that skips that signal) the traffic keys' header-order hash stands in. IP prefixes
are the traffic keys' too (/24, /64), so every signal keys one network block the same way.
"""

from __future__ import annotations

import hashlib

from shieldware.facts import RequestFacts
from shieldware.signals.base import Inspection
from shieldware.signals.traffic_keys import header_fingerprint, ip_prefix

__all__ = ["client_asn", "client_fingerprint", "ip_prefix", "session_key"]

SESSION_COOKIES = ("shop_session", "session", "sessionid", "sid", "PHPSESSID", "JSESSIONID", "connect.sid",
                   "_session_id", "laravel_session", "ci_session", "ASP.NET_SessionId", "frontend", "wordpress_sec")


def client_fingerprint(facts: RequestFacts, inspection: Inspection) -> str:
    """The client-stack fingerprint: the header signal's, else the traffic keys' header-order hash."""
    real = inspection.attrs.get("fingerprint")
    return str(real) if real else header_fingerprint(facts)


def client_asn(inspection: Inspection) -> str | None:
    """The autonomous system number from the network signal, when it ran."""
    asn = inspection.attrs.get("net.asn")
    return str(asn) if asn not in (None, "", 0) else None


def session_key(facts: RequestFacts) -> str | None:
    """A hash of the shop's session cookie, if the client sent a known one.

    Hashed because a session cookie is a bearer credential: it must not sit in the store or the
    decision log in clear.
    """
    cookies = facts.cookies
    if not cookies:
        return None
    for name in SESSION_COOKIES:
        value = cookies.get(name)
        if value:
            return "s:" + hashlib.blake2b(value.encode("utf-8", "replace"), digest_size=8).hexdigest()
    return None
