"""The data loader finds fingerprints/ in a checkout and, from a built wheel, inside the installed package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from shieldware.datafiles import DataFileMissing, data_dir, data_path, load_json

ROOT = Path(__file__).resolve().parent.parent


def test_checkout_fingerprints_are_found_and_parsed_once():
    assert Path(str(data_dir("fingerprints"))) == ROOT / "fingerprints"
    first = load_json("fingerprints", "bots.json")
    assert load_json("fingerprints", "bots.json") is first
    assert len(first["entries"]) > 1500


def test_missing_files_and_folders_say_where_they_were_looked_for():
    with pytest.raises(DataFileMissing, match=r"no-such-file\.json"):
        data_path("fingerprints", "no-such-file.json")
    with pytest.raises(DataFileMissing, match="nonexistent-folder"):
        data_dir("nonexistent-folder")


def test_every_data_file_names_its_source_and_licence():
    readme = (ROOT / "fingerprints" / "README.md").read_text(encoding="utf-8")
    for path in (ROOT / "fingerprints").glob("*.json"):
        assert path.name in readme, f"{path.name} is not described in fingerprints/README.md"
    for licence in ("MIT", "Apache-2.0", "CC0-1.0"):
        assert licence in readme


def test_installed_wheel_carries_and_finds_the_fingerprints(tmp_path):
    source = tmp_path / "src"
    # Only what the wheel is built from (a checkout also holds .venv, caches and build output).
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    for folder in ("shieldware", "fingerprints", "geoip"):
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, source / folder, ignore=skip)
    for name in ("pyproject.toml", "README.md", "hatch_build.py"):
        shutil.copy(ROOT / name, source / name)
    (source / "geoip").mkdir(exist_ok=True)  # another feature's folder; the wheel config force-includes it
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if built.returncode != 0 and "No module named" in built.stderr and "hatchling" in built.stderr:
        pytest.skip("hatchling is not installed in this environment, so no wheel can be built offline")
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("shieldware-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        assert "shieldware/_data/fingerprints/bots.json" in archive.namelist()
        archive.extractall(site)
    probe = (
        "import shieldware, shieldware.datafiles as d; "
        "print(shieldware.__file__); print(d.data_dir('fingerprints')); "
        "print(shieldware.classify_user_agent('curl/8.4.0').category)"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    module_file, folder, category = ran.stdout.splitlines()
    assert module_file.startswith(str(site)) and folder.startswith(str(site))
    assert folder.endswith("_data/fingerprints") and category == "http-library"
