"""Metrics a record does not hold, and the seen / novel split, from the ranks stored beside it.

A record keeps HR and NDCG at its evaluation cutoffs; its ranks file (``bench.ranks``) holds the
rank of every test pair, so any metric of ``bench.evaluate.METRICS`` at any cutoff follows, for
all test pairs or for a subset of them.

The seen / novel split. A test pair (user, item) is *seen* when the trial's training input holds
the item under an auxiliary behavior of that user (``seen`` for any auxiliary behavior,
``seen:<behavior>`` for one), else *novel*. Each subset is scored on the full ranking, exactly as
all pairs are (the other test items stay candidates, training target items stay masked): a user
counts in a subset when it holds at least one test item of the subset, and its metric uses only
those items (NDCG's ideal DCG too); users without such an item are left out of the subset, and
how many users each subset has is reported beside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.evaluate import metrics_from_ranks, parse_metric
from bench.ranks import RankTable, RanksProblem, read_ranks

SUBSETS = ("all", "seen", "novel")


class RankCache:
    """Ranks files read once per report; an unreadable one is remembered with its problem."""

    def __init__(self) -> None:
        self._tables: dict[Path, RankTable | None] = {}
        self.problems: dict[Path, str] = {}

    def get(self, record_path: Path) -> RankTable | None:
        record_path = Path(record_path)
        if record_path not in self._tables:
            try:
                self._tables[record_path] = read_ranks(record_path)
            except RanksProblem as err:
                self._tables[record_path] = None
                self.problems[record_path] = str(err)
        return self._tables[record_path]


RANKS = RankCache()


def subset_mask(table: RankTable, subset: str) -> np.ndarray:
    """Which test pairs a subset holds: ``all``, ``seen``, ``novel`` or ``seen:<behavior>``."""
    if subset == "all":
        return np.ones(len(table.users), dtype=bool)
    if subset == "seen":
        return table.seen_any
    if subset == "novel":
        return ~table.seen_any
    if subset.startswith("seen:") and subset[5:] in table.seen:
        return table.seen[subset[5:]]
    raise KeyError(f"unknown subset '{subset}'; use all, seen, novel or seen:<behavior> with one "
                   f"of {sorted(table.seen)}")


@dataclass(frozen=True)
class SubsetScore:
    """Metrics of one record on one subset of its test pairs."""

    values: dict[str, float]       # metric -> mean over the subset's users
    users: int                     # users with at least one test item in the subset
    pairs: int


def subset_score(table: RankTable, selection: str, protocol: str, metrics: list[str],
                 rule: str, subset: str = "all") -> SubsetScore | None:
    """The metrics of ``selection/protocol`` ranks over the pairs of ``subset``; None when the
    table has no such ranks."""
    key = f"{selection}/{protocol}"
    if key not in table.ranks:
        return None
    mask = subset_mask(table, subset)
    users, positions = np.unique(table.users[mask], return_inverse=True)
    by_cutoff: dict[int, list[str]] = {}
    for metric in metrics:
        name, k = parse_metric(metric)
        by_cutoff.setdefault(k, []).append(name)
    values: dict[str, float] = {}
    for k, names in by_cutoff.items():
        per_user = metrics_from_ranks(table.ranks[key][mask], positions, len(users), (k,), rule,
                                      tuple(dict.fromkeys(names)))
        for metric, column in per_user.items():
            values[metric] = float(column.mean()) if len(column) else float("nan")
    return SubsetScore(values, int(len(users)), int(mask.sum()))


def record_metric(path: Path, record: dict[str, Any], metric: str, rule: str,
                  selection: str | None = None, protocol: str = "full") -> float | None:
    """A metric of a record's selection: from the record where it holds it, else from its ranks
    file; None when neither can give it (an older record without ranks)."""
    selection = selection or record["main_selection"]
    block = record["metrics"].get(selection, {})
    entry = block.get(f"{protocol}/{rule}") or block.get(f"{protocol}/default") or {}
    if metric in entry:
        return float(entry[metric])
    table = RANKS.get(path)
    if table is None:
        return None
    score = subset_score(table, selection, protocol, [metric], rule)
    return None if score is None else score.values[metric]
