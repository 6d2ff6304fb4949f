"""Where the shipped geoip/ data folder is: inside the installed wheel, or at the root of a checkout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import shieldware

SHIPPED_DATABASE_NAME = "shieldware-hosting.mmdb"
RANGES_FOLDER = "ranges"


def geoip_dir() -> Path:
    """The geoip/ folder: `shieldware/_data/geoip` when installed (the wheel force-includes it),
    else `geoip/` beside the package in a source checkout.

    Kept deliberately tiny so it can merge with the fingerprints/ loader into one data-path helper.
    """
    installed = Path(str(resources.files(shieldware).joinpath("_data", "geoip")))
    if installed.is_dir():
        return installed
    return Path(shieldware.__file__).resolve().parent.parent / "geoip"


def shipped_database() -> Path:
    return geoip_dir() / SHIPPED_DATABASE_NAME


def shipped_ranges_dir() -> Path:
    return geoip_dir() / RANGES_FOLDER
