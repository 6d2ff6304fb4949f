"""The biometrics kernels equal their plain-Python references, and measure what they claim to."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldware.biometrics.features import (
    KIND_DOWN,
    KIND_LEAVE,
    KIND_MOVE,
    KIND_UP,
    STEP_FEATURES,
    TIMING_FEATURES,
    TRAJECTORY_FEATURES,
    step_features,
    step_features_reference,
    timing_features,
    timing_features_reference,
    trajectory_features,
    trajectory_features_reference,
)

pixels = st.integers(min_value=-400, max_value=400).map(float)


def assert_same(kernel: np.ndarray, reference: list[float], names: tuple[str, ...]) -> None:
    for name, got, want in zip(names, kernel, reference, strict=True):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), f"{name}: {got} != reference {want}"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(pixels, pixels), max_size=200))
def test_step_kernel_equals_reference(deltas: list[tuple[float, float]]) -> None:
    dx = [d[0] for d in deltas]
    dy = [d[1] for d in deltas]
    assert_same(step_features(np.array(dx), np.array(dy)), step_features_reference(dx, dy), STEP_FEATURES)


# Pointer events: small gaps mostly, sometimes a pause; kinds weighted towards moves.
events = st.lists(
    st.tuples(st.sampled_from([0.0, 1.0, 8.0, 16.0, 17.0, 40.0, 350.0, 2000.0]), pixels, pixels,
              st.sampled_from([KIND_MOVE] * 6 + [KIND_DOWN, KIND_UP, KIND_LEAVE])),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(events, st.integers(min_value=0, max_value=1000).map(float), st.integers(0, 1000).map(float))
def test_trajectory_kernel_equals_reference(steps: list[tuple], x0: float, y0: float) -> None:
    t, x, y, kind = [], [], [], []
    now, px, py = 0.0, x0, y0
    for gap, sx, sy, k in steps:
        now, px, py = now + gap, px + sx, py + sy
        t.append(now)
        x.append(px)
        y.append(py)
        kind.append(k)
    kernel = trajectory_features(np.array(t), np.array(x), np.array(y), np.array(kind))
    assert_same(kernel, trajectory_features_reference(t, x, y, kind), TRAJECTORY_FEATURES)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500).map(float), st.integers(0, 300).map(float)), max_size=80))
def test_timing_kernel_equals_reference(pairs: list[tuple[float, float]]) -> None:
    start, end, now = [], [], 0.0
    for gap, hold in pairs:
        now += gap
        start.append(now)
        end.append(now + hold)
    got = timing_features(np.array(start), np.array(end))
    assert_same(got, timing_features_reference(start, end), TIMING_FEATURES)


def named(values: np.ndarray) -> dict[str, float]:
    return dict(zip(TRAJECTORY_FEATURES, values.tolist(), strict=True))


def test_straight_constant_drag_is_ruler_straight_and_constant() -> None:
    t = np.arange(0, 41) * 16.0
    x = 100.0 + np.arange(0, 41) * 10.0
    y = np.full(41, 300.0)
    kind = np.full(41, KIND_MOVE)
    kind[0], kind[-1] = KIND_DOWN, KIND_UP
    got = named(trajectory_features(t, x, y, kind))
    assert got["segments"] == 1
    assert got["straightness_mean"] == pytest.approx(1.0)
    assert got["linear_segments"] == 1
    assert got["constant_segments"] == 1
    assert got["speed_cv"] == pytest.approx(0.0, abs=1e-12)


def test_curved_wobbly_path_is_not_linear() -> None:
    rng = np.random.default_rng(3)
    u = np.linspace(0, 1, 60)
    x = 100 + 500 * u
    y = 300 + 80 * np.sin(u * math.pi) + rng.normal(0, 2, 60)
    t = np.cumsum(rng.uniform(8, 25, 60))
    got = named(trajectory_features(t, x, y, np.zeros(60, dtype=np.int64)))
    assert got["straightness_mean"] > 1.02
    assert got["linear_segments"] == 0
    assert got["constant_segments"] == 0


def test_teleport_and_press_far_from_pointer() -> None:
    t = np.array([0.0, 16.0, 32.0, 48.0, 120.0])
    x = np.array([10.0, 14.0, 900.0, 904.0, 600.0])
    y = np.array([10.0, 12.0, 700.0, 702.0, 100.0])
    kind = np.array([KIND_MOVE, KIND_MOVE, KIND_MOVE, KIND_MOVE, KIND_DOWN])
    assert named(trajectory_features(t, x, y, kind))["teleports"] == 2
    # Re-entering the window somewhere else after leaving it is not a teleport.
    kind = np.array([KIND_MOVE, KIND_LEAVE, KIND_MOVE, KIND_MOVE, KIND_MOVE])
    x[4], y[4] = 906.0, 703.0
    assert named(trajectory_features(t, x, y, kind))["teleports"] == 0


def test_step_features_tell_straight_lines_from_tremor() -> None:
    straight = step_features(np.full(128, 7.0), np.full(128, 3.0))
    assert straight[STEP_FEATURES.index("step_cv")] == pytest.approx(0.0, abs=1e-12)
    assert straight[STEP_FEATURES.index("turn_mean")] == 0.0
    rng = np.random.default_rng(5)
    shaky = step_features(rng.integers(0, 4, 128).astype(float), rng.integers(0, 4, 128).astype(float))
    assert shaky[STEP_FEATURES.index("turn_mean")] > 0.1
    assert shaky[STEP_FEATURES.index("small_frac")] > 0.1
