"""Policy for the traffic signals: per-group `limits:` and the top-level `traffic:` section."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from shieldware.policy import register_group_field, register_section
from shieldware.store.base import Rate, parse_rate

LIMIT_KEYS = ("ip", "prefix", "fingerprint", "session", "account")
"""What a group's limits may be counted per: client IP, its /24 or /64, header fingerprint,
session cookie, signed-in account."""


def parse_limits(raw: Any, where: str, check: Any) -> dict[str, tuple[Rate, ...]]:
    """`limits: ["10/s", "300/min"]` (per IP) or `limits: {ip: [...], fingerprint: [...]}`."""
    if raw is None or raw is False:
        return {}
    if isinstance(raw, (str, list)):
        raw = {"ip": raw}
    if not isinstance(raw, dict):
        check.fail(where, "a list of rates like [10/s, 300/min], or a mapping of " + ", ".join(LIMIT_KEYS)
                   + " to such lists", raw)
        return {}
    limits: dict[str, tuple[Rate, ...]] = {}
    for per, rates in raw.items():
        at = f"{where}.{per}"
        if per not in LIMIT_KEYS:
            check.fail(at, "one of " + ", ".join(LIMIT_KEYS), per)
            continue
        parsed = []
        for i, text in enumerate(rates if isinstance(rates, list) else [rates]):
            try:
                parsed.append(parse_rate(text))
            except ValueError as exc:
                check.fail(f"{at}[{i}]", f"a rate like 10/s, 300/min or 5000/hour ({exc})", text)
        if parsed:
            limits[per] = tuple(parsed)
    return limits


@dataclass(frozen=True, slots=True)
class TrafficSettings:
    """Thresholds of the behaviour signals (policy `traffic:` section); defaults suit a shop."""

    assets_through_shieldware: bool = True   # false when a CDN serves /static: no-assets is then meaningless
    session_cookies: tuple[str, ...] = ("shop_session", "session", "sessionid", "PHPSESSID", "JSESSIONID",
                                        "connect.sid", "laravel_session", "_session_id", "frontend")
    regular_min_gaps: int = 12               # page gaps before timing regularity is judged
    regular_max_cv: float = 0.25             # coefficient of variation below which timing is machine-like
    enumeration_min_products: int = 12       # product pages (decayed) before a walk is judged
    enumeration_min_sequential: float = 0.6  # share of product pages adjacent to one seen just before
    sweep_min_distinct: int = 25             # distinct products in a visit ...
    sweep_max_listing_share: float = 0.1     # ... with at most this share of listing/search pages
    probing_min_errors: float = 8.0          # 401/403/404/405/410 answers in the last minutes ...
    probing_min_share: float = 0.3           # ... making at least this share of the requests
    no_assets_min_pages: float = 12.0        # pages in the last half hour with ...
    no_assets_max_share: float = 0.03        # ... at most this share of static assets
    amnesia_min_pages: float = 8.0           # pages from one IP + fingerprint with ...
    amnesia_min_share: float = 0.9           # ... at least this share arriving without the session cookie
    burst_pages_10s: float = 25.0            # soft evidence (score), below the hard limits
    sustained_pages_10min: float = 400.0
    prefix_pages_10min: float = 1500.0       # pages from one /24 or /64 in ten minutes ...
    prefix_min_ips: float = 16.0             # ... spread over at least this many addresses
    walk_min_pages: float = 20.0             # cookieless product pages (decayed) of one client software ...
    walk_min_sequential: float = 0.5         # ... at least this share following the id fetched just before ...
    walk_min_addresses: float = 8.0          # ... from at least this many addresses
    # A flagged client's assessment stands this long while the same findings fire (its numbers
    # then date from the assessment, which the decision names); 0 assesses every request.
    hold_findings_s: float = 1.0


_NUMBER_FIELDS = {f.name for f in fields(TrafficSettings)} - {"assets_through_shieldware", "session_cookies"}


def parse_traffic(raw: Any, where: str, check: Any) -> TrafficSettings:
    raw = check.mapping(raw, where)
    check.unknown_keys(raw, [f.name for f in fields(TrafficSettings)], where)
    changes: dict[str, Any] = {}
    for name, value in raw.items():
        at = f"{where}.{name}"
        if name == "assets_through_shieldware":
            if not isinstance(value, bool):
                check.fail(at, "true or false", value)
            else:
                changes[name] = value
        elif name == "session_cookies":
            changes[name] = check.string_list(value, at)
        elif name in _NUMBER_FIELDS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                check.fail(at, "a non-negative number", value)
            else:
                changes[name] = value
    return replace(TrafficSettings(), **changes)


def parse_product_ids(raw: Any, where: str, check: Any) -> bool | None:
    if not isinstance(raw, bool):
        check.fail(where, "true or false", raw)
        return None
    return raw


PRODUCT_GROUP = "product"


def watches_product_ids(group: Any) -> bool:
    """Whether a route group's paths end in product ids the walk signals follow (`product_ids:`;
    by default only the group named "product"). A JSON API of products (`/api/product/42`) is
    walked by scrapers as much as the pages are: give it a group of its own with `product_ids: true`."""
    ids = group.setting("product_ids")
    return group.name == PRODUCT_GROUP if ids is None else ids


register_group_field("limits", parse_limits, dict)
register_group_field("product_ids", parse_product_ids, lambda: None)
register_section("traffic", parse_traffic, TrafficSettings)
