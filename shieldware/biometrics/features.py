"""Movement, click, key and scroll features as Numba kernels, each with a plain-Python reference.

Two families of pointer features:

* **step features** (`step_features`) use only the sequence of absolute per-event deltas
  |dx|, |dy|. That is all the SapiMouse human data set has (no timestamps, no signs), so the
  learned part of the model is built on these, and the same kernel runs on live telemetry.
* **trajectory features** (`trajectory_features`) use the live telemetry's timestamps and signed
  coordinates: speed/acceleration/jerk, pauses, straightness, deviation from the chord, constant
  step length, teleports, sub-movements, overshoot and click hold times.

Every kernel has a reference written the plain way (lists, `math`, `statistics`); the tests drive
random inputs through both and compare. The kernels are what production and the bench run.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
from numba import njit

# ---- step features (time-free, sign-free) ---------------------------------------------------------

STEP_FEATURES = (
    "zero_frac",        # share of events with no movement (clicks, jitter-free stillness)
    "step_cv",          # variation of step length among moving events (speed variation)
    "accel_ratio",      # mean |Δ step| / mean step: how much the speed changes event to event
    "jerk_ratio",       # mean |Δ² step| / mean step: how abruptly it changes
    "turn_mean",        # mean change of the folded direction atan2(|dy|,|dx|) between moving events
    "turn_std",         # its spread
    "peaks_per_100",    # local maxima of the smoothed speed per 100 events (sub-movements)
    "log_peak_ratio",   # log(1 + max step / median step): bursts and teleports
    "axis_frac",        # share of moving events purely horizontal or vertical
    "small_frac",       # share of moving events of about one pixel (hand tremor, fine corrections)
)
N_STEP_FEATURES = len(STEP_FEATURES)
SMALL_STEP_PX = 1.5


@njit(cache=True)
def step_features_kernel(dx: np.ndarray, dy: np.ndarray, out: np.ndarray) -> None:
    """Fill `out` (length N_STEP_FEATURES) from per-event deltas; signs are ignored."""
    n = dx.shape[0]
    for k in range(out.shape[0]):
        out[k] = 0.0
    if n == 0:
        return
    steps = np.empty(n)
    total = 0.0
    zeros = 0
    moving = 0
    moving_sum = 0.0
    axis = 0
    small = 0
    peak = 0.0
    for i in range(n):
        ax = abs(dx[i])
        ay = abs(dy[i])
        s = math.sqrt(ax * ax + ay * ay)
        steps[i] = s
        total += s
        if s > peak:
            peak = s
        if s == 0.0:
            zeros += 1
        else:
            moving += 1
            moving_sum += s
            if ax == 0.0 or ay == 0.0:
                axis += 1
            if s <= SMALL_STEP_PX:
                small += 1
    out[0] = zeros / n
    mean_all = total / n
    if moving == 0:
        return
    moving_mean = moving_sum / moving
    if moving >= 2:
        var = 0.0
        for i in range(n):
            if steps[i] > 0.0:
                d = steps[i] - moving_mean
                var += d * d
        out[1] = math.sqrt(var / moving) / moving_mean
    if n >= 2:
        acc = 0.0
        for i in range(1, n):
            acc += abs(steps[i] - steps[i - 1])
        out[2] = acc / (n - 1) / mean_all
    if n >= 3:
        jerk = 0.0
        for i in range(2, n):
            jerk += abs(steps[i] - 2.0 * steps[i - 1] + steps[i - 2])
        out[3] = jerk / (n - 2) / mean_all
    # Turning of the folded direction between consecutive moving events (Welford for the spread).
    turns = 0
    turn_mean = 0.0
    turn_m2 = 0.0
    prev_angle = -1.0
    for i in range(n):
        if steps[i] == 0.0:
            continue
        angle = math.atan2(abs(dy[i]), abs(dx[i]))
        if prev_angle >= 0.0:
            change = abs(angle - prev_angle)
            turns += 1
            delta = change - turn_mean
            turn_mean += delta / turns
            turn_m2 += delta * (change - turn_mean)
        prev_angle = angle
    if turns > 0:
        out[4] = turn_mean
        out[5] = math.sqrt(turn_m2 / turns)
    peaks = 0
    for i in range(2, n - 2):
        centre = steps[i - 1] + steps[i] + steps[i + 1]
        before = steps[i - 2] + steps[i - 1] + steps[i]
        after = steps[i] + steps[i + 1] + steps[i + 2]
        if centre > before and centre >= after:
            peaks += 1
    out[6] = peaks * 100.0 / n
    moving_steps = np.empty(moving)
    j = 0
    for i in range(n):
        if steps[i] > 0.0:
            moving_steps[j] = steps[i]
            j += 1
    out[7] = math.log1p(peak / np.median(moving_steps))
    out[8] = axis / moving
    out[9] = small / moving


def step_features(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The step features of one sequence of deltas, as a float64 array in STEP_FEATURES order."""
    out = np.zeros(N_STEP_FEATURES)
    step_features_kernel(np.ascontiguousarray(dx, dtype=np.float64),
                         np.ascontiguousarray(dy, dtype=np.float64), out)
    return out


