"""Signed tokens: HMAC-SHA256 over compact JSON claims, with key ids so keys can rotate.

A token reads `<kid>.<claims>.<signature>` (claims and signature in unpadded base64url).
Keys come from the environment or a key file, never from the policy or the repository:

- `SHIELDWARE_KEYS="k2:SECRET2,k1:SECRET1"` — the first key signs, the others still verify;
- `SHIELDWARE_KEY_FILE=/etc/shieldware/keys` — one key per line, `KID SECRET [retired]`,
  `#` comments; the first non-retired key signs.
- `SHIELDWARE_RETIRED_KEYS="k0,old"` — key ids that must no longer be honoured. A token signed
  with one is refused as `retired_key` (not just `unknown_key`), so operators see rotation at work.

Without any key, a random per-process key is generated with a loud warning: fine for the demo,
wrong for several workers (each would refuse the others' clearances).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("shieldware.tokens")

ENV_KEYS = "SHIELDWARE_KEYS"
ENV_KEY_FILE = "SHIELDWARE_KEY_FILE"
ENV_RETIRED = "SHIELDWARE_RETIRED_KEYS"
MAX_TOKEN_LENGTH = 4096
MIN_SECRET_BYTES = 16


class KeyConfigError(ValueError):
    """The configured keys are unusable (too short, duplicate ids, unreadable file)."""


class TokenRejected(Exception):
    """A token failed verification; `reason` is a short stable word (forged, expired, ...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: bytes


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict unpadded base64url: stray characters are an error, not silently dropped."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


class Keyring:
    """Active keys (the first signs, all verify) and retired key ids (refused by name)."""

    def __init__(self, keys: Iterable[SigningKey], retired: Iterable[str] = (), *,
                 ephemeral: bool = False) -> None:
        self.keys = tuple(keys)
        if not self.keys:
            raise KeyConfigError("a keyring needs at least one active key")
        ids = [k.kid for k in self.keys]
        if len(set(ids)) != len(ids):
            raise KeyConfigError(f"duplicate key ids in {ids}")
        for key in self.keys:
            if not key.kid or "." in key.kid or len(key.kid) > 32:
                raise KeyConfigError(f"key id {key.kid!r} must be 1-32 characters without '.'")
            if len(key.secret) < MIN_SECRET_BYTES:
                raise KeyConfigError(f"key {key.kid!r} is shorter than {MIN_SECRET_BYTES} bytes")
        self.retired = frozenset(retired) - set(ids)
        self.ephemeral = ephemeral
        self._by_id = {k.kid: k for k in self.keys}

    @property
    def signing_key(self) -> SigningKey:
        return self.keys[0]

    @classmethod
    def generate(cls, kid: str = "dev") -> Keyring:
        return cls([SigningKey(kid, secrets.token_bytes(32))], ephemeral=True)

    def sign(self, purpose: str, claims: Mapping[str, Any]) -> str:
        """Sign claims for one purpose ("clr", "chl"): a token of one purpose never verifies as another."""
        key = self.signing_key
        body = b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        mac = hmac.new(key.secret, f"{purpose}.{key.kid}.{body}".encode(), hashlib.sha256).digest()
        return f"{key.kid}.{body}.{b64encode(mac)}"

    def verify(self, purpose: str, token: str) -> dict[str, Any]:
        """The claims of a genuine token, or TokenRejected(malformed|retired_key|unknown_key|forged)."""
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise TokenRejected("malformed", "not three dot-separated parts")
        kid, body, mac_text = token.split(".")
        if kid in self.retired:
            raise TokenRejected("retired_key", f"signed with retired key {kid!r}")
        key = self._by_id.get(kid)
        if key is None:
            raise TokenRejected("unknown_key", f"no key with id {kid[:32]!r}")
        try:
            mac = b64decode(mac_text)
        except (binascii.Error, ValueError) as exc:
            raise TokenRejected("malformed", "signature is not base64url") from exc
        wanted = hmac.new(key.secret, f"{purpose}.{kid}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(mac, wanted):
            raise TokenRejected("forged", "signature does not match")
        try:
            claims = json.loads(b64decode(body))
        except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
            raise TokenRejected("malformed", "claims are not base64url JSON") from exc
        if not isinstance(claims, dict):
            raise TokenRejected("malformed", "claims are not an object")
        return claims


def _parse_env_keys(text: str) -> list[SigningKey]:
    keys = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        kid, sep, secret = item.partition(":")
        if not sep:
            raise KeyConfigError(f"{ENV_KEYS}: expected KID:SECRET items separated by commas, "
                                 f"got {kid[:8]!r}...")
        keys.append(SigningKey(kid.strip(), secret.strip().encode()))
    return keys


def _parse_key_file(path: Path) -> tuple[list[SigningKey], list[str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise KeyConfigError(f"{ENV_KEY_FILE}: cannot read {path}: {exc.strerror or exc}") from exc
    keys, retired = [], []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) == 3 and words[2] == "retired":
            retired.append(words[0])
        elif len(words) == 2:
            keys.append(SigningKey(words[0], words[1].encode()))
        else:
            raise KeyConfigError(f"{path}:{number}: expected 'KID SECRET' or 'KID SECRET retired'")
    return keys, retired


def keyring_from_environment(environ: Mapping[str, str] | None = None) -> Keyring:
    """Keys from SHIELDWARE_KEYS and/or SHIELDWARE_KEY_FILE; a per-process key (with a warning) if none."""
    environ = os.environ if environ is None else environ
    keys = _parse_env_keys(environ.get(ENV_KEYS, ""))
    retired = [r.strip() for r in environ.get(ENV_RETIRED, "").split(",") if r.strip()]
    key_file = environ.get(ENV_KEY_FILE)
    if key_file:
        file_keys, file_retired = _parse_key_file(Path(key_file))
        keys.extend(file_keys)
        retired.extend(file_retired)
    keys = [k for k in keys if k.kid not in retired]
    if not keys:
        log.warning("shieldware: no signing keys configured (%s / %s); using a random key for this process "
                    "only. Clearances will not survive a restart and workers will refuse each other's. "
                    "Set %s for production.", ENV_KEYS, ENV_KEY_FILE, ENV_KEYS)
        return Keyring.generate()
    return Keyring(keys, retired)


_process_keyring: Keyring | None = None


def default_keyring() -> Keyring:
    """The process-wide keyring, read from the environment once."""
    global _process_keyring
    if _process_keyring is None:
        _process_keyring = keyring_from_environment()
    return _process_keyring
