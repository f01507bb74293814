"""Layout ``csv``: a plain layout for users' own data.

Files (delimiter from the extension: ``.csv`` comma, ``.tsv``/``.tab`` tab; or given):

- train: a header naming at least ``user``, ``item`` and ``behavior`` (other columns, such as a
  timestamp, are ignored), then one interaction per row;
- test: a header naming ``user`` and ``item``; each row is one held-out target interaction;
- valid (optional): like test.

A test or valid file may also name a ``behavior`` column: its target rows are the held-out split,
its other rows that behavior's interactions of the validation or test period. Those enter the
training input only when ``aux_periods`` says so (``bench.data.periods``; default: the training
file alone), and such a dataset records which periods it read.

The behavior order (upstream -> target) is given by the user, since a table cannot say it; every
ordered behavior must occur in train and every behavior in train must be ordered, so a typo fails
loudly instead of silently dropping data. User and item ids are arbitrary strings (compared as
written); they are mapped to contiguous indices in sorted order (numeric order when all ids are
integers), so the same files always give the same matrices. Test/valid ids must occur in train.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.data.dataset import MultiBehaviorDataset
from bench.data.periods import DEFAULT_AUX_PERIODS, auxiliary_splits
from bench.errors import DataError

DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
TRAIN_COLUMNS = ("user", "item", "behavior")
SPLIT_COLUMNS = ("user", "item")


@dataclass(frozen=True)
class IdMaps:
    """Original ids in index order: ``users[i]`` is the id of row ``i``."""

    users: tuple[str, ...]
    items: tuple[str, ...]


def delimiter_for(path: Path, delimiter: str | None) -> str:
    """The given delimiter, else the one the file extension implies."""
    if delimiter:
        return "\t" if delimiter in ("\\t", "tab") else delimiter
    try:
        return DELIMITERS[path.suffix.lower()]
    except KeyError:
        raise DataError(f"{path}: cannot tell the delimiter from the extension "
                        f"'{path.suffix}'; name the file .csv or .tsv or pass --delimiter") from None


def read_table(path: str | Path, columns: Sequence[str], delimiter: str | None = None) -> pd.DataFrame:
    """The named columns of a delimited file with a header, as stripped strings."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    sep = delimiter_for(path, delimiter)
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, engine="c",
                            skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; it needs a header naming "
                        f"{', '.join(columns)} and at least one row") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse as a {_sep_name(sep)}-separated table: "
                        f"{str(exc).strip().splitlines()[-1]}") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; the header is "
                        f"{list(frame.columns)}, it must name {list(columns)} "
                        f"({_sep_name(sep)}-separated)")
    if frame.empty:
        raise DataError(f"{path}: the file has a header but no rows")
    frame = frame[list(columns)].apply(lambda col: col.str.strip())
    empty = frame.eq("").any(axis=1).to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DataError(f"{path}, line {row + 2}: empty value in column(s) "
                        f"{[c for c in columns if frame.iloc[row][c] == '']}")
    return frame


def _sep_name(sep: str) -> str:
    return {",": "comma", "\t": "tab", ";": "semicolon"}.get(sep, repr(sep))


def _sorted_ids(values: np.ndarray) -> np.ndarray:
    unique = np.unique(values.astype(str))
    if all(v.isdigit() for v in unique):
        order = sorted(range(len(unique)), key=lambda i: (int(unique[i]), unique[i]))
        unique = unique[order]
    return unique


