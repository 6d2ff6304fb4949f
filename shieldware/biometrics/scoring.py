"""Turn one telemetry batch into a human-likeness score with reason codes a person can check.

Two kinds of evidence, each an ordinary reason code with a weight in score points:
rules over the live features (a ruler-straight path, constant speed, teleports, zero-length
clicks, metronome keys, automation flags) and the movement model's verdict on the step
features (`bio.machine_motion`, or `bio.human_motion` when it is confident of a person).
The batch's bot probability is the same noisy-OR the engine uses for its score, so the
number a person reads here is the number the policy sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shieldware.biometrics.features import (
    KIND_LEAVE,
    TIMING_FEATURES,
    TRAJECTORY_FEATURES,
    step_features,
    timing_features,
    trajectory_features,
)
from shieldware.biometrics.model import MIN_STEPS, load_model
from shieldware.biometrics.telemetry import ENV_FLAGS, Telemetry
from shieldware.evidence import Weights, register_reason

register_reason(
    "bio.no_input", 30,
    "The browser's collector ran but recorded no pointer, key, scroll or touch input at all: nobody touched "
    "the page.")
register_reason(
    "bio.linear_path", 45,
    "The pointer moved in ruler-straight lines (never more than 1.5 px off the straight line between start "
    "and end); hands curve and wobble.")
register_reason("bio.constant_speed", 35, "The pointer moved at a constant speed along its path; hands "
                "accelerate and slow down.")
register_reason("bio.teleport", 40, "The pointer jumped hundreds of pixels in one event, or pressed far from "
                "where it was: it was placed, not moved.")
register_reason("bio.instant_click", 30, "Mouse buttons were released within a few milliseconds of being "
                "pressed; people hold a click for about a tenth of a second.")
register_reason(
    "bio.uniform_keys", 40,
    "Keys were pressed with machine-regular timing or held only a few milliseconds, as scripted typing does.")
register_reason(
    "bio.instant_fill", 15,
    "Fields were filled with no key pressed (pasted or set by script), and nothing was typed.")
register_reason("bio.uniform_scroll", 20, "Scrolling came at metronome-regular intervals.")
register_reason("bio.automation_flag", 70, "The browser reported automation: navigator.webdriver, a headless "
                "browser, automation-tool globals or a zero-size window.")
register_reason("bio.machine_motion", 50, "The movement model found the pointer's step pattern far more like "
                "generated movement than like people's (see the detail for the features that decided).")
register_reason("bio.ua_changed", 35, "The session's telemetry came from more than one user agent: the user "
                "agent is being rewritten (automation tools and cookie sharing do this; one browser does not).")
register_reason("bio.human_motion", -10, "The movement model is confident the pointer was moved by a person.")

MACHINE_MOTION_AT = 0.8       # model bot probability from which bio.machine_motion is reported
HUMAN_MOTION_BELOW = 0.1      # ... and below which (with enough steps) bio.human_motion is
HUMAN_MOTION_MIN_STEPS = 64
INSTANT_CLICK_MS = 15.0
UNIFORM_KEYS_MIN = 5
SHORT_HOLD_MS = 30.0  # people hold a key 70-130 ms; a scripted key press is a few ms
UNIFORM_SCROLL_MIN = 8
NO_INPUT_AFTER_MS = 8000.0  # bio.no_input only for a page open at least this long


@dataclass
class Assessment:
    """What one batch (or a whole session) looked like: scores, reasons and the numbers behind them."""

    bot_probability: float
    reasons: list[tuple[str, float, dict[str, Any]]]
    features: dict[str, float] = field(default_factory=dict)
    events: int = 0

    @property
    def human_likeness(self) -> float:
        return 1.0 - self.bot_probability

    def as_dict(self) -> dict[str, Any]:
        return {
            "human": round(self.human_likeness, 3),
            "bot_probability": round(self.bot_probability, 3),
            "events": self.events,
            "reasons": [{"code": c, "weight": round(w, 1), "detail": d} for c, w, d in self.reasons],
            "features": {k: round(v, 4) for k, v in self.features.items()},
        }


def combined_probability(weights: list[float]) -> float:
    """Noisy-OR of positive weights minus negative ones, on 0..1 (as shieldware.score does on 0..100)."""
    human, trust = 1.0, 0.0
    for w in weights:
        if w > 0:
            human *= 1.0 - min(w, 100.0) / 100.0
        else:
            trust += w
    return min(1.0, max(0.0, 1.0 - human + trust / 100.0))


def movement_bot_probability(step_values: np.ndarray) -> float:
    """How likely the movement (its step features) comes from a bot, per the shipped model."""
    return load_model().bot_probability(step_values)


def pointer_steps(pointer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-event deltas between consecutive pointer events, not across a leave/re-enter."""
    if len(pointer) < 2:
        return np.zeros(0), np.zeros(0)
    dx = np.diff(pointer[:, 1])
    dy = np.diff(pointer[:, 2])
    keep = (pointer[1:, 3] != KIND_LEAVE) & (pointer[:-1, 3] != KIND_LEAVE)
    return dx[keep], dy[keep]


