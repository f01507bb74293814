"""Output folders checked before any work starts, so a bad path ends in one line, not a traceback.

``bench run`` would otherwise train for minutes and then fail on its first write; a folder that is
a file, lies on a read-only file system or may not be written is refused up front with the option
to change.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.errors import ConfigError


def refuse_file(path: Path, option: str) -> Path:
    """``path`` unless it, or a folder above it, is a file (then nothing can be stored there)."""
    path = Path(path)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            where = "is a file" if part == path else f"lies under {part}, which is a file"
            raise ConfigError(f"{option} {path} {where}, not a folder; pass a folder path "
                              f"({option} DIR; it is created if absent)")
    return path


def writable_folder(path: Path, option: str) -> Path:
    """``path``, created if absent, after writing and removing a probe file in it."""
    path = refuse_file(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        raise ConfigError(f"{option} {path} cannot be written ({reason}); pass a folder you "
                          f"can write to ({option} DIR)") from None
    return path
