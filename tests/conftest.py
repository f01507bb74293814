"""Shared fixtures: where the real datasets are, and whether their absence is a failure."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One thread per process: the suite starts subprocesses (runners, kills, concurrent writers), and
# torch's sparse kernels slow down many times over when threads outnumber the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def shared_datasets_dir() -> Path | None:
    env = os.environ.get("BENCH_SHARED_DATASETS")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "datasets")
    for path in candidates:
        if (path / "taobao").is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real datasets folder; skipped in a user's clone, a failure where
    BENCH_REQUIRE_SHARED_DATA=1 (our CI always has the data)."""
    path = shared_datasets_dir()
    if path is None:
        message = "real datasets not found (set BENCH_SHARED_DATASETS or place ../shared/datasets)"
        if os.environ.get("BENCH_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message + "; BENCH_REQUIRE_SHARED_DATA=1 requires them")
        pytest.skip(message)
    return path
