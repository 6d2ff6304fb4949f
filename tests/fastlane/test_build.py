"""The fast lane is compiled wherever a C compiler is, and is off (the Python path serves) where not."""

from __future__ import annotations

import os
import shutil
import sysconfig

import pytest

from shieldware.fastlane import lane


def test_the_lane_is_compiled_wherever_a_compiler_is():
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) here: every request takes the Python path")
    assert lane.native is not None, f"the build hook did not compile the lane: {lane.available()[1]}"


def test_the_lane_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(lane.ENV_SWITCH, "0")
    assert lane.available() == (False, f"{lane.ENV_SWITCH}=0")
