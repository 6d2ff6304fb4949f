"""The `abuse:` policy section: thresholds of the login (account takeover) and shop-abuse signals.

Every number has a default a shop can live with; the policy overrides any of them, e.g.::

    abuse:
      spray_challenge_accounts: 4
      login_attempts_per_ip: 20/min
      coupon_attempts: 5/10min
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from shieldware.policy import register_section
from shieldware.store.base import Rate, parse_rate

_LOGIN_CEILING = Rate(10, 60)
_CART_ADDS = Rate(30, 60)
_COUPON_TRIES = Rate(10, 600)
_SIGNUPS = Rate(5, 3600)


@dataclass(frozen=True, slots=True)
class AbuseThresholds:
    # -- login, keyed by the attacker (IP, prefix, fingerprint, ASN) --
    spray_challenge_accounts: float = 5       # distinct accounts tried from one IP in a visit → challenge
    spray_block_accounts: float = 10          # ... and with mostly failures → block that IP
    ip_failures_challenge: float = 8          # decayed failed logins from one IP → challenge
    login_attempts_per_ip: Rate = _LOGIN_CEILING  # hard ceiling: a gentle 429 with the exact wait
    prefix_spray_accounts: float = 12         # distinct accounts from one /24 (/64) with mostly failures
    fingerprint_spray_accounts: float = 15    # distinct accounts from one client fingerprint, mostly failing
    fingerprint_spread_ips: float = 15        # distinct IPs sharing one fingerprint, mostly failing
    asn_spray_accounts: float = 30            # distinct accounts from one network (ASN), mostly failing
    failing_ratio: float = 0.6                # "mostly failing": decayed share of failed logins
    # -- login, keyed by the account: challenge only, never block (no lock an attacker can trigger) --
    account_failures_challenge: float = 5     # failures on one account in the last hour → challenge
    account_spread_ips: float = 3             # distinct IPs on one account ...
    account_spread_failures: float = 3        # ... with this many failures in the hour → challenge
    step_up_failures: float = 3               # prior failures that make a success "step up" (and suspect)
    # -- the whole login group --
    mass_attack_min_attempts: float = 10      # decayed (60 s half-life) login outcomes before judging
    mass_attack_margin: float = 0.3           # short-term failure share above the calm baseline ...
    mass_attack_floor: float = 0.5            # ... but never below this share
    typical_failure_ratio: float = 0.2        # the baseline before any traffic has been seen
    under_attack_hold: float = 600            # seconds the automatic switch stays on after the last sign
    # -- shop abuse --
    declines_challenge: float = 3             # declined payments (decayed, 30 min half-life) → challenge
    declines_block: float = 8                 # ... → block on checkout
    fingerprint_declines_block: float = 20    # declines from one fingerprint across IPs → block
    cart_adds: Rate = _CART_ADDS            # add-to-cart velocity per session and per IP
    cart_quantity_hour: float = 200           # items added per session/IP in the last hour → hoarding
    coupon_attempts: Rate = _COUPON_TRIES     # coupon/gift-card tries per session and IP
    coupon_failures_throttle: float = 5       # invalid codes (decayed) → throttle
    coupon_failures_block: float = 30         # invalid codes (decayed) → block (enumeration for sure)
    signups: Rate = _SIGNUPS             # sign-ups per IP
    fingerprint_signups_hour: float = 20      # sign-ups from one fingerprint in the last hour → challenge


_RATE_FIELDS = {f.name for f in fields(AbuseThresholds) if f.type == "Rate"}


def _parse(raw: Any, where: str, check: Any) -> AbuseThresholds:
    raw = check.mapping(raw, where)
    names = [f.name for f in fields(AbuseThresholds)]
    check.unknown_keys(raw, names, where)
    changes: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in names:
            continue
        if name in _RATE_FIELDS:
            try:
                changes[name] = parse_rate(str(value))
            except ValueError as exc:
                check.fail(f"{where}.{name}", f"a rate like 10/min ({exc})", value)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            check.fail(f"{where}.{name}", "a non-negative number", value)
        else:
            changes[name] = float(value)
    return replace(AbuseThresholds(), **changes)


DEFAULT_THRESHOLDS = AbuseThresholds()  # frozen, so one shared instance serves every policy without `abuse:`
register_section("abuse", _parse, lambda: DEFAULT_THRESHOLDS)


def thresholds(policy: Any) -> AbuseThresholds:
    return policy.section("abuse") if policy is not None else AbuseThresholds()
