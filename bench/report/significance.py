"""Significance tests behind a table's star: over runs, and over users.

* Over runs (the paper's star): run *i* of every model shares its random streams (initialization
  aside from the model, sampling, evaluation), so runs pair by index; ``paired`` is a paired t-test
  on the run-matched values, ``welch`` Welch's unequal-variance t-test on all values of each side.
* Over users: for the runs both models have, each user's per-user value (e.g. NDCG@10) is averaged
  over those runs, then the two models are compared user by user with a paired test
  (``wilcoxon`` signed-rank, or ``ttest``, a paired t-test). This has far more power than 5 runs.

Every test is two-sided. A test that cannot be computed (too few runs, no per-user files, no
difference at all) gives ``p = None`` with the reason, never a made-up value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import stats

SEED_TESTS = {"paired": "paired t-test over runs, paired by run index",
              "welch": "Welch's t-test over runs"}
USER_TESTS = {"wilcoxon": "Wilcoxon signed-rank test over users, each user's values averaged "
                          "over the run-matched records",
              "ttest": "paired t-test over users, each user's values averaged over the "
                       "run-matched records"}


@dataclass(frozen=True)
class Significance:
    test: str
    p: float | None
    n: int
    statistic: float | None = None
    why: str = ""

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p is not None and self.p < alpha

    def format_p(self) -> str:
        if self.p is None:
            return f"n/a ({self.why})" if self.why else "n/a"
        return f"{self.p:.2g}" if self.p >= 1e-4 else f"{self.p:.1e}"


def seed_test(a: Mapping[int, float], b: Mapping[int, float], kind: str = "paired") -> Significance:
    """Two-sided test of the runs of ``a`` against those of ``b`` (dicts run index -> value)."""
    if kind not in SEED_TESTS:
        raise ValueError(f"unknown seed test {kind!r}; use one of {list(SEED_TESTS)}")
    if kind == "paired":
        runs = sorted(set(a) & set(b))
        if len(runs) < 2:
            return Significance(kind, None, len(runs), why=f"{len(runs)} paired run(s)")
        x = np.array([a[r] for r in runs])
        y = np.array([b[r] for r in runs])
        if np.allclose(x - y, (x - y)[0]):
            if np.allclose(x, y):
                return Significance(kind, 1.0, len(runs), 0.0, why="identical values")
            return Significance(kind, None, len(runs), why="constant difference")
        res = stats.ttest_rel(x, y)
        return Significance(kind, float(res.pvalue), len(runs), float(res.statistic))
    x = np.array(list(a.values()), dtype=float)
    y = np.array(list(b.values()), dtype=float)
    if len(x) < 2 or len(y) < 2:
        return Significance(kind, None, min(len(x), len(y)), why="fewer than 2 runs on a side")
    if np.var(x) == 0 and np.var(y) == 0:
        if np.mean(x) == np.mean(y):
            return Significance(kind, 1.0, min(len(x), len(y)), 0.0, why="identical values")
        return Significance(kind, None, min(len(x), len(y)), why="no variance")
    res = stats.ttest_ind(x, y, equal_var=False)
    return Significance(kind, float(res.pvalue), min(len(x), len(y)), float(res.statistic))


def user_values(per_run: Mapping[int, tuple[np.ndarray, np.ndarray]],
                runs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(users, values averaged over ``runs``) for the users present in every one of those runs."""
    users = None
    for r in runs:
        ids = per_run[r][0]
        users = ids if users is None else np.intersect1d(users, ids)
    users = np.unique(users)
    total = np.zeros(len(users))
    for r in runs:
        ids, vals = per_run[r]
        order = np.argsort(ids, kind="stable")
        pos = np.searchsorted(ids[order], users)
        total += vals[order][pos]
    return users, total / len(runs)


def user_test(a: Mapping[int, tuple[np.ndarray, np.ndarray]],
              b: Mapping[int, tuple[np.ndarray, np.ndarray]], kind: str = "wilcoxon") -> Significance:
    """Paired two-sided test over users of two models' run-matched per-user values."""
    if kind not in USER_TESTS:
        raise ValueError(f"unknown user test {kind!r}; use one of {list(USER_TESTS)}")
    runs = sorted(set(a) & set(b))
    if not runs:
        return Significance(kind, None, 0, why="no run-matched per-user values")
    users_a, x = user_values(a, runs)
    users_b, y = user_values(b, runs)
    common, ia, ib = np.intersect1d(users_a, users_b, return_indices=True)
    x, y = x[ia], y[ib]
    if len(common) < 2:
        return Significance(kind, None, len(common), why="fewer than 2 common users")
    diff = x - y
    if np.all(diff == 0):
        return Significance(kind, 1.0, len(common), 0.0, why="identical values")
    if kind == "wilcoxon":
        res = stats.wilcoxon(x, y)
    else:
        if np.allclose(diff, diff[0]):
            return Significance(kind, None, len(common), why="constant difference")
        res = stats.ttest_rel(x, y)
    return Significance(kind, float(res.pvalue), len(common), float(res.statistic))
