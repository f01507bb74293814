"""A tune's manifest: what was searched and which records hold the answers.

``<results-dir>/tune/<model>-<dataset>-<space>-<key>.json``, written atomically before training
(so an interrupted tune can be reported) and again after each round. It holds the space (its
entries and its file's hash), the search, budget, epochs, runs, seeds, the ``--set`` values, and
every configuration with the run ids of its trials; the metrics stay in the records, so
``bench report tune`` rebuilds the ranking from the manifest and the records alone. ``key`` hashes
everything that decides the configurations and their trials: the same command writes the same
manifest again.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.records import atomic_write_bytes, canonical_json, command_line
from bench.tune.space import Space, parse_space

MANIFEST_FORMAT = 1
FOLDER = "tune"
IDENTITY = ("model", "dataset", "dataset_fingerprint", "space", "search", "search_seed", "budget",
            "epochs", "seeds", "base_seed", "fixed", "protocol")


def manifest_key(manifest: dict[str, Any]) -> str:
    identity = {k: manifest[k] for k in IDENTITY}
    identity["space"] = manifest["space"]["sha256"] or canonical_json(manifest["space"]["params"])
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:10]


def manifest_path(results_dir: Path, manifest: dict[str, Any]) -> Path:
    name = f"{manifest['model']}-{manifest['dataset']}-{manifest['space']['name']}"
    return Path(results_dir) / FOLDER / f"{name}-{manifest_key(manifest)}.json"


def space_entry(space: Space) -> dict[str, Any]:
    """The space as the manifest keeps it (enough to parse it again)."""
    # a list, not a table: the dimensions keep the file's order through sorted JSON keys
    return {"name": space.name, "file": space.source, "sha256": space.sha256,
            "model": space.model, "budget": space.budget,
            "params": [{"name": d.name, **d.entry()} for d in space.dimensions]}


def manifest_space(manifest: dict[str, Any], source: str = "manifest") -> Space:
    """The searched space of a manifest, parsed as a space file is."""
    entry = manifest["space"]
    params = {p["name"]: {k: v for k, v in p.items() if k != "name"} for p in entry["params"]}
    return parse_space({"model": entry["model"], "budget": entry["budget"], "params": params},
                       f"{source} (space {entry['name']})", entry["sha256"], entry["name"])


def write_manifest(results_dir: Path, manifest: dict[str, Any]) -> Path:
    manifest = {**manifest, "format": MANIFEST_FORMAT, "command": command_line(),
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = manifest_path(results_dir, manifest)
    atomic_write_bytes(path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return path


def load_manifest(path: Path) -> dict[str, Any]:
    """A manifest, or a ConfigError naming the file and what is wrong with it."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except OSError as err:
        raise ConfigError(f"tune manifest {path} cannot be read ({err.strerror or err}); pass "
                          "a file under <results-dir>/tune/ or 'latest'") from None
    except ValueError:
        raise ConfigError(f"tune manifest {path} is truncated or not JSON; rerun the `bench "
                          "tune` command that wrote it (stored trials are not retrained)") from None
    missing = [k for k in (*IDENTITY, "configurations") if k not in manifest] if isinstance(
        manifest, dict) else ["everything"]
    if missing or manifest.get("format") != MANIFEST_FORMAT:
        raise ConfigError(f"{path} is not a format-{MANIFEST_FORMAT} tune manifest (missing "
                          f"{', '.join(missing) or 'format'}); pass a file `bench tune` wrote "
                          "under <results-dir>/tune/")
    return manifest


def find_manifest(results_dir: Path, which: str | None) -> Path:
    """``which`` as a path, or the newest manifest of the results folder for None / 'latest'."""
    if which and which != "latest":
        path = Path(which)
        if not path.is_file():
            candidate = Path(results_dir) / FOLDER / which
            if candidate.is_file():
                return candidate
            raise ConfigError(f"tune manifest '{which}' not found (nor under "
                              f"{Path(results_dir) / FOLDER}/); pass a manifest file or 'latest'")
        return path
    folder = Path(results_dir) / FOLDER
    found = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not found:
        raise ConfigError(f"no tune manifest under {folder}/; run `bench tune` first or pass "
                          "--results-dir where it wrote")

    def written(path: Path) -> tuple[str, float, str]:
        try:
            stamp = json.loads(path.read_text()).get("written_at", "")
        except (OSError, ValueError, AttributeError):
            stamp = ""
        return (stamp, path.stat().st_mtime, path.name)
    return max(found, key=written)
