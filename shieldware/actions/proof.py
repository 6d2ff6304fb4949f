"""Proof-of-work challenges and clearance tokens: issue, bind to a client, verify — time is an argument.

A challenge is a signed token (nonce, difficulty, issue and expiry time, client binding, the URL
it guards, whether the no-JS path is allowed). The browser finds a counter such that
SHA-256(token + ":" + counter) starts with `difficulty` zero bits. A clearance is a signed
token that says "this client solved a challenge", bound to the same client and valid until
its expiry. Every refusal carries a specific reason code.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from shieldware.actions.challenge_policy import ChallengeSettings
from shieldware.actions.tokens import Keyring, TokenRejected, b64encode
from shieldware.evidence import register_reason
from shieldware.facts import RequestFacts

CHALLENGE_PURPOSE = "chl"
CLEARANCE_PURPOSE = "clr"
MAX_URL_LENGTH = 2048
MAX_COUNTER_DIGITS = 16
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # no control character may ride along in a return URL

# Challenge refusals (answers of the verify endpoint; logged and counted, not request evidence).
for _code, _text in (
    ("challenge.malformed", "The challenge token was not a well-formed shieldware token."),
    ("challenge.forged", "The challenge token's signature did not match: it was not issued by this shop."),
    ("challenge.unknown_key", "The challenge token names a signing key this shop does not have."),
    ("challenge.retired_key", "The challenge token was signed with a key that has been retired."),
    ("challenge.expired", "The challenge was solved after it expired."),
    ("challenge.ip_mismatch", "The solution came from another network than the challenge was issued to."),
    ("challenge.ua_mismatch", "The solution came from another browser than the challenge was issued to."),
    ("challenge.url_mismatch", "The solution was presented for another URL than the challenge guards."),
    ("challenge.wrong_solution", "The proof of work does not have the required number of leading zero bits."),
    ("challenge.replayed", "This challenge was already solved once; a solution is accepted only once."),
    ("challenge.bad_request", "The solution request was not the JSON the challenge page sends."),
    ("challenge.cookies_disabled", "The browser does not keep cookies, so a clearance could never be used."),
    ("challenge.nojs_not_allowed", "The no-JavaScript path is not open to this client (score too high)."),
    ("challenge.too_early", "The no-JavaScript path was followed before its minimum wait."),
    ("challenge.nojs_incomplete",
     "The no-JavaScript path was taken without loading the page like a browser."),
    ("challenge.store_unavailable", "The store that records used nonces did not answer; try again."),
):
    register_reason(_code, 0, _text)

# Clearance evidence on ordinary requests (the clearance signal adds these).
for _code, _weight, _text in (
    ("clearance.valid", -40, "The client carries a valid clearance: it solved a challenge recently."),
    ("clearance.malformed", 20, "The clearance cookie is not a well-formed token."),
    ("clearance.forged", 50, "The clearance cookie's signature does not match: forged or altered."),
    ("clearance.unknown_key", 30, "The clearance cookie names a signing key this shop does not have."),
    ("clearance.retired_key", 5, "The clearance cookie was signed with a retired key (rotation)."),
    ("clearance.expired", 0, "The clearance cookie has expired; the client must solve a new challenge."),
    ("clearance.ip_mismatch", 25, "The clearance was issued to another network (IP prefix)."),
    ("clearance.ua_mismatch", 35, "The clearance was issued to another browser (User-Agent)."),
    ("clearance.fingerprint_mismatch", 35, "The clearance was issued to a client with other headers."),
    ("clearance.reuse", 70, "One clearance is being used from many addresses or fingerprints: it was "
     "collected and shared between clients."),
    ("clearance.automation", 30, "When it solved the challenge, the browser reported automation "
     "(navigator.webdriver)."),
):
    register_reason(_code, _weight, _text)


class Rejected(Exception):
    """A challenge solution or clearance was refused; `code` is its registered reason code."""

    def __init__(self, code: str, **detail: Any) -> None:
        self.code = code
        self.detail = detail
        super().__init__(code)


@dataclass(frozen=True, slots=True)
class Binding:
    """Short hashes of what a token is bound to: the client's IP prefix, UA and header fingerprint."""

    ip: str
    ua: str
    fingerprint: str


def _short_hash(text: str) -> str:
    return b64encode(hashlib.sha256(text.encode("utf-8", "replace")).digest()[:9])


@lru_cache(maxsize=8192)
def ip_prefix(client_ip: str, ipv4_bits: int, ipv6_bits: int) -> str:
    """The network a client address belongs to for binding (a /24 keeps a home NAT's reconnects)."""
    try:
        addr = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    bits = ipv4_bits if addr.version == 4 else ipv6_bits
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


@lru_cache(maxsize=8192)
def _hash_cached(text: str) -> str:
    return _short_hash(text)


# Headers that a browser sends with the same value on every request of a session, whatever
# the request type (navigation, image, fetch): they make a stable fingerprint to bind to.
STABLE_HEADERS = ("accept-language", "accept-encoding", "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform")


def client_binding(facts: RequestFacts, settings: ChallengeSettings) -> Binding:
    header_map = facts.header_map
    prefix = ip_prefix(facts.client_ip, settings.ipv4_prefix, settings.ipv6_prefix)
    stable = "\n".join(header_map.get(name, "") for name in STABLE_HEADERS)
    return Binding(_hash_cached(prefix), _hash_cached(facts.user_agent), _hash_cached(stable))