def _index(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    lookup = pd.Index(ids)
    return lookup.get_indexer(values)


def load_csv_with_ids(train: str | Path, test: str | Path, behaviors: Sequence[str],
                      valid: str | Path | None = None, delimiter: str | None = None,
                      name: str | None = None, aux_periods: str = DEFAULT_AUX_PERIODS
                      ) -> tuple[MultiBehaviorDataset, IdMaps]:
    """Read the csv layout; also return the original ids so results can be mapped back."""
    aux_splits = auxiliary_splits(aux_periods)
    train, test = Path(train), Path(test)
    behaviors = tuple(b.strip() for b in behaviors)
    if not behaviors or not all(behaviors):
        raise DataError(f"{train}: no behavior order given; pass --behaviors a,b,target "
                        "(upstream -> target)")
    frame = read_table(train, TRAIN_COLUMNS, delimiter)
    present = set(frame["behavior"].unique())
    unordered = sorted(present - set(behaviors))
    if unordered:
        raise DataError(f"{train}: behavior(s) {unordered} occur in the file but not in the given "
                        f"order {list(behaviors)}; add them to --behaviors (upstream -> target)")
    absent = [b for b in behaviors if b not in present]
    if absent:
        raise DataError(f"{train}: ordered behavior(s) {absent} have no rows in the file (it has "
                        f"{sorted(present)}); fix --behaviors or the file")
    user_ids = _sorted_ids(frame["user"].to_numpy())
    item_ids = _sorted_ids(frame["item"].to_numpy())
    shape = (len(user_ids), len(item_ids))
    rows = _index(user_ids, frame["user"].to_numpy())
    cols = _index(item_ids, frame["item"].to_numpy())
    kinds = frame["behavior"].to_numpy()
    matrices = {b: _matrix(rows[kinds == b], cols[kinds == b], shape) for b in behaviors}
    test_matrix, test_aux = _split(test, user_ids, item_ids, delimiter, behaviors)
    valid_matrix, valid_aux = (_split(Path(valid), user_ids, item_ids, delimiter, behaviors)
                               if valid else (None, {}))
    later = {"valid": valid_aux, "test": test_aux}
    for split in aux_splits[1:]:
        for behavior, extra in later[split].items():
            matrices[behavior] = _matrix(*_nonzeros(matrices[behavior] + extra), shape)
    has_periods = any(later.values())
    dataset = MultiBehaviorDataset(name=name or train.parent.name or train.stem,
                                   behaviors=behaviors, train=matrices, test=test_matrix,
                                   valid=valid_matrix, source=str(train),
                                   aux_periods=aux_periods if has_periods else None)
    return dataset, IdMaps(users=tuple(user_ids.tolist()), items=tuple(item_ids.tolist()))


def load_csv(train: str | Path, test: str | Path, behaviors: Sequence[str],
             valid: str | Path | None = None, delimiter: str | None = None,
             name: str | None = None, aux_periods: str = DEFAULT_AUX_PERIODS
             ) -> MultiBehaviorDataset:
    """Read the csv layout (see the module docstring)."""
    return load_csv_with_ids(train, test, behaviors, valid, delimiter, name, aux_periods)[0]


def _nonzeros(matrix: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    coo = sp.coo_matrix(matrix)
    return coo.row, coo.col


def _has_behavior_column(path: Path, delimiter: str | None) -> bool:
    sep = delimiter_for(path, delimiter)
    try:
        header = pd.read_csv(path, sep=sep, dtype=str, nrows=0, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        return False             # read_table names what is wrong with the file
    return "behavior" in [str(c).strip().lower() for c in header.columns]


def _split(path: Path, user_ids: np.ndarray, item_ids: np.ndarray, delimiter: str | None,
           behaviors: Sequence[str]) -> tuple[sp.csr_matrix, dict[str, sp.csr_matrix]]:
    """The held-out target pairs of a test/valid file, and, where the file has a ``behavior``
    column, the auxiliary behaviors' pairs of that period (behavior -> matrix; empty ones left
    out)."""
    if not (path.is_file() and _has_behavior_column(path, delimiter)):
        return _pairs_matrix(read_table(path, SPLIT_COLUMNS, delimiter), path, user_ids,
                             item_ids), {}
    frame = read_table(path, (*SPLIT_COLUMNS, "behavior"), delimiter)
    kinds = frame["behavior"].to_numpy()
    unknown = sorted(set(kinds) - set(behaviors))
    if unknown:
        raise DataError(f"{path}: column 'behavior' has value(s) {unknown} outside the behavior "
                        f"order {list(behaviors)}; fix the file or --behaviors")
    target = behaviors[-1]
    held = _pairs_matrix(frame[kinds == target], path, user_ids, item_ids)
    aux = {}
    for behavior in behaviors[:-1]:
        rows = frame[kinds == behavior]
        if len(rows):
            aux[behavior] = _pairs_matrix(rows, path, user_ids, item_ids)
    if held.nnz == 0:
        raise DataError(f"{path}: no row of the target behavior '{target}'; the file must hold "
                        "the held-out target interactions")
    return held, aux


def _pairs_matrix(frame: pd.DataFrame, path: Path, user_ids: np.ndarray,
                  item_ids: np.ndarray) -> sp.csr_matrix:
    rows = _index(user_ids, frame["user"].to_numpy())
    cols = _index(item_ids, frame["item"].to_numpy())
    for what, idx, column in (("user", rows, "user"), ("item", cols, "item")):
        unknown = np.flatnonzero(idx < 0)
        if len(unknown):
            first = int(unknown[0])
            line = int(frame.index[first]) + 2
            raise DataError(f"{path}, line {line}: {what} '{frame[column].iloc[first]}' does "
                            f"not occur in the training file ({len(unknown):,} unknown {what} "
                            f"row(s)); a model can only rank known users and items")
    return _matrix(rows, cols, (len(user_ids), len(item_ids)))


def _matrix(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    data = np.ones(len(rows), dtype=np.float32)
    out = sp.csr_matrix((data, (rows, cols)), shape=shape, dtype=np.float32)
    out.sum_duplicates()
    out.data[:] = 1.0
    return out
