"""Shared helpers for the analyzer tests: the fixture folder and the deterministic log generator."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_logs", LOGS / "make_logs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_logs"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def make_logs():
    return _load_generator()


@pytest.fixture(scope="session")
def scenario(make_logs):
    """(events, cast) of the golden scenario, for rendering it in other formats."""
    return make_logs.production_events()
