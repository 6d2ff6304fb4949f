"""Helpers for the challenge tests: a settable clock, a challenge policy, a Python solver, page parsing."""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import re
from typing import Any

from shieldware.actions.tokens import Keyring, SigningKey
from shieldware.policy import Policy, default_policy

PRODUCT_RULE = {"name": "challenge-products", "when": {"path": "/product/*"}, "action": "challenge"}
_CONFIG_RE = re.compile(r'<script type="application/json" id="shield-config">(.*?)</script>', re.S)
_REFRESH_RE = re.compile(r'<meta http-equiv="refresh" content="(\d+); url=([^"]+)">')
_PIXEL_RE = re.compile(r'<img src="([^"]+)" alt="" width="1" height="1">')


def keyring(*kids: str, retired: tuple[str, ...] = ()) -> Keyring:
    """A keyring whose secrets derive from the key ids, so two keyrings can share a key."""
    return Keyring([SigningKey(kid, hashlib.sha256(kid.encode()).digest()) for kid in kids], retired)


def challenge_policy(difficulty: int = 8, **challenge: Any) -> Policy:
    """The shop policy, products always challenged, loopback trusted to set X-Forwarded-For."""
    return default_policy(rules=[PRODUCT_RULE], trusted_proxies=["127.0.0.0/8"],
                          challenge={"difficulty": difficulty, **challenge})


def page_config(text: str) -> dict[str, Any]:
    match = _CONFIG_RE.search(text)
    assert match, "no challenge configuration in the page"
    return json.loads(match.group(1))


def meta_refresh(text: str) -> tuple[int, str] | None:
    match = _REFRESH_RE.search(text)
    return (int(match.group(1)), html.unescape(match.group(2))) if match else None


def pixel_url(text: str) -> str | None:
    match = _PIXEL_RE.search(text)
    return html.unescape(match.group(1)) if match else None


def solve(token: str, bits: int) -> str:
    """The proof of work the page's script does, in Python (same input, same rule)."""
    for counter in itertools.count():
        digest = hashlib.sha256(f"{token}:{counter}".encode()).digest()
        if int.from_bytes(digest, "big") >> (256 - bits) == 0:
            return str(counter)
    raise AssertionError("unreachable")


def wrong_solution(token: str, bits: int) -> str:
    for counter in itertools.count():
        digest = hashlib.sha256(f"{token}:{counter}".encode()).digest()
        if int.from_bytes(digest, "big") >> (256 - bits) != 0:
            return str(counter)
    raise AssertionError("unreachable")