def step_features_reference(dx: list[float], dy: list[float]) -> list[float]:
    """Plain-Python step features (the specification the kernel is tested against)."""
    n = len(dx)
    out = [0.0] * N_STEP_FEATURES
    if n == 0:
        return out
    pairs = [(abs(a), abs(b)) for a, b in zip(dx, dy, strict=True)]
    steps = [math.hypot(a, b) for a, b in pairs]
    moving = [(s, a, b) for s, (a, b) in zip(steps, pairs, strict=True) if s > 0]
    out[0] = sum(1 for s in steps if s == 0) / n
    if not moving:
        return out
    mean_all = sum(steps) / n
    moving_lengths = [s for s, _, _ in moving]
    if len(moving) >= 2:
        out[1] = statistics.pstdev(moving_lengths) / statistics.fmean(moving_lengths)
    if n >= 2:
        out[2] = statistics.fmean(abs(steps[i] - steps[i - 1]) for i in range(1, n)) / mean_all
    if n >= 3:
        jerks = [abs(steps[i] - 2 * steps[i - 1] + steps[i - 2]) for i in range(2, n)]
        out[3] = statistics.fmean(jerks) / mean_all
    angles = [math.atan2(b, a) for _, a, b in moving]
    changes = [abs(angles[k] - angles[k - 1]) for k in range(1, len(angles))]
    if changes:
        out[4] = statistics.fmean(changes)
        out[5] = statistics.pstdev(changes)
    window = [sum(steps[i - 1:i + 2]) for i in range(1, n - 1)]  # window[i-1] is centred on step i
    peaks = sum(1 for i in range(2, n - 2) if window[i - 1] > window[i - 2] and window[i - 1] >= window[i])
    out[6] = peaks * 100.0 / n
    out[7] = math.log1p(max(steps) / statistics.median(moving_lengths))
    out[8] = sum(1 for _, a, b in moving if a == 0 or b == 0) / len(moving)
    out[9] = sum(1 for s in moving_lengths if s <= SMALL_STEP_PX) / len(moving)
    return out


# ---- trajectory features (live telemetry: time and signed coordinates) ----------------------------

KIND_MOVE, KIND_DOWN, KIND_UP, KIND_LEAVE = 0, 1, 2, 3
PAUSE_MS = 300.0           # a gap this long between pointer events ends a trajectory
MIN_CHORD_PX = 50.0        # shorter trajectories say little about path shape
LINEAR_CHORD_PX = 80.0     # a "ruler-straight" path must be at least this long ...
LINEAR_MIN_POINTS = 6      # ... have this many points ...
LINEAR_MAX_DEVIATION = 1.5  # ... and never stray further than this from its chord (pixels)
CONSTANT_MIN_STEPS = 6
CONSTANT_MAX_CV = 0.08     # step-length variation below this over a trajectory = constant speed
TELEPORT_MOVE_PX = 300.0   # one event this long is a jump no hand makes
TELEPORT_DOWN_PX = 150.0   # a press this far from the previous pointer position
OVERSHOOT_PX = 3.0

