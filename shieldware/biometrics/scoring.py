"""Turn telemetry into a human-likeness score with reason codes."""

from __future__ import annotations

import numpy as np

from shieldware.biometrics.model import load_model


def movement_bot_probability(step_values: np.ndarray) -> float:
    """How likely the movement (its step features) comes from a bot, per the shipped model."""
    return load_model().bot_probability(step_values)