def _automation_flags(env: dict[str, Any]) -> list[str]:
    flags = [name for name in ENV_FLAGS if env.get(name)]
    return flags + [f"global:{name}" for name in env.get("globals", ())]


def assess(telemetry: Telemetry, weights: Weights | None = None) -> Assessment:
    """Score one telemetry batch."""
    weights = weights or Weights()
    reasons: list[tuple[str, float, dict[str, Any]]] = []

    def add(code: str, weight: float | None = None, **detail: Any) -> None:
        reasons.append((code, weights(code) if weight is None else weight, detail))

    pointer = telemetry.pointer
    traj = dict(zip(TRAJECTORY_FEATURES, trajectory_features(
        pointer[:, 0], pointer[:, 1], pointer[:, 2], pointer[:, 3].astype(np.int64)).tolist(), strict=True))
    key_times, scroll_times = telemetry.keys, telemetry.scroll[:, 0]
    keys = dict(zip(TIMING_FEATURES, timing_features(key_times[:, 0], key_times[:, 1]).tolist(), strict=True))
    scroll = dict(zip(TIMING_FEATURES, timing_features(scroll_times, scroll_times).tolist(), strict=True))
    features: dict[str, float] = {f"pointer.{k}": v for k, v in traj.items()}
    features.update({f"keys.{k}": v for k, v in keys.items()})
    features.update({f"scroll.{k}": v for k, v in scroll.items()})
    features["touch.count"] = float(len(telemetry.touch))
    features["fills.count"] = float(len(telemetry.fills))

    flags = _automation_flags(telemetry.env)
    if flags:
        add("bio.automation_flag", flags=flags)
    # A page seen for a moment (the challenge interstitial, the first timed batch) says nothing yet.
    briefly = telemetry.age_ms is not None and telemetry.age_ms < NO_INPUT_AFTER_MS
    if telemetry.events == 0 and not briefly:
        add("bio.no_input", page=telemetry.page)
    segments = traj["segments"]
    if traj["linear_segments"] >= 1 and traj["linear_segments"] * 2 >= segments:
        add("bio.linear_path", linear=int(traj["linear_segments"]), segments=int(segments),
            straightness=round(traj["straightness_mean"], 4))
    if traj["constant_segments"] >= 1 and traj["constant_segments"] * 2 >= segments:
        add("bio.constant_speed", constant=int(traj["constant_segments"]), segments=int(segments))
    if traj["teleports"] >= 1:
        add("bio.teleport", jumps=int(traj["teleports"]))
    if traj["clicks"] >= 1 and traj["hold_mean"] < INSTANT_CLICK_MS:
        add("bio.instant_click", clicks=int(traj["clicks"]), hold_ms=round(traj["hold_mean"], 1))
    if keys["count"] >= UNIFORM_KEYS_MIN and (
            keys["hold_mean"] < SHORT_HOLD_MS or (keys["hold_cv"] < 0.1 and keys["gap_cv"] < 0.15)):
        add("bio.uniform_keys", keys=int(keys["count"]), hold_ms=round(keys["hold_mean"], 1),
            hold_cv=round(keys["hold_cv"], 3), gap_cv=round(keys["gap_cv"], 3))
    typed_fills = int((telemetry.fills[:, 1] == 1).sum()) if len(telemetry.fills) else 0
    if typed_fills >= 2 and keys["count"] == 0:
        add("bio.instant_fill", fills=typed_fills)
    if scroll["count"] >= UNIFORM_SCROLL_MIN and scroll["gap_cv"] < 0.05 and scroll["gap_mean"] >= 50.0:
        add("bio.uniform_scroll", scrolls=int(scroll["count"]), gap_ms=round(scroll["gap_mean"], 1))

    dx, dy = pointer_steps(pointer)
    moving = int(np.count_nonzero((dx != 0) | (dy != 0)))
    features["pointer.moving_steps"] = float(moving)
    if moving >= MIN_STEPS:
        model = load_model()
        values = step_features(dx, dy)
        p_bot = model.bot_probability(values)
        features["pointer.model_bot_probability"] = p_bot
        if p_bot >= MACHINE_MOTION_AT:
            # Scaled: just over the line weighs half the catalogue weight, certainty the full weight.
            scale = 0.5 + 0.5 * (p_bot - MACHINE_MOTION_AT) / (1.0 - MACHINE_MOTION_AT)
            add("bio.machine_motion", weights("bio.machine_motion") * scale, probability=round(p_bot, 3),
                because=[name for name, _ in model.explain(values)])
        elif p_bot < HUMAN_MOTION_BELOW and moving >= HUMAN_MOTION_MIN_STEPS and not reasons:
            add("bio.human_motion", probability=round(p_bot, 3))
    return Assessment(combined_probability([w for _, w, _ in reasons]), reasons, features, telemetry.events)
