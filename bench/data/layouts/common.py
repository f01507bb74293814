"""Checks every layout reader makes before reading anything."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from bench.errors import DataError


def dataset_folder(folder: str | Path, behaviors: Sequence[str]) -> tuple[Path, tuple[str, ...]]:
    """The folder as a Path and the behaviors as a tuple, refusing an empty behavior order or a
    folder that does not exist."""
    folder = Path(folder)
    behaviors = tuple(behaviors)
    if not behaviors:
        raise DataError(f"{folder}: no behaviors given; name them upstream -> target")
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found")
    return folder, behaviors
