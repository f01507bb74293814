"""Fixtures of the data tests: the real datasets folder and tiny generated dataset folders."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[2]


def find_shared_datasets() -> Path | None:
    """``$BENCH_SHARED_DATASETS``, else ``<repo>/../shared/datasets``; None when neither exists."""
    env = os.environ.get("BENCH_SHARED_DATASETS")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "datasets")
    for path in candidates:
        if path.is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real datasets; skipped where absent unless BENCH_REQUIRE_SHARED_DATA=1 (then a failure)."""
    path = find_shared_datasets()
    if path is None:
        message = ("real datasets not found (set BENCH_SHARED_DATASETS or place them at "
                   f"{REPO.parent / 'shared' / 'datasets'})")
        if os.environ.get("BENCH_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message + "; BENCH_REQUIRE_SHARED_DATA=1 requires them")
        pytest.skip(message)
    return path


class Exploit:
    """A pickle payload that would run ``command`` through ``os.system`` when unpickled."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def write_pickle(path: Path, obj, protocol: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


# A 5 users x 6 items dataset, view -> cart -> buy; test items are never training buys.
TINY_BEHAVIORS = ("view", "cart", "buy")
TINY_SHAPE = (5, 6)
TINY_PAIRS = {
    "view": [(0, 0), (0, 1), (0, 2), (1, 1), (1, 3), (2, 4), (3, 0), (3, 5), (4, 2), (4, 3)],
    "cart": [(0, 1), (1, 3), (2, 4), (3, 5)],
    "buy": [(0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 2)],
}
TINY_TEST = [3, [0, 5], None, 1, 4]


def tiny_matrix(behavior: str, fmt: str = "csr", values=None) -> sp.spmatrix:
    rows, cols = zip(*TINY_PAIRS[behavior])
    data = np.ones(len(rows)) if values is None else np.asarray(values)
    return sp.coo_matrix((data, (rows, cols)), shape=TINY_SHAPE).asformat(fmt)


@pytest.fixture
def tiny_pkef(tmp_path: Path) -> Path:
    """A valid pkef folder: csr and coo matrices, timestamps as values, mixed tst_int entries."""
    folder = tmp_path / "tiny"
    write_pickle(folder / "trn_view", tiny_matrix("view", "csr",
                                                  values=1_433_222_500 + np.arange(10)))
    write_pickle(folder / "trn_cart", tiny_matrix("cart", "coo"), protocol=3)
    write_pickle(folder / "trn_buy", tiny_matrix("buy", "csr"), protocol=5)
    write_pickle(folder / "tst_int", list(TINY_TEST))
    return folder
