"""Policy settings of the biometrics feature: the `biometrics:` section and `require_telemetry` per group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shieldware.policy import register_group_field, register_section

SESSION_COOKIE = "sw_sid"


@dataclass(frozen=True)
class BiometricsSettings:
    """The `biometrics:` policy section."""

    record_ttl: float = 1800.0          # seconds a session's telemetry verdict is kept
    max_body_bytes: int = 64 * 1024     # telemetry bodies above this are refused with 413
    rate_per_minute: float = 30.0       # telemetry batches per session (and 4 times that per IP) per minute
    burst: float = 10.0
    cookie: str = SESSION_COOKIE
    inject_groups: tuple[str, ...] = ()  # route groups whose HTML pages get the collector <script>


@dataclass(frozen=True)
class TelemetryRequirement:
    """`require_telemetry` of a route group: which methods need recent human-like telemetry."""

    methods: frozenset[str] | None = None  # None = every method
    min_human: float = 0.5
    max_age: float = 1800.0

    def applies_to(self, method: str) -> bool:
        return self.methods is None or method in self.methods


def _number(raw: Any, where: str, check: Any, low: float, high: float, default: float) -> float:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not low <= raw <= high:
        check.fail(where, f"a number from {low:g} to {high:g}", raw)
        return default
    return float(raw)


def parse_section(raw: Any, where: str, check: Any) -> BiometricsSettings:
    raw = check.mapping(raw, where)
    fields = ("record_ttl", "max_body_bytes", "rate_per_minute", "burst", "cookie", "inject_groups")
    check.unknown_keys(raw, fields, where)
    default = BiometricsSettings()
    cookie = raw.get("cookie", default.cookie)
    if not isinstance(cookie, str) or not cookie.replace("_", "").replace("-", "").isalnum():
        check.fail(f"{where}.cookie", "a cookie name (letters, digits, _ and -)", cookie)
        cookie = default.cookie
    return BiometricsSettings(
        record_ttl=_number(raw.get("record_ttl"), f"{where}.record_ttl", check, 10, 86_400 * 30,
                           default.record_ttl),
        max_body_bytes=int(_number(raw.get("max_body_bytes"), f"{where}.max_body_bytes", check, 1024,
                                   1024 * 1024, default.max_body_bytes)),
        rate_per_minute=_number(raw.get("rate_per_minute"), f"{where}.rate_per_minute", check, 1, 6000,
                                default.rate_per_minute),
        burst=_number(raw.get("burst"), f"{where}.burst", check, 1, 1000, default.burst),
        cookie=cookie,
        inject_groups=check.string_list(raw.get("inject_groups"), f"{where}.inject_groups"),
    )


def parse_requirement(raw: Any, where: str, check: Any) -> TelemetryRequirement | None:
    if raw is None or raw is False:
        return None
    if raw is True:
        return TelemetryRequirement()
    raw = check.mapping(raw, where)
    check.unknown_keys(raw, ("methods", "min_human", "max_age"), where)
    methods = check.string_list(raw.get("methods"), f"{where}.methods")
    return TelemetryRequirement(
        methods=frozenset(m.upper() for m in methods) if methods else None,
        min_human=_number(raw.get("min_human"), f"{where}.min_human", check, 0, 1, 0.5),
        max_age=_number(raw.get("max_age"), f"{where}.max_age", check, 1, 86_400 * 30, 1800.0),
    )


register_section("biometrics", parse_section, BiometricsSettings)
register_group_field("require_telemetry", parse_requirement, lambda: None)
