"""How fast are the biometrics feature kernels? Pointer events per second, Numba vs the Python reference.

One run, one process: the same pointer streams (sessions of 500 events: SapiMouse-like steps
with event timing, presses and releases) go through
  * the Numba kernels (trajectory features + step features, what the endpoint runs per batch),
  * their plain-Python references (on a slice, they are slow),
  * the whole `assess` of a telemetry batch (parsing excluded), kernels plus Python glue.
Prints JSON. Run: python bench/biometrics.py [--sessions N] [--events-per-session M]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from shieldware.biometrics.features import (
    step_features,
    step_features_reference,
    trajectory_features,
    trajectory_features_reference,
    warm_up,
)
from shieldware.biometrics.scoring import assess, pointer_steps
from shieldware.biometrics.telemetry import Telemetry


def sessions(count: int, length: int, seed: int = 7) -> list[np.ndarray]:
    """Pointer event arrays [length, 4] (t, x, y, kind) with human-like jitter and some clicks."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        t = np.cumsum(rng.uniform(6, 30, length))
        steps = rng.normal(0, 6, (length, 2)).cumsum(axis=0) * 0.3 + rng.normal(0, 2, (length, 2))
        xy = np.cumsum(steps, axis=0) + 500
        kind = np.zeros(length)
        presses = rng.choice(np.arange(5, length - 2), size=length // 50, replace=False)
        kind[presses] = 1
        kind[presses + 1] = 2
        out.append(np.column_stack([t, np.rint(xy), kind]))
    return out


def kernels(batch: list[np.ndarray]) -> None:
    for p in batch:
        trajectory_features(p[:, 0], p[:, 1], p[:, 2], p[:, 3].astype(np.int64))
        dx, dy = pointer_steps(p)
        step_features(dx, dy)


def references(batch: list[np.ndarray]) -> None:
    for p in batch:
        t, x, y, kind = p[:, 0].tolist(), p[:, 1].tolist(), p[:, 2].tolist(), p[:, 3].astype(int).tolist()
        trajectory_features_reference(t, x, y, kind)
        dx, dy = pointer_steps(p)
        step_features_reference(dx.tolist(), dy.tolist())


def timed(fn, batch: list[np.ndarray], repeat: int = 3) -> float:
    """Best of `repeat` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn(batch)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--events-per-session", type=int, default=500)
    args = parser.parse_args()
    warm_up()
    batch = sessions(args.sessions, args.events_per_session)
    events = args.sessions * args.events_per_session
    kernel_s = timed(kernels, batch)
    ref_batch = batch[: max(1, args.sessions // 50)]
    ref_events = len(ref_batch) * args.events_per_session
    reference_s = timed(references, ref_batch, repeat=1)
    empty = np.zeros((0, 2))
    telemetry = [Telemetry(pointer=p, keys=empty, scroll=np.zeros((0, 3)), touch=np.zeros((0, 4)),
                           focus=empty, fills=empty) for p in batch[:400]]
    started = time.perf_counter()
    for item in telemetry:
        assess(item)
    assess_s = time.perf_counter() - started
    kernel_rate = events / kernel_s
    reference_rate = ref_events / reference_s
    print(json.dumps({
        "question": "pointer events per second through the biometrics feature kernels",
        "events": events,
        "events_per_session": args.events_per_session,
        "kernel_events_per_s": round(kernel_rate),
        "reference_events_per_s": round(reference_rate),
        "speedup_vs_reference": round(kernel_rate / reference_rate, 1),
        "assess_events_per_s": round(len(telemetry) * args.events_per_session / assess_s),
        "assess_batches_per_s": round(len(telemetry) / assess_s),
        "target_events_per_s": 1_000_000,
        "meets_target": kernel_rate >= 1_000_000,
    }, indent=1))


if __name__ == "__main__":
    main()
