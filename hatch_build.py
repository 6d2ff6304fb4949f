"""Build hook: compile the fast lane (shieldware/fastlane/_lane.c) into the wheel with the C compiler
Python itself was built with.

One C file against Python's own headers needs no build system of its own, so the hook calls the
compiler directly. Without a compiler the package still installs and works: every request then
takes the Python path, and the middleware says so once when it starts (see shieldware/fastlane/).
An editable install compiles next to the source, where the checkout imports it from.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("shieldware") / "fastlane" / "_lane.c"
FLAGS = ["-O2", "-fPIC", "-shared", "-std=c11", "-Wall", "-Wno-unused-parameter",
         # the trigger comparisons must round exactly as Python's floats do: no fused multiply-add
         "-ffp-contract=off"]


def compile_extension(source: Path, target: Path) -> str | None:
    """Compile `source` into the extension module `target`; None on success, else why not."""
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    command = [*compiler, *FLAGS, f"-I{sysconfig.get_paths()['include']}", str(source), "-o", str(target)]
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{command[0]}: {exc}"
    if run.returncode != 0:
        return run.stderr.strip()[-2000:] or f"{command[0]} exited with {run.returncode}"
    return None


class FastLaneBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        name = "_lane" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
        root = Path(self.root)
        if version == "editable":
            target = root / SOURCE.parent / name
        else:
            target = Path(tempfile.mkdtemp(prefix="shieldware-build-")) / name
        problem = compile_extension(root / SOURCE, target)
        if problem is not None:
            self.app.display_warning(
                "shieldware: the fast lane was not compiled, so every request will take the (slower) "
                f"Python path:\n{problem}")
            return
        if version != "editable":
            build_data["force_include"][str(target)] = (SOURCE.parent / name).as_posix()
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
