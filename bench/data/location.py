"""Where datasets live on disk.

The data directory is, first match wins: an explicit ``--data-dir``, the environment variable
``BENCH_DATA``, then a per-user cache (``$XDG_CACHE_HOME/mbbench/datasets``, by default
``~/.cache/mbbench/datasets``), so downloads land outside the source tree and are shared by clones.
A named dataset lives in ``<data dir>/<name>``.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "BENCH_DATA"


def default_cache_dir() -> Path:
    """The per-user cache folder for downloaded datasets."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mbbench" / "datasets"


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: ``explicit``, else ``$BENCH_DATA``, else the per-user cache.
    The folder need not exist (``fetch`` creates it)."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return default_cache_dir()


def dataset_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder of the named dataset inside the resolved data directory."""
    return resolve_data_dir(data_dir) / name
