"""The movement model: a small logistic model over step features, whose weights ship as model.json.

Each step feature f is standardised around the human median, z = (f - centre) / scale, and
enters the model twice: linearly (w·z, "more or less of it than people") and squared (q·z²,
"far from people in either direction" — a bot can be too smooth *or* too jumpy). The bot
probability is sigmoid(bias + Σ w·z + Σ q·z²); the terms that pushed it most are the
explanation. `scripts/train_biometrics.py` regenerates the file from SapiMouse and the bot
generators.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from shieldware.biometrics.features import STEP_FEATURES

MIN_STEPS = 24  # fewer moving events than this and the model abstains


@dataclass(frozen=True)
class MovementModel:
    features: tuple[str, ...]
    centre: np.ndarray
    scale: np.ndarray
    linear: np.ndarray
    quadratic: np.ndarray
    bias: float
    clip: float = 6.0
    source: str = ""

    def terms(self, values: np.ndarray) -> np.ndarray:
        """Each feature's contribution to the log-odds of 'bot' (linear + squared part)."""
        z = np.clip((values - self.centre) / self.scale, -self.clip, self.clip)
        return self.linear * z + self.quadratic * z * z

    def bot_probability(self, values: np.ndarray) -> float:
        logit = self.bias + float(self.terms(values).sum())
        return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, logit))))

    def explain(self, values: np.ndarray, top: int = 3) -> list[tuple[str, float]]:
        """The features that pushed most towards 'bot', with their log-odds contribution."""
        terms = self.terms(values)
        order = np.argsort(-terms)[:top]
        return [(self.features[i], round(float(terms[i]), 2)) for i in order if terms[i] > 0.5]

    def to_json(self) -> dict:
        return {
            "format": "shieldware-movement-model/1",
            "source": self.source,
            "features": list(self.features),
            "centre": [round(float(v), 6) for v in self.centre],
            "scale": [round(float(v), 6) for v in self.scale],
            "linear": [round(float(v), 6) for v in self.linear],
            "quadratic": [round(float(v), 6) for v in self.quadratic],
            "bias": round(self.bias, 6),
            "clip": self.clip,
        }

    @classmethod
    def from_json(cls, raw: dict) -> MovementModel:
        if tuple(raw["features"]) != STEP_FEATURES:
            raise ValueError(f"model features {raw['features']} do not match the kernel's "
                             f"{list(STEP_FEATURES)}")
        return cls(
            features=tuple(raw["features"]),
            centre=np.array(raw["centre"], dtype=np.float64),
            scale=np.array(raw["scale"], dtype=np.float64),
            linear=np.array(raw["linear"], dtype=np.float64),
            quadratic=np.array(raw["quadratic"], dtype=np.float64),
            bias=float(raw["bias"]),
            clip=float(raw.get("clip", 6.0)),
            source=str(raw.get("source", "")),
        )


@lru_cache(maxsize=4)
def load_model(path: str | None = None) -> MovementModel:
    """The shipped model (shieldware/biometrics/model.json) or one at `path`; loaded once."""
    if path is None:
        text = resources.files("shieldware.biometrics").joinpath("model.json").read_text()
    else:
        text = Path(path).read_text()
    return MovementModel.from_json(json.loads(text))


def fit(features: np.ndarray, is_bot: np.ndarray, centre: np.ndarray, scale: np.ndarray,
        l2: float = 1.0, iterations: int = 50, source: str = "") -> MovementModel:
    """Fit the logistic model by Newton's method (IRLS) with an L2 penalty; deterministic."""
    z = np.clip((features - centre) / scale, -6.0, 6.0)
    design = np.hstack([np.ones((len(z), 1)), z, z * z])
    weights = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0  # the bias is not shrunk
    # Weigh the classes equally whatever their counts.
    sample_weight = np.where(is_bot == 1, 0.5 / max(1, is_bot.sum()), 0.5 / max(1, (1 - is_bot).sum()))
    sample_weight = sample_weight * len(z)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ weights, -40, 40)))
        gradient = design.T @ (sample_weight * (p - is_bot)) + penalty * weights
        hessian = (design * (sample_weight * p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    n = z.shape[1]
    return MovementModel(
        features=STEP_FEATURES, centre=centre, scale=scale, linear=weights[1:n + 1],
        quadratic=weights[n + 1:], bias=float(weights[0]), source=source,
    )


def roc_auc(bot_scores: np.ndarray, human_scores: np.ndarray) -> float:
    """Probability that a random bot scores above a random human (ties count half)."""
    scores = np.concatenate([bot_scores, human_scores])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    n_bot, n_human = len(bot_scores), len(human_scores)
    return float((ranks[:n_bot].sum() - n_bot * (n_bot + 1) / 2.0) / (n_bot * n_human))
