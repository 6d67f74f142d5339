"""Locate the RL Zoo hyperparameter files that ship with sb3_satr.

The files live in the top-level ``zoo_configs/`` folder of the repository. ``pyproject.toml``
installs that folder as the data package ``sb3_satr.zoo_configs``, so a wheel carries it
inside ``sb3_satr/``. A source checkout, or an editable install made before that mapping
existed, only has the repository folder next to the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

CONFIG_PACKAGE = "sb3_satr.zoo_configs"


def shipped_config_dir() -> Path:
    """Return the folder that contains the shipped ``<algo>.yml`` files.

    :raises FileNotFoundError: if neither the installed data package nor the repository
        folder exists, which means a broken installation.
    """
    spec = importlib.util.find_spec(CONFIG_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if Path(location).is_dir():
                return Path(location)

    source_folder = Path(__file__).resolve().parents[2] / "zoo_configs"
    if source_folder.is_dir():
        return source_folder

    raise FileNotFoundError(
        f"The RL Zoo configs of sb3_satr were not found: {CONFIG_PACKAGE} is not installed and "
        f"{source_folder} does not exist. Reinstall sb3_satr, or pass --conf-file."
    )


def shipped_config_path(algo: str) -> Path | None:
    """Return the shipped hyperparameter file for ``algo``, or None if none ships."""
    path = shipped_config_dir() / f"{algo}.yml"
    if path.is_file():
        return path
    return None


def shipped_algos() -> list[str]:
    """Return the algorithm keys that have a shipped hyperparameter file, sorted."""
    return sorted(path.stem for path in shipped_config_dir().glob("*.yml"))
