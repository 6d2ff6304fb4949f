"""Evidence and the reason-code catalogue: what a signal found, how much it weighs, and what it means."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Evidence:
    """One finding of one signal.

    `code` is a stable dotted reason code (an API: logs, headers, metrics and `explain` use it);
    `weight` is in score points, positive for "looks automated", negative for "looks human or
    trusted"; `detail` holds the numbers behind the finding so a person can check it.
    """

    code: str
    weight: float
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "weight": round(self.weight, 2), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Reason:
    """The catalogue entry for a reason code: its default weight and a sentence for people."""

    code: str
    weight: float
    text: str


_CATALOGUE: dict[str, Reason] = {}


def register_reason(code: str, weight: float, text: str) -> Reason:
    """Declare a reason code. Signal modules call this at import for every code they emit."""
    reason = Reason(code, float(weight), text)
    _CATALOGUE[code] = reason
    return reason


def reason_catalogue() -> dict[str, Reason]:
    return dict(_CATALOGUE)


def describe(code: str) -> str:
    reason = _CATALOGUE.get(code)
    return reason.text if reason else "(no description registered for this code)"


class Weights:
    """Default weights from the catalogue, overridden per code by the policy's `weights:` map."""

    __slots__ = ("_overrides",)

    def __init__(self, overrides: dict[str, float] | None = None) -> None:
        self._overrides = dict(overrides or {})

    def __call__(self, code: str) -> float:
        weight = self._overrides.get(code)
        if weight is not None:
            return weight
        reason = _CATALOGUE.get(code)
        return reason.weight if reason else 0.0

    def evidence(self, code: str, **detail: Any) -> Evidence:
        return Evidence(code, self(code), detail)


# Codes the engine itself emits (the signals declare their own).
register_reason("policy.rule", 0, "An explicit rule in the policy file decided this request.")
register_reason("policy.weigh", 0, "An explicit 'weigh' rule in the policy file added points.")
register_reason("store.unavailable", 0, "The shared store did not answer in time; window signals were skipped.")
register_reason("signal.error", 0, "A signal failed on this request; it was skipped and the failure logged.")