TRAJECTORY_FEATURES = (
    "moves",               # pointer move events
    "speed_mean",          # px/s between consecutive events
    "speed_cv",
    "accel_mean",          # mean |Δspeed|/Δt, px/s²
    "jerk_mean",           # mean |Δaccel|/Δt, px/s³
    "pauses",              # gaps ≥ PAUSE_MS between pointer events
    "pause_cv",            # variation of those gaps
    "segments",            # trajectories with a chord ≥ MIN_CHORD_PX
    "straightness_mean",   # path length / chord, averaged over segments (1 = ruler-straight)
    "straightness_min",
    "linear_segments",     # segments that never leave their chord by more than LINEAR_MAX_DEVIATION
    "constant_segments",   # segments whose step lengths barely vary
    "teleports",           # jumps of TELEPORT_MOVE_PX in one event, or presses far from the pointer
    "turn_mean",           # mean |change of heading| (radians) between steps of ≥ 2 px
    "submovements",        # speed peaks per segment
    "clicks",              # presses
    "hold_mean",           # press → release, ms
    "hold_cv",
    "overshoots",          # segments ending in a press that went past the press point first
)
N_TRAJECTORY_FEATURES = len(TRAJECTORY_FEATURES)


@njit(cache=True)
def _close_segment(x: np.ndarray, y: np.ndarray, kind: np.ndarray, a: int, b: int, acc: np.ndarray) -> None:
    """Fold trajectory [a, b] into acc: [segments, straight_sum, straight_min, linear, constant,
    peaks, overshoots]."""
    if b - a < 2:
        return
    cx = x[b] - x[a]
    cy = y[b] - y[a]
    chord = math.sqrt(cx * cx + cy * cy)
    if chord < MIN_CHORD_PX:
        return
    path = 0.0
    deviation = 0.0
    for i in range(a + 1, b + 1):
        sx = x[i] - x[i - 1]
        sy = y[i] - y[i - 1]
        path += math.sqrt(sx * sx + sy * sy)
        off = abs((x[i] - x[a]) * cy - (y[i] - y[a]) * cx) / chord
        if off > deviation:
            deviation = off
    straightness = path / chord
    acc[0] += 1.0
    acc[1] += straightness
    if straightness < acc[2]:
        acc[2] = straightness
    if chord >= LINEAR_CHORD_PX and b - a + 1 >= LINEAR_MIN_POINTS and deviation <= LINEAR_MAX_DEVIATION:
        acc[3] += 1.0
    # The last step is often cut short by the target, so it is left out of the constancy test.
    steps = b - a - 1
    if steps >= CONSTANT_MIN_STEPS:
        total = 0.0
        for i in range(a + 1, b):
            total += math.sqrt((x[i] - x[i - 1]) ** 2 + (y[i] - y[i - 1]) ** 2)
        mean = total / steps
        if mean > 0.0:
            var = 0.0
            for i in range(a + 1, b):
                d = math.sqrt((x[i] - x[i - 1]) ** 2 + (y[i] - y[i - 1]) ** 2) - mean
                var += d * d
            if math.sqrt(var / steps) / mean < CONSTANT_MAX_CV:
                acc[4] += 1.0
    # Sub-movements: local maxima of step length above a third of the segment's largest step.
    largest = 0.0
    for i in range(a + 1, b + 1):
        s = math.sqrt((x[i] - x[i - 1]) ** 2 + (y[i] - y[i - 1]) ** 2)
        if s > largest:
            largest = s
    prev = 0.0
    for i in range(a + 1, b + 1):
        s = math.sqrt((x[i] - x[i - 1]) ** 2 + (y[i] - y[i - 1]) ** 2)
        following = 0.0
        if i < b:
            following = math.sqrt((x[i + 1] - x[i]) ** 2 + (y[i + 1] - y[i]) ** 2)
        if s > prev and s >= following and s >= largest / 3.0:
            acc[5] += 1.0
        prev = s
    if kind[b] == KIND_DOWN:
        ux = cx / chord
        uy = cy / chord
        for i in range(a, b):
            if (x[i] - x[b]) * ux + (y[i] - y[b]) * uy > OVERSHOOT_PX:
                acc[6] += 1.0
                break


