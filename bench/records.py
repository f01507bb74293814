"""Result records: one JSON file per finished trial, written atomically, never rewritten.

A record carries the full configuration and its hash (the run id), the metrics of every reported
selection under every protocol and rule, learning curves, timings, memory, the device, library
versions, the git commit and the command line. Per-user values sit beside it, gzip-compressed CSV.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

RECORD_FORMAT = 1
FAILURE_SUFFIX = ".failed.json"       # a failed trial's note beside the records, not a record
NOT_RECORDS = ("perf", "scratch")     # speed records and checkpoints beside the trial records
PER_USER_TOLERANCE = 1e-5             # per-user values are stored to 6 digits; their mean is exact
REPO_ROOT = Path(__file__).resolve().parents[1]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict[str, Any]) -> str:
    """The run id: a hash of everything that determines the trial's numbers."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, flush to disk, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)      # mkstemp makes 0600; records are shared and committed
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def record_path(results_dir: Path, config: dict[str, Any], run_id: str) -> Path:
    return Path(results_dir) / config["dataset"] / config["model"] / f"{run_id}.json"


def per_user_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".json", ".users.csv.gz"))


def per_user_csv(per_user: dict[str, dict[str, Any]]) -> bytes:
    """Columns: selection/protocol/rule/metric; rows: evaluated users (ids in the first column)."""
    columns, users = {}, None
    for key, entry in per_user.items():
        users = entry["users"] if users is None else users
        for metric, values in entry["values"].items():
            columns[f"{key}/{metric}"] = values
    text = io.StringIO()
    text.write(",".join(["user", *columns]) + "\n")
    if users is not None:
        table = np.column_stack([users] + [np.round(v, 6) for v in columns.values()])
        for row in table:
            text.write(str(int(row[0])) + "," + ",".join(f"{x:.6g}" for x in row[1:]) + "\n")
    return gzip.compress(text.getvalue().encode(), mtime=0)


def read_per_user(path: Path) -> dict[str, np.ndarray]:
    """Per-user values of a record as columns (``user`` plus one per selection/metric)."""
    with gzip.open(per_user_path(Path(path)), "rt") as handle:
        header = handle.readline().strip().split(",")
        data = np.loadtxt(handle, delimiter=",", ndmin=2)
    return {name: data[:, i] for i, name in enumerate(header)}


def write_record(results_dir: Path, record: dict[str, Any],
                 per_user: dict[str, dict[str, Any]] | None = None) -> Path:
    path = record_path(results_dir, record["config"], record["run_id"])
    if per_user:
        atomic_write_bytes(per_user_path(path), per_user_csv(per_user))
    atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
                       .encode())
    return path


def load_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the record, None), or (None, what is wrong with the file)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        return None, f"cannot be read ({getattr(err, 'strerror', None) or err})"
    try:
        record = json.loads(text)
    except ValueError:
        return None, "is truncated or not valid JSON"
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None, f"is not a result record (format {RECORD_FORMAT})"
    if record.get("run_id") != config_hash(record.get("config", {})):
        return None, "has a run id that does not match its configuration (edited after writing?)"
    return record, None


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when the file is truncated, corrupted or not a record."""
    return load_record(path)[0]


def per_user_problem(path: Path, record: dict[str, Any]) -> str | None:
    """What is wrong with the per-user values beside the record at ``path``; None when they are
    sound or absent. Each column must average to the record's own metric: a file cut short at a
    line boundary, or another record's file, parses fine but fails that."""
    import pandas as pd
    users = per_user_path(Path(path))
    if not users.exists():
        return None
    try:
        raw = gzip.decompress(users.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        return f"is not a whole gzip-compressed table ({err})"
    try:
        table = pd.read_csv(io.BytesIO(raw), encoding="ascii")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        return f"is not a per-user table ({str(err).strip().splitlines()[-1]})"
    if not len(table.columns) or table.columns[0] != "user" or table.isna().any().any():
        return "is not a per-user table (a 'user,...' header, then whole rows of numbers)"
    for column in table.columns[1:]:
        selection, protocol, rule, metric = (column.split("/") + ["?"] * 4)[:4]
        stated = record.get("metrics", {}).get(selection, {}).get(f"{protocol}/{rule}", {})
        if metric not in stated:
            return f"has a column {column!r} its record has no metric for"
        mean = float(table[column].mean())
        if abs(mean - float(stated[metric])) > PER_USER_TOLERANCE:
            return (f"does not agree with its record: {column} averages {mean:.6f} over "
                    f"{len(table)} users, the record says {float(stated[metric]):.6f} (cut short, "
                    "or another record's file?)")
    return None


@dataclass(frozen=True)
class Damaged:
    """A file of a results folder that could not be used, and why."""

    path: Path
    kind: str          # "record" or "per-user values"
    problem: str


def iter_records(results_dir: Path, damaged: list[Damaged] | None = None
                 ) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The readable records of a results folder; unreadable ones go to ``damaged`` when given
    (failure notes, speed records and scratch files are not records and are passed over)."""
    root = Path(results_dir)
    if not root.is_dir():
        return
    for path in sorted(root.glob("*/*/*.json")):
        if path.parts[-3] in NOT_RECORDS or path.name.endswith(FAILURE_SUFFIX):
            continue
        record, problem = load_record(path)
        if record is not None:
            yield path, record
        elif damaged is not None:
            damaged.append(Damaged(path, "record", problem))


def find_record(results_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    run_id = config_hash(config)
    path = record_path(results_dir, config, run_id)
    return read_record(path) if path.exists() else None


# ---- provenance -----------------------------------------------------------------------------------
def git_commit() -> str:
    """The checkout's commit (+dirty with uncommitted changes to tracked files), or
    ``$BENCH_GIT_COMMIT`` where it is set: a copy of a working tree run elsewhere (a lent GPU
    machine) may carry a stale or no git folder, so the command that starts it names the commit."""
    given = os.environ.get("BENCH_GIT_COMMIT")
    if given:
        return given
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not commit:
        return "unknown"
    return commit + ("+dirty" if dirty.strip() else "")


def environment(device: str) -> dict[str, Any]:
    import scipy
    import torch
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
           "cpu_threads": torch.get_num_threads(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(torch.device(device))
        env["cuda"] = torch.version.cuda
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


def command_line() -> str:
    program = Path(sys.argv[0]).name
    if program == "__main__.py":
        program = "python -m bench"
    return " ".join([program, *sys.argv[1:]])
