"""Regenerate shieldware/biometrics/model.json from SapiMouse humans (users 1-80) and generated bots.

Human movement: SapiMouse (margitantal68/sapimouse @ 951d3ef8, Apache-2.0). Bots: the
generators in shieldware/biometrics/synth.py with the training seed and parameters. Users
81-120 and the test seed/parameters are never touched here: bench/biometrics_eval.py holds
them out. Usage: python scripts/train_biometrics.py [--sapimouse CSV] [--out model.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from shieldware.biometrics import synth
from shieldware.biometrics.model import fit, roc_auc

BOTS_PER_KIND = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sapimouse", default=str(synth.DEFAULT_SAPIMOUSE))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent
                                             / "shieldware/biometrics/model.json"))
    args = parser.parse_args()
    features, is_bot, _ = synth.labelled_features(synth.TRAIN_USERS, synth.TRAIN_SEED, synth.TRAIN_PARAMS,
                                                  BOTS_PER_KIND, args.sapimouse)
    human = features[is_bot == 0]
    centre = np.median(human, axis=0)
    q75, q25 = np.percentile(human, [75, 25], axis=0)
    scale = np.maximum(q75 - q25, 1e-3)
    model = fit(features, is_bot, centre, scale, l2=1.0,
                source=f"trained on {synth.SAPIMOUSE_SOURCE} users 1-80 vs generated bots "
                       f"(seed {synth.TRAIN_SEED}); scripts/train_biometrics.py")
    scores = np.array([model.bot_probability(row) for row in features])
    auc = roc_auc(scores[is_bot == 1], scores[is_bot == 0])
    Path(args.out).write_text(json.dumps(model.to_json(), indent=1) + "\n")
    print(json.dumps({"out": args.out, "human_blocks": int((is_bot == 0).sum()),
                      "bot_blocks": int(is_bot.sum()), "train_auc": round(auc, 4)}))


if __name__ == "__main__":
    main()
