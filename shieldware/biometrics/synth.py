"""Human movement from SapiMouse and the bot movement generators the model is calibrated against.

Human data: SapiMouse (margitantal68/sapimouse @ 951d3ef8, Apache-2.0), blocks of 128
consecutive absolute mouse deltas |dx|, |dy| with the user id. Bots: the movement that
automation tools produce, as integer pointer positions at event rate (the browser reports
whole pixels), turned into the same absolute-delta blocks:

* `straight`   — ruler-straight lines at constant speed (naive `mouse.move(steps=n)`);
* `bezier`     — cubic Bézier curves walked at constant speed;
* `teleport`   — jumps straight onto each target (`element.click()` style);
* `replay`     — a recorded human block replayed, time-warped and with positional noise;
* `fitts`      — the stealth-tool curve: Bézier with a random bend, a step count from Fitts's law,
                 an ease-in/ease-out speed profile, occasional overshoot and correction, jitter.

Each generator takes a `numpy.random.Generator` and a parameter set, so training and evaluation
use different seeds *and* different parameters.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK = 128
SAPIMOUSE_SOURCE = "SapiMouse, margitantal68/sapimouse @ 951d3ef8, Apache-2.0"
# Where the SapiMouse CSV is (SHIELDWARE_SAPIMOUSE overrides); only training and evaluation read it.
DEFAULT_SAPIMOUSE = Path(os.environ.get("SHIELDWARE_SAPIMOUSE",
                                        "/work/shared/data/sapimouse/sapimouse_ABS_dx_dy_1min.csv"))
SCREEN = (1920.0, 1080.0)


def load_sapimouse(path: str | Path = DEFAULT_SAPIMOUSE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx blocks [n,128], dy blocks [n,128], user ids [n]) from the SapiMouse CSV."""
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return table[:, :BLOCK], table[:, BLOCK:2 * BLOCK], table[:, 2 * BLOCK].astype(np.int64)


@dataclass(frozen=True)
class BotParams:
    """How a family of bots behaves; training and test use different values."""

    speed_px: tuple[float, float] = (6.0, 30.0)       # pixels per event
    click_chance: float = 0.6
    jitter_px: tuple[float, float] = (0.0, 0.0)       # Gaussian noise on positions
    spread: tuple[float, float] = (0.1, 0.5)          # Bézier bend, as a share of the distance
    overshoot_chance: float = 0.3
    warp: tuple[float, float] = (0.8, 1.25)           # replay speed factor
    replay_noise_px: tuple[float, float] = (1.0, 3.0)
    fitts_target_px: tuple[float, float] = (20.0, 120.0)


TRAIN_PARAMS = BotParams()
TEST_PARAMS = BotParams(speed_px=(4.0, 40.0), click_chance=0.4, jitter_px=(0.0, 0.6), spread=(0.05, 0.8),
                        overshoot_chance=0.5, warp=(0.6, 1.6), replay_noise_px=(0.7, 2.5),
                        fitts_target_px=(10.0, 200.0))


