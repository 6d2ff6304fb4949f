"""A plain, non-editable install works outside the checkout, with the data folders inside the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_data_and_imports_outside_the_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, timeout=300)
    wheel = next(tmp_path.glob("shieldware-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "shieldware/policies/default.yaml" in names
    assert "shieldware/web/block.html" in names
    assert any(n.startswith("shieldware/_data/fingerprints/") for n in names)
    assert any(n.startswith("shieldware/_data/geoip/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler):  # the build hook compiles the fast lane wherever a C compiler is
        assert any(n.startswith("shieldware/fastlane/_lane") and n.endswith(".so") for n in names), names

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = ("import shieldware, shieldware.cli; from shieldware.policy import default_policy; "
             "from shieldware.fastlane.lane import available; "
             "p = default_policy(); print(shieldware.__file__); print(len(p.groups)); print(available()[0])")
    out = subprocess.run([sys.executable, "-c", probe], cwd=outside, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    where, groups, lane = out.stdout.split()
    assert where.startswith(str(target)) and int(groups) >= 8
    if shutil.which(compiler):
        assert lane == "True", "the installed wheel's fast lane does not import"
