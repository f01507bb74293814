"""The suite's version: from the installed package's metadata, else from ``pyproject.toml``.

A checkout used without ``pip install`` (``python -m bench`` from the repository root) has no
metadata, so the source tree's ``pyproject.toml`` is the fallback; both come from that one line.
"""
from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

DISTRIBUTION = "mbbench"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def package_version() -> str:
    """The version string, or "unknown" when neither source can be read."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        with PYPROJECT.open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return "unknown"