def _target(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform((40.0, 40.0), (SCREEN[0] - 40.0, SCREEN[1] - 40.0))


def _to_block(points: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Integer positions (as a browser reports them) → one block of absolute deltas."""
    path = np.rint(np.concatenate(points, axis=0))
    steps = np.abs(np.diff(path, axis=0))[:BLOCK]
    return steps[:, 0].copy(), steps[:, 1].copy()


def _session(rng: np.random.Generator, params: BotParams,
             movement: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Move from target to target with `movement(start, end) -> points` until the block is full;
    a click adds the two motionless events (press, release) the human logger records too."""
    here = _target(rng)
    points = [here[None, :]]
    count = 1
    while count <= BLOCK:
        there = _target(rng)
        leg = movement(here, there)
        if params.jitter_px[1] > 0:
            leg = leg + rng.normal(0.0, rng.uniform(*params.jitter_px), leg.shape)
        points.append(leg)
        count += len(leg)
        here = leg[-1]
        if rng.random() < params.click_chance:
            points.append(np.repeat(here[None, :], 2, axis=0))
            count += 2
    return _to_block(points)


def straight(rng: np.random.Generator, params: BotParams) -> tuple[np.ndarray, np.ndarray]:
    def line(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        steps = max(1, int(np.linalg.norm(b - a) / rng.uniform(*params.speed_px)))
        return a + np.outer(np.arange(1, steps + 1) / steps, b - a)
    return _session(rng, params, line)


def _bezier(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
            spread: tuple[float, float]) -> np.ndarray:
    """Control points of a cubic Bézier from a to b, bent to one side by `spread` of the distance."""
    span = b - a
    normal = np.array([-span[1], span[0]])
    side = 1.0 if rng.random() < 0.5 else -1.0
    c1 = a + span * rng.uniform(0.2, 0.4) + normal * side * rng.uniform(*spread)
    c2 = a + span * rng.uniform(0.6, 0.8) + normal * side * rng.uniform(*spread)
    return np.stack([a, c1, c2, b])


def _bezier_at(control: np.ndarray, u: np.ndarray) -> np.ndarray:
    u = u[:, None]
    return ((1 - u) ** 3 * control[0] + 3 * (1 - u) ** 2 * u * control[1]
            + 3 * (1 - u) * u ** 2 * control[2] + u ** 3 * control[3])


def bezier(rng: np.random.Generator, params: BotParams) -> tuple[np.ndarray, np.ndarray]:
    def curve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        dense = _bezier_at(_bezier(a, b, rng, params.spread), np.linspace(0.0, 1.0, 400))
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
        steps = max(1, int(arc[-1] / rng.uniform(*params.speed_px)))
        wanted = np.linspace(0.0, arc[-1], steps + 1)[1:]  # equal arc length = constant speed
        return np.stack([np.interp(wanted, arc, dense[:, 0]), np.interp(wanted, arc, dense[:, 1])], axis=1)
    return _session(rng, params, curve)


def teleport(rng: np.random.Generator, params: BotParams) -> tuple[np.ndarray, np.ndarray]:
    def jump(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return b[None, :]
    return _session(rng, params, jump)


def fitts(rng: np.random.Generator, params: BotParams) -> tuple[np.ndarray, np.ndarray]:
    """The ghost-cursor style movement stealth tools use to look human."""
    def move(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        legs = []
        distance = float(np.linalg.norm(b - a))
        end = b
        overshoot = distance > 200 and rng.random() < params.overshoot_chance
        if overshoot:
            end = b + (b - a) / distance * rng.uniform(10, 40) + rng.normal(0, 8, 2)
        width = rng.uniform(*params.fitts_target_px)
        # Fitts's law: movement time ∝ log2(D/W + 1); the step count follows it.
        steps = max(4, math.ceil((math.log2(distance / width + 1) + rng.uniform(1.0, 3.0)) * 6))
        u = np.linspace(0.0, 1.0, steps + 1)[1:]
        eased = u ** 3 * (10 - 15 * u + 6 * u * u)  # minimum-jerk profile: slow, fast, slow
        legs.append(_bezier_at(_bezier(a, end, rng, params.spread), eased))
        if overshoot:
            back = max(3, steps // 5)
            u = np.linspace(0.0, 1.0, back + 1)[1:]
            legs.append(end + np.outer(u ** 3 * (10 - 15 * u + 6 * u * u), b - end))
        return np.concatenate(legs, axis=0)
    return _session(rng, params, move)


def replay(rng: np.random.Generator, params: BotParams, human_dx: np.ndarray,
           human_dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replay a recorded human block: rebuild a path, warp its speed, add positional noise."""
    signs = np.where(rng.random((2,)) < 0.5, -1.0, 1.0)
    path = np.concatenate([[[0.0, 0.0]], np.cumsum(np.stack([human_dx, human_dy], axis=1) * signs, axis=0)])
    warp = rng.uniform(*params.warp)
    index = np.arange(0.0, len(path) - 1, warp)
    resampled = np.stack([np.interp(index, np.arange(len(path)), path[:, 0]),
                          np.interp(index, np.arange(len(path)), path[:, 1])], axis=1)
    noisy = resampled + rng.normal(0.0, rng.uniform(*params.replay_noise_px), resampled.shape)
    while len(noisy) <= BLOCK:  # a sped-up replay is short: loop it, as a replaying bot does
        noisy = np.concatenate([noisy, noisy[1:] - noisy[1] + noisy[-1]])
    return _to_block([noisy])


GENERATORS = {"straight": straight, "bezier": bezier, "teleport": teleport, "fitts": fitts}


def bot_blocks(rng: np.random.Generator, params: BotParams, per_kind: int, human_dx: np.ndarray,
               human_dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`per_kind` blocks from every generator (replays drawn from the given human blocks)."""
    dxs, dys, kinds = [], [], []
    for name, generate in GENERATORS.items():
        for _ in range(per_kind):
            dx, dy = generate(rng, params)
            dxs.append(dx)
            dys.append(dy)
            kinds.append(name)
    for _ in range(per_kind):
        pick = int(rng.integers(len(human_dx)))
        dx, dy = replay(rng, params, human_dx[pick], human_dy[pick])
        dxs.append(dx)
        dys.append(dy)
        kinds.append("replay")
    return np.stack(dxs), np.stack(dys), kinds


TRAIN_USERS = range(1, 81)
TEST_USERS = range(81, 121)
TRAIN_SEED = 20_201
TEST_SEED = 777_013


def labelled_features(users: range, seed: int, params: BotParams, bots_per_kind: int,
                      path: str | Path = DEFAULT_SAPIMOUSE) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Step features of the chosen users' human blocks and of generated bot blocks.

    Replayed bots replay blocks of the same users, so a held-out set never sees a training user.
    Returns (features [n, F], is_bot [n], kind per row: "human" or the generator's name).
    """
    from shieldware.biometrics.features import step_features

    dx, dy, user_ids = load_sapimouse(path)
    chosen = np.isin(user_ids, list(users))
    human_dx, human_dy = dx[chosen], dy[chosen]
    bot_dx, bot_dy, kinds = bot_blocks(np.random.default_rng(seed), params, bots_per_kind, human_dx, human_dy)
    rows = [step_features(a, b) for a, b in zip(human_dx, human_dy, strict=True)]
    rows += [step_features(a, b) for a, b in zip(bot_dx, bot_dy, strict=True)]
    is_bot = np.concatenate([np.zeros(len(human_dx)), np.ones(len(bot_dx))])
    return np.array(rows), is_bot, ["human"] * len(human_dx) + kinds