def safe_return_url(url: str, prefix: str) -> str:
    """A same-site path to send the browser back to; anything else (or our own endpoints) becomes '/'."""
    if (not url or len(url) > MAX_URL_LENGTH or not url.startswith("/") or url.startswith("//")
            or "\\" in url or _CONTROL.search(url)
            or url == prefix or url.startswith(prefix + "/") or url.startswith(prefix + "?")):
        return "/"
    return url


def issue_challenge(keyring: Keyring, binding: Binding, url: str, difficulty: int, nojs: bool,
                    settings: ChallengeSettings, now: float) -> tuple[str, dict[str, Any]]:
    claims = {
        "n": b64encode(secrets.token_bytes(12)),
        "d": difficulty,
        "iat": round(now, 3),
        "exp": round(now + settings.expires_after, 3),
        "ip": binding.ip,
        "ua": binding.ua,
        "u": url,
        "nj": 1 if nojs else 0,
    }
    return keyring.sign(CHALLENGE_PURPOSE, claims), claims


def leading_zero_bits_ok(digest: bytes, bits: int) -> bool:
    return int.from_bytes(digest, "big") >> (256 - bits) == 0


def _verify_token(keyring: Keyring, purpose: str, token: str, family: str) -> dict[str, Any]:
    try:
        return keyring.verify(purpose, token)
    except TokenRejected as exc:
        raise Rejected(f"{family}.{exc.reason}", why=exc.detail) from exc


def _check_bound(claims: dict[str, Any], binding: Binding, settings: ChallengeSettings, family: str,
                 now: float) -> None:
    expiry = claims.get("exp")
    if not isinstance(expiry, (int, float)):
        raise Rejected(f"{family}.malformed", why="no expiry")
    if now >= expiry:
        raise Rejected(f"{family}.expired", expired_seconds_ago=round(now - expiry, 1))
    if claims.get("ip") != binding.ip:
        raise Rejected(f"{family}.ip_mismatch")
    if settings.bind_user_agent and claims.get("ua") != binding.ua:
        raise Rejected(f"{family}.ua_mismatch")


def verify_challenge_token(keyring: Keyring, token: str, binding: Binding, settings: ChallengeSettings,
                           now: float) -> dict[str, Any]:
    """Claims of a genuine, unexpired challenge issued to this client; Rejected otherwise."""
    claims = _verify_token(keyring, CHALLENGE_PURPOSE, token, "challenge")
    _check_bound(claims, binding, settings, "challenge", now)
    if not isinstance(claims.get("n"), str) or not isinstance(claims.get("d"), int):
        raise Rejected("challenge.malformed", why="no nonce or difficulty")
    return claims


def verify_solution(keyring: Keyring, token: str, counter: str, url: str, binding: Binding,
                    settings: ChallengeSettings, now: float) -> dict[str, Any]:
    """Check a posted proof of work (everything but single use, which needs the store)."""
    claims = verify_challenge_token(keyring, token, binding, settings, now)
    if url != claims.get("u"):
        raise Rejected("challenge.url_mismatch", issued_for=str(claims.get("u"))[:200], presented=url[:200])
    if not counter.isdigit() or not counter.isascii() or len(counter) > MAX_COUNTER_DIGITS:
        raise Rejected("challenge.wrong_solution", why="counter is not a decimal number")
    digest = hashlib.sha256(f"{token}:{counter}".encode()).digest()
    if not leading_zero_bits_ok(digest, claims["d"]):
        raise Rejected("challenge.wrong_solution", difficulty=claims["d"])
    return claims


def issue_clearance(keyring: Keyring, binding: Binding, settings: ChallengeSettings, now: float, *,
                    mode: str, automation: bool = False) -> tuple[str, float]:
    """A clearance token and its lifetime in seconds."""
    lifetime = settings.clearance_lifetime if mode == "pow" else settings.nojs_clearance_lifetime
    claims = {
        "id": b64encode(secrets.token_bytes(9)),
        "iat": round(now, 3),
        "exp": round(now + lifetime, 3),
        "ip": binding.ip,
        "ua": binding.ua,
        "m": mode,
    }
    if settings.bind_fingerprint:
        claims["fp"] = binding.fingerprint
    if automation:
        claims["auto"] = 1
    return keyring.sign(CLEARANCE_PURPOSE, claims), lifetime


def verify_clearance_signature(keyring: Keyring, token: str) -> dict[str, Any]:
    """Claims of a genuine clearance (signature only; binding and expiry are checked per request)."""
    claims = _verify_token(keyring, CLEARANCE_PURPOSE, token, "clearance")
    if not isinstance(claims.get("id"), str):
        raise Rejected("clearance.malformed", why="no clearance id")
    return claims


def check_clearance_binding(claims: dict[str, Any], binding: Binding, settings: ChallengeSettings,
                            now: float) -> None:
    _check_bound(claims, binding, settings, "clearance", now)
    if "fp" in claims and claims["fp"] != binding.fingerprint:
        raise Rejected("clearance.fingerprint_mismatch")
