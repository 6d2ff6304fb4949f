"""Who is behind a request, as window keys: client fingerprint, IP prefix, ASN, session.

The fingerprint comes from the fingerprint signal (``inspection.attrs["fingerprint"]``) when it
runs; until then, and for front doors without it, :func:`client_fingerprint` derives a
stand-in from the ordered header names and the user agent. This is the ONE place that
fallback lives, so swapping in the real fingerprint touches nothing else.
"""

from __future__ import annotations

import hashlib
import ipaddress
from functools import lru_cache

from shieldware.facts import RequestFacts
from shieldware.signals.base import Inspection

# Headers whose presence depends on the request (a body, a cookie jar, a proxy), not on the client stack.
_VOLATILE = frozenset(("cookie", "content-length", "content-type", "x-forwarded-for", "x-real-ip", "forwarded",
                       "origin", "referer", "cache-control", "pragma", "x-forwarded-proto", "x-forwarded-host",
                       "if-none-match", "if-modified-since", "authorization", "priority", "host"))
_MAX_CACHED = 4096
_derived: dict[tuple[tuple[str, ...], str], str] = {}

SESSION_COOKIES = ("shop_session", "session", "sessionid", "sid", "PHPSESSID", "JSESSIONID", "connect.sid",
                   "_session_id", "laravel_session", "ci_session", "ASP.NET_SessionId", "frontend", "wordpress_sec")


def client_fingerprint(facts: RequestFacts, inspection: Inspection) -> str:
    """The client-stack fingerprint: the fingerprint signal's, else a hash of header order + UA."""
    real = inspection.attrs.get("fingerprint")
    if real:
        return str(real)
    names = tuple(name for name, _ in facts.headers if name not in _VOLATILE)
    key = (names, facts.header_map.get("user-agent", ""))
    found = _derived.get(key)
    if found is None:
        if len(_derived) >= _MAX_CACHED:
            _derived.clear()
        digest = hashlib.blake2b("\n".join(names).encode() + b"\0" + key[1].encode("utf-8", "replace"),
                                 digest_size=8).hexdigest()
        found = _derived[key] = "h:" + digest
    return found


@lru_cache(maxsize=8192)
def ip_prefix(client_ip: str) -> str:
    """The /24 of an IPv4 address or the /48 of an IPv6 one (where one operator's hosts usually sit)."""
    head, dot, last = client_ip.rpartition(".")
    if dot and ":" not in client_ip and last.isdigit() and head.count(".") == 2:
        return f"{head}.0/24"  # facts hold normalised addresses: an IPv4 prefix is string work
    try:
        addr = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    bits = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


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
