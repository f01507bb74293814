"""Layout ``pkef``: the pickled files of the COPF, PKEF and CIGF code releases.

A folder holds one pickled scipy sparse user x item matrix ``trn_<behavior>`` per behavior
(non-zero = interaction; Retailrocket's values are unix timestamps, hence binarized with ``!= 0``
as the TF-family code does) and ``tst_int``: a sequence with one entry per user, ``None`` (not a
test user), an item id, or a list of item ids (Tmall). The files do not say the behavior order, so
the caller (the catalog, or the user) gives it. Every pickle goes through the restricted unpickler.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from bench.data import safe_pickle
from bench.data.dataset import MultiBehaviorDataset
from bench.data.layouts.common import dataset_folder
from bench.errors import DataError

TEST_FILE = "tst_int"


def matrix_file(behavior: str) -> str:
    """File name of a behavior's training matrix in this layout."""
    return f"trn_{behavior}"


def read_matrix(path: str | Path, expected_shape: tuple[int, int] | None = None) -> sp.csr_matrix:
    """One behavior's matrix as binary float32 CSR (entry != 0 -> 1), checked to be a 2-D sparse
    matrix of the expected shape."""
    path = Path(path)
    obj = safe_pickle.load(path)
    if not sp.issparse(obj):
        raise DataError(f"{path}: expected a pickled scipy sparse user x item matrix, found "
                        f"{_describe(obj)}; this is not a 'trn_<behavior>' file of the pkef layout")
    if obj.ndim != 2:
        raise DataError(f"{path}: expected a 2-D user x item matrix, found {obj.ndim} dimensions")
    shape = (int(obj.shape[0]), int(obj.shape[1]))
    if expected_shape is not None and shape != tuple(expected_shape):
        raise DataError(f"{path}: matrix has shape {shape[0]:,} x {shape[1]:,}, expected "
                        f"{expected_shape[0]:,} users x {expected_shape[1]:,} items; the file "
                        "belongs to another dataset or version")
    try:
        binary = sp.csr_matrix(obj) != 0
    except Exception as exc:  # malformed internals of an unpickled matrix (bad indptr, ...)
        raise DataError(f"{path}: the sparse matrix is malformed ({exc}); download it again") from None
    out = sp.csr_matrix(binary, dtype=np.float32)
    out.sort_indices()
    return out


def read_test_items(path: str | Path, n_users: int, n_items: int) -> sp.csr_matrix:
    """``tst_int`` as a binary users x items CSR matrix (empty row = not a test user)."""
    path = Path(path)
    obj = safe_pickle.load(path)
    if isinstance(obj, np.ndarray):
        if obj.ndim != 1:
            raise DataError(f"{path}: expected a 1-D sequence with one entry per user, found an "
                            f"array of shape {obj.shape}")
        entries: Sequence[Any] = obj
    elif isinstance(obj, (list, tuple)):
        entries = obj
    else:
        raise DataError(f"{path}: expected a list with one test entry per user (None, an item id "
                        f"or a list of item ids), found {_describe(obj)}")
    if len(entries) != n_users:
        raise DataError(f"{path}: has {len(entries):,} entries but the behavior matrices have "
                        f"{n_users:,} users; tst_int needs exactly one entry per user (None for "
                        "users without a test item)")
    if isinstance(entries, np.ndarray) and np.issubdtype(entries.dtype, np.integer):
        rows = np.arange(n_users, dtype=np.int64)
        cols = entries.astype(np.int64)
    else:
        rows_list: list[int] = []
        cols_list: list[int] = []
        for user, entry in enumerate(entries):
            for item in _entry_items(path, user, entry):
                rows_list.append(user)
                cols_list.append(item)
        rows = np.asarray(rows_list, dtype=np.int64)
        cols = np.asarray(cols_list, dtype=np.int64)
    bad = np.flatnonzero((cols < 0) | (cols >= n_items))
    if len(bad):
        first = int(bad[0])
        raise DataError(f"{path}: user {int(rows[first])} has test item id {int(cols[first])}, out of "
                        f"range 0..{n_items - 1} ({len(bad):,} such entries); the file does not "
                        "match the behavior matrices")
    data = np.ones(len(rows), dtype=np.float32)
    out = sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items), dtype=np.float32)
    out.sum_duplicates()
    out.data[:] = 1.0
    return out


def _entry_items(path: Path, user: int, entry: Any) -> list[int]:
    if entry is None:
        return []
    if _is_int(entry):
        return [int(entry)]
    if isinstance(entry, (list, tuple, np.ndarray)):
        items = list(np.asarray(entry, dtype=object).ravel()) if isinstance(entry, np.ndarray) \
            else list(entry)
        if all(_is_int(i) for i in items):
            return [int(i) for i in items]
    raise DataError(f"{path}: entry of user {user} is {_describe(entry)}; each entry must be None, "
                    "an item id (int) or a list of item ids")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _describe(obj: Any) -> str:
    name = type(obj).__name__
    if isinstance(obj, (list, tuple, dict)):
        return f"a {name} of length {len(obj)}"
    if isinstance(obj, np.ndarray):
        return f"a numpy array of shape {obj.shape} and dtype {obj.dtype}"
    text = repr(obj)
    return f"a {name} ({text[:40]}{'...' if len(text) > 40 else ''})"


def load_pkef(folder: str | Path, behaviors: Sequence[str], name: str | None = None,
              n_users: int | None = None, n_items: int | None = None) -> MultiBehaviorDataset:
    """Read a pkef folder; ``behaviors`` ordered upstream -> target; ``n_users``/``n_items``
    (from the catalog) make a file of another dataset fail with its name."""
    folder, behaviors = dataset_folder(folder, behaviors)
    missing = [b for b in behaviors if not (folder / matrix_file(b)).is_file()]
    test_missing = not (folder / TEST_FILE).is_file()
    if missing or test_missing:
        parts = [f"behavior '{b}' (file {matrix_file(b)})" for b in missing]
        if test_missing:
            parts.append(f"the test split (file {TEST_FILE})")
        raise DataError(f"{folder}: missing {', '.join(parts)}; the folder may be incomplete: the "
                        f"pkef layout needs trn_<behavior> for each of {list(behaviors)} and "
                        f"{TEST_FILE}")
    expected = (n_users, n_items) if n_users is not None and n_items is not None else None
    train: dict[str, sp.csr_matrix] = {}
    for behavior in behaviors:
        train[behavior] = read_matrix(folder / matrix_file(behavior), expected)
    shapes = {matrix_file(b): m.shape for b, m in train.items()}
    if len(set(shapes.values())) != 1:
        listed = ", ".join(f"{f} {s[0]:,} x {s[1]:,}" for f, s in shapes.items())
        raise DataError(f"{folder}: behavior matrices have different shapes ({listed}); all must "
                        "be users x items of the same size (files from different datasets?)")
    users, items = train[behaviors[-1]].shape
    test = read_test_items(folder / TEST_FILE, users, items)
    return MultiBehaviorDataset(name=name or folder.name, behaviors=behaviors, train=train,
                                test=test, source=str(folder))
