"""Who a request comes from, as window keys: IP prefix, a header-order fingerprint, product ids."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re

from shieldware.facts import RequestFacts

# Headers whose presence depends on the request or the visit rather than on the client
# software: leaving them out keeps one browser's fingerprint stable across its requests.
_VOLATILE = frozenset({"cookie", "referer", "content-length", "content-type", "if-none-match",
                       "if-modified-since",
                       "cache-control", "pragma", "origin", "x-forwarded-for", "x-real-ip", "forwarded",
                       "sec-fetch-site", "sec-fetch-user", "authorization", "priority", "purpose"})
_PRODUCT_ID = re.compile(r"/(\d{1,12})(?:[-_.][^/]*)?/?\Z")


def ip_prefix(client_ip: str) -> str:
    """The client's /24 (IPv4) or /64 (IPv6): one household, office or hosting block."""
    if ":" not in client_ip and client_ip.count(".") == 3:
        # Dotted IPv4 (the front door normalised it): cheaper than ipaddress on every request.
        return client_ip[:client_ip.rfind(".")] + ".0/24"
    return _ipv6_prefix(client_ip)


@functools.lru_cache(maxsize=65536)
def _ipv6_prefix(client_ip: str) -> str:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip or "-"
    bits = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


@functools.lru_cache(maxsize=8192)
def _fingerprint_of(names: tuple[str, ...], user_agent: str) -> str:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(",".join(names).encode("latin-1", "replace"))
    digest.update(b"|")
    digest.update(user_agent.encode("latin-1", "replace"))
    return "h" + digest.hexdigest()


def header_fingerprint(facts: RequestFacts) -> str:
    """A stable key for the client software: header names in arrival order plus the user agent.

    Used only when the header signal has not published `fingerprint` itself.
    """
    names = tuple(name for name, _ in facts.headers if name not in _VOLATILE)
    return _fingerprint_of(names, facts.user_agent[:300])


def product_id(path: str) -> int | None:
    """The numeric id a product URL ends with (/product/42, /p/42-blue-teapot), if any."""
    match = _PRODUCT_ID.search(path)
    return int(match.group(1)) if match else None
