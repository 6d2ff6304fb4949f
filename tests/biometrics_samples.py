"""Telemetry bodies for the biometrics tests: a person (SapiMouse movement) and scripted bots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shieldware.biometrics import synth

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "telemetry"


def human_telemetry() -> dict:
    """A person's batch, from the committed fixture (made by `human_telemetry_from_sapimouse()`)."""
    return json.loads((FIXTURES / "human.json").read_text())


def human_telemetry_from_sapimouse(block: int = 3, seed: int = 1) -> dict:
    """A person: a recorded SapiMouse block (signs restored at random turns), natural event timing,
    a click held ~0.1 s, and ten keys with varied hold and gap times."""
    rng = np.random.default_rng(seed)
    dx, dy, _ = synth.load_sapimouse()
    sign_x, sign_y, x, y, t = 1.0, 1.0, 600.0, 400.0, 50.0
    pointer = [[t, x, y, 0]]
    for step_x, step_y in zip(dx[block], dy[block], strict=True):
        if rng.random() < 0.04:
            sign_x = -sign_x
        if rng.random() < 0.04:
            sign_y = -sign_y
        t += float(rng.uniform(9, 24))
        x, y = x + sign_x * step_x, y + sign_y * step_y
        pointer.append([round(t), x, y, 0])
    t += 420
    pointer += [[round(t), x, y, 1], [round(t + 104), x, y, 2]]
    keys, now = [], t + 900
    for _ in range(10):
        hold = float(rng.normal(95, 25))
        keys.append([round(now), round(now + max(30.0, hold))])
        now += float(rng.normal(190, 70)) + 60
    return {"v": 1, "seq": 0, "page": "/login", "pointer": pointer, "keys": keys, "scroll": [], "touch": [],
            "focus": [[10, 1]], "fills": [],
            "env": {"webdriver": False, "headless": False, "outer_zero": False, "no_plugins": False}}


def linear_bot_telemetry() -> dict:
    """A script: a ruler-straight constant-speed drag, instant clicks and zero-hold typing."""
    pointer = [[100 + 16 * i, 100 + 12 * i, 300, 0] for i in range(40)]
    pointer += [[800, 568, 300, 1], [801, 568, 300, 2]]
    keys = [[1000 + 5 * i, 1000 + 5 * i] for i in range(12)]
    return {"v": 1, "seq": 0, "page": "/login", "pointer": pointer, "keys": keys,
            "env": {"webdriver": True, "globals": ["__playwright__binding__"]}}
