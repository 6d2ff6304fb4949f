"""The shipped movement model: reproducible from its training script, and it separates held-out people
from held-out bots (users 81-120, another seed, other bot parameters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shieldware.biometrics import synth
from shieldware.biometrics.model import load_model, roc_auc

ROOT = Path(__file__).resolve().parents[2]
needs_sapimouse = pytest.mark.skipif(not synth.DEFAULT_SAPIMOUSE.exists(),
                                     reason=f"SapiMouse data not at {synth.DEFAULT_SAPIMOUSE}")


@needs_sapimouse
def test_held_out_people_and_bots_are_separated():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from biometrics_eval import evaluate
    finally:
        sys.path.remove(str(ROOT / "bench"))
    result = evaluate(synth.TEST_USERS, synth.TEST_SEED + 1, synth.TEST_PARAMS, per_kind=40)
    assert result["auc"] >= 0.95, result
    assert result["human_sessions"] > 500


@needs_sapimouse
def test_training_script_regenerates_the_shipped_model(tmp_path):
    out = tmp_path / "model.json"
    subprocess.run([sys.executable, str(ROOT / "scripts/train_biometrics.py"), "--out", str(out)],
                   check=True, cwd=ROOT, timeout=300, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    rebuilt = json.loads(out.read_text())
    shipped = load_model().to_json()
    assert rebuilt["features"] == shipped["features"]
    for key in ("centre", "scale", "linear", "quadratic"):
        assert np.allclose(rebuilt[key], shipped[key], atol=1e-5), key
    assert "Apache-2.0" in rebuilt["source"] and "951d3ef8" in rebuilt["source"]


def test_roc_auc_counts_ties_half():
    assert roc_auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert roc_auc(np.array([0.1]), np.array([0.9])) == 0.0
    assert roc_auc(np.array([0.5]), np.array([0.5])) == 0.5