@njit(cache=True)
def trajectory_features_kernel(t: np.ndarray, x: np.ndarray, y: np.ndarray, kind: np.ndarray,
                               out: np.ndarray) -> None:
    """Fill `out` (length N_TRAJECTORY_FEATURES) from time-sorted pointer events."""
    n = t.shape[0]
    for k in range(out.shape[0]):
        out[k] = 0.0
    out[9] = 0.0
    acc = np.zeros(7)
    acc[2] = np.inf
    moves = 0
    speeds = 0
    speed_mean = 0.0
    speed_m2 = 0.0
    accels = 0
    accel_sum = 0.0
    jerks = 0
    jerk_sum = 0.0
    prev_speed = -1.0
    prev_accel = np.nan
    pauses = 0
    pause_mean = 0.0
    pause_m2 = 0.0
    teleports = 0
    turns = 0
    turn_sum = 0.0
    prev_heading = np.nan
    clicks = 0
    holds = 0
    hold_mean = 0.0
    hold_m2 = 0.0
    down_at = np.nan
    start = 0
    after_leave = False
    for i in range(n):
        k = kind[i]
        if k == KIND_MOVE:
            moves += 1
        if k == KIND_DOWN:
            clicks += 1
            down_at = t[i]
        elif k == KIND_UP and not math.isnan(down_at):
            hold = t[i] - down_at
            holds += 1
            delta = hold - hold_mean
            hold_mean += delta / holds
            hold_m2 += delta * (hold - hold_mean)
            down_at = np.nan
        if i == 0:
            after_leave = k == KIND_LEAVE
            continue
        dt = t[i] - t[i - 1]
        sx = x[i] - x[i - 1]
        sy = y[i] - y[i - 1]
        s = math.sqrt(sx * sx + sy * sy)
        jump = (k == KIND_MOVE and s >= TELEPORT_MOVE_PX) or (k == KIND_DOWN and s >= TELEPORT_DOWN_PX)
        if jump and not after_leave:
            teleports += 1
        if dt >= PAUSE_MS:
            pauses += 1
            delta = dt - pause_mean
            pause_mean += delta / pauses
            pause_m2 += delta * (dt - pause_mean)
            _close_segment(x, y, kind, start, i - 1, acc)
            start = i
            prev_speed = -1.0
            prev_accel = np.nan
            prev_heading = np.nan
        elif k == KIND_MOVE and kind[i - 1] == KIND_MOVE:
            if s >= 2.0:
                heading = math.atan2(sy, sx)
                if not math.isnan(prev_heading):
                    change = abs(heading - prev_heading)
                    if change > math.pi:
                        change = 2.0 * math.pi - change
                    turns += 1
                    turn_sum += change
                prev_heading = heading
            if dt > 0.0:
                speed = s * 1000.0 / dt
                speeds += 1
                delta = speed - speed_mean
                speed_mean += delta / speeds
                speed_m2 += delta * (speed - speed_mean)
                if prev_speed >= 0.0:
                    accel = (speed - prev_speed) * 1000.0 / dt
                    accels += 1
                    accel_sum += abs(accel)
                    if not math.isnan(prev_accel):
                        jerks += 1
                        jerk_sum += abs(accel - prev_accel) * 1000.0 / dt
                    prev_accel = accel
                prev_speed = speed
        if k == KIND_DOWN or k == KIND_UP or k == KIND_LEAVE:  # noqa: SIM109 (plain compares for Numba)
            _close_segment(x, y, kind, start, i, acc)
            start = i
            prev_speed = -1.0
            prev_accel = np.nan
            prev_heading = np.nan
        after_leave = k == KIND_LEAVE
    if n > 0:
        _close_segment(x, y, kind, start, n - 1, acc)
    out[0] = moves
    if speeds > 0:
        out[1] = speed_mean
        if speed_mean > 0.0:
            out[2] = math.sqrt(speed_m2 / speeds) / speed_mean
    if accels > 0:
        out[3] = accel_sum / accels
    if jerks > 0:
        out[4] = jerk_sum / jerks
    out[5] = pauses
    if pauses > 0 and pause_mean > 0.0:
        out[6] = math.sqrt(pause_m2 / pauses) / pause_mean
    out[7] = acc[0]
    if acc[0] > 0:
        out[8] = acc[1] / acc[0]
        out[9] = acc[2]
        out[14] = acc[5] / acc[0]
    out[10] = acc[3]
    out[11] = acc[4]
    out[12] = teleports
    if turns > 0:
        out[13] = turn_sum / turns
    out[15] = clicks
    if holds > 0:
        out[16] = hold_mean
        if hold_mean > 0.0:
            out[17] = math.sqrt(hold_m2 / holds) / hold_mean
    out[18] = acc[6]


