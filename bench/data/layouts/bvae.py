"""Layout ``bvae``: the text files of the BVAE (RecSys'23) releases, e.g. JD.

A folder holds, per behavior, ``<prefix>_train``, ``<prefix>_valid`` and ``<prefix>_test``; each
line is ``user item`` with 1-based ids; the target behavior's prefix is ``target``. A file may be
empty (a behavior seen only in validation or test).

The files split every behavior by period. The training input is the ``_train`` files of every
behavior unless ``aux_periods`` (``bench.data.periods``) adds the auxiliary behaviors' ``_valid``
(``train+valid``) or ``_valid`` and ``_test`` files (``all``): a model that reads an auxiliary
behavior's test period sees the test period coming. The target's valid pairs become
``dataset.valid`` (``None`` if that file is empty) and its test pairs ``dataset.test``; they never
enter training.
Users/items = the largest id seen in any file, unless the catalog gives the sizes.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Mapping, NoReturn, Sequence

import numpy as np
import scipy.sparse as sp

from bench.data.dataset import MultiBehaviorDataset
from bench.data.layouts.common import dataset_folder
from bench.data.periods import DEFAULT_AUX_PERIODS, auxiliary_splits
from bench.errors import DataError

SPLITS = ("train", "valid", "test")
TARGET_PREFIX = "target"


def default_prefixes(behaviors: Sequence[str]) -> dict[str, str]:
    """Auxiliary behaviors use their own name as file prefix, the target uses ``target``."""
    behaviors = tuple(behaviors)
    return {b: (TARGET_PREFIX if i == len(behaviors) - 1 else b) for i, b in enumerate(behaviors)}


def read_pairs(path: str | Path) -> np.ndarray:
    """The ``user item`` lines of one file as an (n, 2) int64 array of 0-based ids."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file of 'user item' lines (non-ASCII byte at offset "
                        f"{exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not text.strip():
        return np.zeros((0, 2), dtype=np.int64)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pairs = np.loadtxt(io.StringIO(text), dtype=np.int64, comments=None, ndmin=2)
    except (ValueError, OverflowError):
        _raise_bad_line(path, text)
    if pairs.shape[1] != 2 or pairs.min() < 1:
        _raise_bad_line(path, text)
    return pairs - 1


def _raise_bad_line(path: Path, text: str) -> NoReturn:
    """Rescan line by line (slow path, only on failure) to name the first bad line."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        tokens = line.split()
        if len(tokens) != 2 or not all(t.isdigit() for t in tokens):
            raise DataError(f"{path}, line {number}: expected 'user item' (two positive integers, "
                            f"1-based), found {line[:60]!r}")
        if min(int(t) for t in tokens) < 1:
            raise DataError(f"{path}, line {number}: id 0 in {line[:60]!r}; the bvae layout uses "
                            "1-based ids (fix the file or convert it to the csv layout)")
    raise DataError(f"{path}: malformed 'user item' lines")  # pragma: no cover - defensive


def load_bvae(folder: str | Path, behaviors: Sequence[str],
              prefixes: Mapping[str, str] | None = None, name: str | None = None,
              n_users: int | None = None, n_items: int | None = None,
              aux_periods: str = DEFAULT_AUX_PERIODS) -> MultiBehaviorDataset:
    """Read a bvae folder; ``behaviors`` upstream -> target; ``prefixes`` maps each behavior to
    its file prefix (default: own name, ``target`` for the target); ``aux_periods`` which periods
    of the auxiliary behaviors are training input (default: the training period only)."""
    aux_splits = auxiliary_splits(aux_periods)
    folder, behaviors = dataset_folder(folder, behaviors)
    prefixes = dict(prefixes) if prefixes is not None else default_prefixes(behaviors)
    unknown = [b for b in behaviors if b not in prefixes]
    if unknown:
        raise DataError(f"{folder}: no file prefix given for behavior(s) {unknown}")
    files = {(b, s): folder / f"{prefixes[b]}_{s}" for b in behaviors for s in SPLITS}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise DataError(f"{folder}: missing file(s) {missing}; the folder may be incomplete: the "
                        "bvae layout needs <prefix>_train, _valid and _test for every behavior "
                        "(an empty file is fine)")
    pairs = {key: read_pairs(path) for key, path in files.items()}
    users = _size(pairs, 0, n_users, "user", folder, files)
    items = _size(pairs, 1, n_items, "item", folder, files)
    shape = (users, items)
    target = behaviors[-1]
    train = {}
    for behavior in behaviors:
        splits = ("train",) if behavior == target else aux_splits
        stacked = np.concatenate([pairs[(behavior, s)] for s in splits])
        train[behavior] = _matrix(stacked, shape)
    valid_pairs = pairs[(target, "valid")]
    valid = _matrix(valid_pairs, shape) if len(valid_pairs) else None
    test = _matrix(pairs[(target, "test")], shape)
    return MultiBehaviorDataset(name=name or folder.name, behaviors=behaviors, train=train,
                                test=test, valid=valid, source=str(folder),
                                aux_periods=aux_periods)


def _size(pairs: dict, column: int, given: int | None, what: str, folder: Path,
          files: dict) -> int:
    largest = {key: int(p[:, column].max()) + 1 for key, p in pairs.items() if len(p)}
    seen = max(largest.values(), default=0)
    if given is None:
        if seen == 0:
            raise DataError(f"{folder}: all files are empty; no interactions to load")
        return seen
    if seen > given:
        key = max(largest, key=largest.get)
        raise DataError(f"{files[key]}: {what} id {seen} is out of range: the dataset has "
                        f"{given:,} {what}s (ids 1..{given}); the file belongs to another dataset")
    return given


def _matrix(pairs: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    data = np.ones(len(pairs), dtype=np.float32)
    out = sp.csr_matrix((data, (pairs[:, 0], pairs[:, 1])), shape=shape, dtype=np.float32)
    out.sum_duplicates()
    out.data[:] = 1.0
    return out
