"""The rank of every held-out (user, item) pair of a trial, stored beside its record.

``<run id>.ranks.csv.gz`` holds one row per test pair: ``user``, ``item``, one ``seen.<behavior>``
column per auxiliary behavior (1 when the user has the item under that behavior in the trial's
training input) and one ``<selection>/<protocol>`` column per reported test evaluation with the
pair's 0-based rank (``bench.evaluate``: ties broken by ascending item id). Every ranking metric
at every cutoff, for every user and for any subset of the pairs (the seen/novel split of
``bench.report.split``), follows from it with ``bench.evaluate.metrics_from_ranks``; records keep
HR and NDCG at their evaluation cutoffs as before.
"""
from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from bench.data.dataset import MultiBehaviorDataset
from bench.evaluate import EvalResult
from bench.records import atomic_write_bytes

SEEN_PREFIX = "seen."


def ranks_path(record_path: Path) -> Path:
    return Path(record_path).with_name(Path(record_path).name.replace(".json", ".ranks.csv.gz"))


def seen_flags(dataset: MultiBehaviorDataset, users: np.ndarray,
               items: np.ndarray) -> dict[str, np.ndarray]:
    """Per auxiliary behavior: whether each (user, item) pair is in its training matrix."""
    flags = {}
    for behavior in dataset.behaviors[:-1]:
        matrix = dataset.train[behavior]
        flags[behavior] = np.asarray(matrix[users, items]).ravel() > 0 if len(users) else \
            np.zeros(0, dtype=bool)
    return flags


def ranks_table(reported: Mapping[str, Mapping[str, EvalResult]],
                dataset: MultiBehaviorDataset) -> dict[str, np.ndarray] | None:
    """The columns of a trial's ranks file from its reported test evaluations (the validation
    selection's own split is left out); None when there is nothing to store."""
    columns: dict[str, np.ndarray] = {}
    pairs = None
    for selection, results in reported.items():
        if selection == "valid":
            continue
        for label, result in results.items():
            protocol, rule = label.split("/")
            if result.pair_items is None or f"{selection}/{protocol}" in columns:
                continue
            users = result.users[result.pair_users]
            if pairs is None:
                pairs = (users, result.pair_items)
            elif not (np.array_equal(pairs[0], users) and np.array_equal(pairs[1],
                                                                          result.pair_items)):
                raise ValueError(f"{selection}/{label}: held-out pairs differ from the other "
                                 "evaluations of the trial")
            columns[f"{selection}/{protocol}"] = np.asarray(result.ranks, dtype=np.int64)
    if pairs is None:
        return None
    table = {"user": pairs[0].astype(np.int64), "item": pairs[1].astype(np.int64)}
    for behavior, flag in seen_flags(dataset, *pairs).items():
        table[SEEN_PREFIX + behavior] = flag.astype(np.int64)
    table.update(columns)
    return table


def ranks_csv(table: Mapping[str, np.ndarray]) -> bytes:
    names = list(table)
    stacked = np.column_stack([np.asarray(table[n], dtype=np.int64) for n in names])
    text = io.StringIO()
    text.write(",".join(names) + "\n")
    np.savetxt(text, stacked, fmt="%d", delimiter=",")
    return gzip.compress(text.getvalue().encode(), mtime=0)


def write_ranks(record_path: Path, table: Mapping[str, np.ndarray]) -> Path:
    path = ranks_path(record_path)
    atomic_write_bytes(path, ranks_csv(table))
    return path


@dataclass
class RankTable:
    """A trial's stored ranks: pair columns and the rank columns by ``selection/protocol``."""

    users: np.ndarray
    items: np.ndarray
    seen: dict[str, np.ndarray]          # auxiliary behavior -> bool per pair
    ranks: dict[str, np.ndarray]         # "best_test/full" -> rank per pair

    @property
    def seen_any(self) -> np.ndarray:
        if not self.seen:
            return np.zeros(len(self.users), dtype=bool)
        return np.logical_or.reduce(list(self.seen.values()))


class RanksProblem(ValueError):
    """A ranks file that cannot be used (the message says why)."""


def read_ranks(record_path: Path) -> RankTable | None:
    """The ranks stored beside a record; None when the record has none (older records)."""
    path = ranks_path(record_path)
    if not path.exists():
        return None
    try:
        text = gzip.decompress(path.read_bytes()).decode("ascii")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        raise RanksProblem(f"{path} is not a whole gzip-compressed table ({err})") from None
    header, _, body = text.partition("\n")
    names = header.strip().split(",")
    if names[:2] != ["user", "item"]:
        raise RanksProblem(f"{path} is not a ranks table (its header must start 'user,item')")
    try:
        data = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as err:
        raise RanksProblem(f"{path} has a row that is not whole numbers ({err})") from None
    if data.size == 0:
        data = np.zeros((0, len(names)), dtype=np.int64)
    if data.shape[1] != len(names):
        raise RanksProblem(f"{path}: rows of {data.shape[1]} values under a header of "
                           f"{len(names)} columns")
    columns = {n: data[:, i] for i, n in enumerate(names)}
    seen = {n[len(SEEN_PREFIX):]: columns[n] > 0 for n in names if n.startswith(SEEN_PREFIX)}
    ranks = {n: columns[n] for n in names[2:] if not n.startswith(SEEN_PREFIX)}
    return RankTable(columns["user"], columns["item"], seen, ranks)