def trajectory_features(t: np.ndarray, x: np.ndarray, y: np.ndarray, kind: np.ndarray) -> np.ndarray:
    out = np.zeros(N_TRAJECTORY_FEATURES)
    trajectory_features_kernel(
        np.ascontiguousarray(t, dtype=np.float64), np.ascontiguousarray(x, dtype=np.float64),
        np.ascontiguousarray(y, dtype=np.float64), np.ascontiguousarray(kind, dtype=np.int64), out)
    return out


def _segments_reference(t: list[float], kind: list[int]) -> tuple[list[tuple[int, int]], list[float]]:
    """Split events into trajectories [a, b] (shared boundary at presses/releases) and list pauses."""
    bounds, pauses, start = [], [], 0
    for i in range(1, len(t)):
        if t[i] - t[i - 1] >= PAUSE_MS:
            pauses.append(t[i] - t[i - 1])
            bounds.append((start, i - 1))
            start = i
        if kind[i] in (KIND_DOWN, KIND_UP, KIND_LEAVE):
            bounds.append((start, i))
            start = i
    if t:
        bounds.append((start, len(t) - 1))
    return bounds, pauses


def _cv(values: list[float]) -> float:
    mean = statistics.fmean(values)
    return statistics.pstdev(values) / mean if mean > 0 else 0.0


def trajectory_features_reference(t: list[float], x: list[float], y: list[float],
                                  kind: list[int]) -> list[float]:
    """Plain-Python trajectory features (the specification the kernel is tested against)."""
    n = len(t)
    out = [0.0] * N_TRAJECTORY_FEATURES
    points = list(zip(x, y, strict=True))

    def dist(i: int, j: int) -> float:
        return math.dist(points[i], points[j])

    out[0] = sum(1 for k in kind if k == KIND_MOVE)
    bounds, pauses = _segments_reference(t, kind)
    out[5] = len(pauses)
    if pauses:
        out[6] = _cv(pauses)
    # Speeds, accelerations, jerks and headings run within a trajectory, between two moves.
    speeds_all, accels_all, jerks_all, turns = [], [], [], []
    for a, b in bounds:
        speed_prev, accel_prev, heading_prev = None, None, None
        for i in range(a + 1, b + 1):
            if not (kind[i] == KIND_MOVE and kind[i - 1] == KIND_MOVE) or t[i] - t[i - 1] >= PAUSE_MS:
                continue
            step = dist(i - 1, i)
            if step >= 2.0:
                heading = math.atan2(y[i] - y[i - 1], x[i] - x[i - 1])
                if heading_prev is not None:
                    change = abs(heading - heading_prev)
                    turns.append(2 * math.pi - change if change > math.pi else change)
                heading_prev = heading
            dt = t[i] - t[i - 1]
            if dt <= 0:
                continue
            speed = step * 1000.0 / dt
            speeds_all.append(speed)
            if speed_prev is not None:
                accel = (speed - speed_prev) * 1000.0 / dt
                accels_all.append(abs(accel))
                if accel_prev is not None:
                    jerks_all.append(abs(accel - accel_prev) * 1000.0 / dt)
                accel_prev = accel
            speed_prev = speed
    if speeds_all:
        out[1] = statistics.fmean(speeds_all)
        out[2] = _cv(speeds_all)
    if accels_all:
        out[3] = statistics.fmean(accels_all)
    if jerks_all:
        out[4] = statistics.fmean(jerks_all)
    if turns:
        out[13] = statistics.fmean(turns)
    straightness, linear, constant, peaks, overshoots = [], 0, 0, 0, 0
    for a, b in bounds:
        if b - a < 2 or dist(a, b) < MIN_CHORD_PX:
            continue
        chord = dist(a, b)
        steps = [dist(i - 1, i) for i in range(a + 1, b + 1)]
        straightness.append(sum(steps) / chord)
        cx, cy = x[b] - x[a], y[b] - y[a]
        deviation = max(abs((x[i] - x[a]) * cy - (y[i] - y[a]) * cx) / chord for i in range(a + 1, b + 1))
        if chord >= LINEAR_CHORD_PX and b - a + 1 >= LINEAR_MIN_POINTS and deviation <= LINEAR_MAX_DEVIATION:
            linear += 1
        inner = steps[:-1]
        if len(inner) >= CONSTANT_MIN_STEPS and statistics.fmean(inner) > 0 and _cv(inner) < CONSTANT_MAX_CV:
            constant += 1
        largest = max(steps)
        for j, s in enumerate(steps):
            before = steps[j - 1] if j > 0 else 0.0
            after = steps[j + 1] if j + 1 < len(steps) else 0.0
            if s > before and s >= after and s >= largest / 3.0:
                peaks += 1
        if kind[b] == KIND_DOWN:
            ux, uy = cx / chord, cy / chord
            if any((x[i] - x[b]) * ux + (y[i] - y[b]) * uy > OVERSHOOT_PX for i in range(a, b)):
                overshoots += 1
    out[7] = len(straightness)
    if straightness:
        out[8] = statistics.fmean(straightness)
        out[9] = min(straightness)
        out[14] = peaks / len(straightness)
    out[10], out[11], out[18] = linear, constant, overshoots
    teleports = 0
    for i in range(1, n):
        if kind[i - 1] == KIND_LEAVE or kind[i] == KIND_LEAVE:
            continue
        step = dist(i - 1, i)
        limit = {KIND_MOVE: TELEPORT_MOVE_PX, KIND_DOWN: TELEPORT_DOWN_PX}.get(kind[i])
        if limit is not None and step >= limit:
            teleports += 1
    out[12] = teleports
    holds, down_at = [], None
    for ti, k in zip(t, kind, strict=True):
        if k == KIND_DOWN:
            down_at = ti
        elif k == KIND_UP and down_at is not None:
            holds.append(ti - down_at)
            down_at = None
    out[15] = sum(1 for k in kind if k == KIND_DOWN)
    if holds:
        out[16] = statistics.fmean(holds)
        out[17] = _cv(holds)
    return out


