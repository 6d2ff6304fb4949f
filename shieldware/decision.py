"""Decision: what the engine concluded about one request, with everything needed to explain it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shieldware.evidence import Evidence


class Verdict(StrEnum):
    ALLOW = "allow"
    CHALLENGE = "challenge"
    THROTTLE = "throttle"
    TARPIT = "tarpit"
    UNAVAILABLE = "unavailable"  # fail-closed while the store is down: 503 with Retry-After
    BLOCK = "block"


# The headers shieldware sets on a request for the app to trust start "x-shield-". A CGI-style
# server (PHP, WSGI, Rack) also reads "X_Shield_Verdict" as HTTP_X_SHIELD_VERDICT, so a client's
# header in any of these spellings is taken off before ours go on (and the fast lane leaves such
# requests to Python).
SHIELD_HEADER_PREFIXES = (b"x-shield-", b"x_shield-", b"x-shield_", b"x_shield_")
SHIELD_HEADER_NAMES = frozenset(prefix.decode() + name for prefix in SHIELD_HEADER_PREFIXES
                                for name in ("score", "verdict", "ref", "event"))

# Severity order, used when several findings want different verdicts.
SEVERITY = {Verdict.ALLOW: 0, Verdict.TARPIT: 1, Verdict.THROTTLE: 2, Verdict.CHALLENGE: 3, Verdict.UNAVAILABLE: 4,
            Verdict.BLOCK: 5}

_process_tag = os.urandom(3).hex()
_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


def new_reference() -> str:
    """A short unique reference id a person can read out: 6 hex digits of process tag + a counter.

    A counter (not os.urandom per request) keeps it cheap on the hot path; the random process
    tag keeps ids of different workers apart.
    """
    return f"{_process_tag}-{next(_counter) & 0xFFFFFFF:07x}"


def shield_headers(bot_score: float, verdict: Verdict, ref: str) -> list[tuple[bytes, bytes]]:
    """X-Shield-Score, -Verdict and -Ref, the request headers the app (or the shop behind the
    proxy) may trust: shieldware takes any the client sent off first."""
    return [(b"x-shield-score", b"%d" % round(bot_score)), (b"x-shield-verdict", verdict.encode()),
            (b"x-shield-ref", ref.encode())]


def head_lines(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Headers as the lines of an HTTP/1.1 head, b"name: value\r\n" each."""
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


@dataclass(slots=True)
class Decision:
    """The outcome for one request.

    `verdict` is what the evidence and policy call for; `action` is what is actually done
    (the same in enforce mode, always allow in monitor mode). `reasons` are sorted by weight.
    """

    ref: str
    verdict: Verdict
    bot_score: float
    reasons: tuple[Evidence, ...]
    route_group: str
    time: float
    client_ip: str
    method: str
    path: str
    mode: str = "enforce"
    rule: str | None = None
    retry_after: float | None = None
    user_agent: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Set by the middleware so the app can report outcomes (login_failed, payment_declined, ...).
    reporter: Any = None
    # The X-Shield-* request headers as lines of an HTTP/1.1 head, when the middleware was told the
    # app writes them itself (`headers_in_scope=False`: the proxy's forwarder); None otherwise,
    # when they are in the scope's headers.
    header_lines: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def action(self) -> Verdict:
        return self.verdict if self.mode == "enforce" else Verdict.ALLOW

    @property
    def reason_codes(self) -> tuple[str, ...]:
        return tuple(e.code for e in self.reasons)

    def report(self, event: str, **fields: Any) -> None:
        """App API: `request.state.shield.report("login_failed", account="alice")`."""
        if self.reporter is not None:
            self.reporter(self, event, fields)

    def shield_headers(self) -> list[tuple[bytes, bytes]]:
        """This decision's X-Shield-* request headers (module function `shield_headers`)."""
        return shield_headers(self.bot_score, self.verdict, self.ref)

    def as_log_record(self) -> dict[str, Any]:
        record = {
            "time": round(self.time, 3),
            "ref": self.ref,
            "client_ip": self.client_ip,
            "method": self.method,
            "path": self.path,
            "route_group": self.route_group,
            "verdict": str(self.verdict),
            "action": str(self.action),
            "mode": self.mode,
            "score": round(self.bot_score, 1),
            "rule": self.rule,
            "reasons": [e.as_dict() for e in self.reasons],
            "user_agent": self.user_agent[:512],
        }
        if self.retry_after is not None:
            record["retry_after"] = round(self.retry_after, 3)
        if self.extra:
            record["extra"] = self.extra
        return record
