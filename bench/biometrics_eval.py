"""Does the movement model separate people from bots on data it was not tuned on? JSON out.

Split by PERSON, not by block: the model (shieldware/biometrics/model.json) was trained by
scripts/train_biometrics.py on SapiMouse users 1-80 and bots from the training seed and
parameters. Held out here: users 81-120 (their blocks are the human sessions, and the
replay bots replay *them*), and bots from another seed with other parameters (speeds, bends,
jitter, noise, warp, overshoot). One session = one block of 128 consecutive pointer events.
Human movement: SapiMouse (margitantal68/sapimouse @ 951d3ef8, Apache-2.0).

Run: python bench/biometrics_eval.py [--bots-per-kind N]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from shieldware.biometrics import synth
from shieldware.biometrics.model import roc_auc
from shieldware.biometrics.scoring import MACHINE_MOTION_AT, movement_bot_probability


def evaluate(users: range, seed: int, params: synth.BotParams, per_kind: int) -> dict:
    features, is_bot, kinds = synth.labelled_features(users, seed, params, per_kind)
    scores = np.array([movement_bot_probability(row) for row in features])
    kinds_arr = np.array(kinds)
    human = scores[is_bot == 0]
    result = {
        "users": f"{users.start}-{users.stop - 1}",
        "seed": seed,
        "human_sessions": len(human),
        "bot_sessions": int(is_bot.sum()),
        "auc": round(roc_auc(scores[is_bot == 1], human), 4),
        "auc_by_generator": {},
        "human_flagged_at_0.5": round(float((human >= 0.5).mean()), 4),
        "bots_caught_at_0.5": {},
        # bio.machine_motion is reported from this probability on: the operating point in production.
        f"human_flagged_at_{MACHINE_MOTION_AT}": round(float((human >= MACHINE_MOTION_AT).mean()), 4),
        f"bots_caught_at_{MACHINE_MOTION_AT}": round(float((scores[is_bot == 1] >= MACHINE_MOTION_AT).mean()), 4),
    }
    for kind in synth.GENERATORS.keys() | {"replay"}:
        picked = scores[kinds_arr == kind]
        result["auc_by_generator"][kind] = round(roc_auc(picked, human), 4)
        result["bots_caught_at_0.5"][kind] = round(float((picked >= 0.5).mean()), 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots-per-kind", type=int, default=200)
    args = parser.parse_args()
    report = {
        "question": "ROC AUC of the movement model, people vs generated bots, train and held-out",
        "source": synth.SAPIMOUSE_SOURCE,
        "session": "one block of 128 consecutive pointer events",
        "train": evaluate(synth.TRAIN_USERS, synth.TRAIN_SEED, synth.TRAIN_PARAMS, args.bots_per_kind),
        "held_out": evaluate(synth.TEST_USERS, synth.TEST_SEED, synth.TEST_PARAMS, args.bots_per_kind),
    }
    print(json.dumps(report, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
