"""Find the shipped data folders (fingerprints/, geoip/) in an installed wheel or in a source checkout."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

# In a checkout the folders sit at the repository root, one level above the package.
_CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


class DataFileMissing(FileNotFoundError):
    """A data file the code needs is in neither the installed package nor the checkout."""


def data_dir(folder: str) -> Traversable:
    """The data folder `folder` ("fingerprints", "geoip"): the wheel's copy first, then the checkout's.

    The wheel force-includes each folder as `shieldware/_data/<folder>`; an editable install or a
    plain checkout has no `_data`, so the repository root is the fallback.
    """
    packaged = resources.files("shieldware").joinpath("_data", folder)
    if packaged.is_dir():
        return packaged
    checkout = _CHECKOUT_ROOT / folder
    if checkout.is_dir():
        return checkout
    raise DataFileMissing(
        f"data folder {folder!r} is neither installed (shieldware/_data/{folder}) "
        f"nor in the checkout ({checkout})"
    )


def data_path(folder: str, name: str) -> Traversable:
    """One file inside a data folder; raises DataFileMissing naming both places looked in."""
    path = data_dir(folder).joinpath(name)
    if not path.is_file():
        raise DataFileMissing(f"data file {folder}/{name} is missing")
    return path


@cache
def load_json(folder: str, name: str) -> Any:
    """Parse a JSON data file once per process (the files are read-only while the process runs)."""
    return json.loads(data_path(folder, name).read_text(encoding="utf-8"))