# ---- keys and scroll ---------------------------------------------------------------------------

TIMING_FEATURES = ("count", "hold_mean", "hold_cv", "gap_mean", "gap_cv")
N_TIMING_FEATURES = len(TIMING_FEATURES)


@njit(cache=True)
def timing_features_kernel(start: np.ndarray, end: np.ndarray, out: np.ndarray) -> None:
    """Key timings (start = key down, end = key up) or scroll timings (end = start): hold time
    and the gap between consecutive starts, each as mean and coefficient of variation."""
    n = start.shape[0]
    for k in range(out.shape[0]):
        out[k] = 0.0
    out[0] = n
    if n == 0:
        return
    mean = 0.0
    m2 = 0.0
    for i in range(n):
        hold = end[i] - start[i]
        delta = hold - mean
        mean += delta / (i + 1)
        m2 += delta * (hold - mean)
    out[1] = mean
    if mean > 0.0:
        out[2] = math.sqrt(m2 / n) / mean
    if n < 2:
        return
    mean = 0.0
    m2 = 0.0
    for i in range(1, n):
        gap = start[i] - start[i - 1]
        delta = gap - mean
        mean += delta / i
        m2 += delta * (gap - mean)
    out[3] = mean
    if mean > 0.0:
        out[4] = math.sqrt(m2 / (n - 1)) / mean


def timing_features(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    out = np.zeros(N_TIMING_FEATURES)
    timing_features_kernel(np.ascontiguousarray(start, dtype=np.float64),
                           np.ascontiguousarray(end, dtype=np.float64), out)
    return out


def timing_features_reference(start: list[float], end: list[float]) -> list[float]:
    out = [float(len(start)), 0.0, 0.0, 0.0, 0.0]
    if not start:
        return out
    holds = [b - a for a, b in zip(start, end, strict=True)]
    out[1] = statistics.fmean(holds)
    out[2] = _cv(holds)
    gaps = [start[i] - start[i - 1] for i in range(1, len(start))]
    if gaps:
        out[3] = statistics.fmean(gaps)
        out[4] = _cv(gaps)
    return out


def warm_up() -> None:
    """Compile (or load from the Numba cache) every kernel, so no request pays the JIT."""
    step_features(np.array([1.0, 2.0, 0.0, 3.0, 1.0]), np.array([0.0, 1.0, 0.0, 2.0, 1.0]))
    trajectory_features(np.array([0.0, 10.0, 20.0, 30.0]), np.array([0.0, 40.0, 80.0, 120.0]),
                        np.array([0.0, 0.0, 0.0, 0.0]), np.array([0, 0, 1, 2]))
    timing_features(np.array([0.0, 100.0]), np.array([50.0, 180.0]))
