"""Full-ranking and sampled ranking metrics with per-user values (model-specs §3).

Ranks follow the reference code: candidates are all items minus the user's training target items
(the test items stay in); a test item's 0-based rank is the number of candidates scored higher plus
the number scored equal with a smaller item id (a stable sort on ascending ids).

Every metric is a function of the ranks of a user's held-out items (``metrics_from_ranks``), so
the ranks stored beside a record (``bench.ranks``) give any metric at any cutoff afterwards:
HR@K (a hit among the top K), NDCG@K, Recall@K (hits / held-out items), Precision@K (hits / K) and
MRR@K (1 / (rank + 1) of the first hit within the top K, else 0).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError

RULES = ("default", "paper")
METRICS = ("HR", "NDCG", "Recall", "Precision", "MRR")
RECORD_METRICS = ("HR", "NDCG")       # what records and per-user files hold; the rest from ranks
PROTOCOLS = ("full", "sampled")
ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EvalResult:
    """Metrics averaged over evaluated users, plus the per-user values behind them."""

    split: str
    protocol: str
    rule: str
    ks: tuple[int, ...]
    metrics: dict[str, float]
    users: np.ndarray                      # evaluated user ids, ascending
    per_user: dict[str, np.ndarray]        # metric name -> value per evaluated user
    ranks: np.ndarray = field(repr=False)  # 0-based rank of every (user, held-out item) pair
    pair_users: np.ndarray = field(repr=False)   # each pair's position in ``users``
    pair_items: np.ndarray | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.protocol}/{self.rule}"


def _rows_of(matrix: sp.csr_matrix, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(block row, column) index arrays of the non-zeros of ``matrix[users]``."""
    sub = matrix[users]
    rows = np.repeat(np.arange(len(users)), np.diff(sub.indptr))
    return rows, sub.indices


def _ranks_full(scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """0-based rank of each (row, item): items scored higher, plus equal ones with a smaller id."""
    if scores.device.type == "cpu":
        return torch.from_numpy(_ranks_full_numpy_parallel(scores.numpy(), rows.numpy(),
                                                           items.numpy()))
    target = scores[rows, items].unsqueeze(1)
    candidates = scores if _is_identity(rows) else scores[rows]
    higher = (candidates > target).sum(dim=1)
    at_least = (candidates >= target).sum(dim=1)
    tied = torch.nonzero(at_least - higher > 1).squeeze(1)   # the item itself always counts once
    if len(tied):
        ids = torch.arange(scores.shape[1], device=scores.device)
        equal = candidates[tied] == target[tied]
        higher[tied] += (equal & (ids.unsqueeze(0) < items[tied].unsqueeze(1))).sum(dim=1)
    return higher


def _ranks_full_numpy(scores: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    # numpy's comparisons and boolean row counts are several times faster than torch's on CPU
    target = scores[rows, items][:, None]
    candidates = scores if np.array_equal(rows, np.arange(len(scores))) else scores[rows]
    higher = np.count_nonzero(candidates > target, axis=1)
    at_least = np.count_nonzero(candidates >= target, axis=1)
    tied = np.flatnonzero(at_least - higher > 1)
    if len(tied):
        before = np.arange(scores.shape[1])[None, :] < items[tied][:, None]
        higher[tied] += np.count_nonzero((candidates[tied] == target[tied]) & before, axis=1)
    return higher.astype(np.int64)


def _ranks_full_numpy_parallel(scores: np.ndarray, rows: np.ndarray,
                               items: np.ndarray) -> np.ndarray:
    """The numpy ranking split over torch's CPU threads: numpy's comparison loops release the
    GIL but run on one core each."""
    threads = max(torch.get_num_threads(), 1)
    if threads == 1 or len(rows) < 2 * threads:
        return _ranks_full_numpy(scores, rows, items)
    if not np.array_equal(rows, np.arange(len(scores))):
        scores = scores[rows]            # one row per held-out item (users with several)
    bounds = np.linspace(0, len(items), threads + 1).astype(int)

    def rank_slice(bound: tuple[int, int]) -> np.ndarray:
        a, b = bound
        return _ranks_full_numpy(scores[a:b], np.arange(b - a), items[a:b])
    return np.concatenate(list(_rank_pool(threads).map(rank_slice, zip(bounds[:-1], bounds[1:]))))


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _rank_pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-rank")
    return _POOLS[threads]


def _is_identity(rows: torch.Tensor) -> bool:
    return bool(torch.equal(rows, torch.arange(len(rows), device=rows.device)))


def _ranks_sampled(scores: torch.Tensor, rows: torch.Tensor, items: torch.Tensor,
                   negatives: torch.Tensor) -> torch.Tensor:
    target = scores[rows, items].unsqueeze(1)
    neg_items = negatives[rows]
    neg_scores = torch.gather(scores[rows], 1, neg_items)
    higher = (neg_scores > target) | ((neg_scores == target) & (neg_items < items.unsqueeze(1)))
    return higher.sum(dim=1)


def sample_negatives(excluded: sp.csr_matrix, users: np.ndarray, n: int,
                     rng: np.random.Generator) -> np.ndarray:
    """``n`` items per user drawn uniformly (with repeats) from items outside ``excluded[user]``."""
    n_items = excluded.shape[1]
    sub = excluded[users].tocsr()
    keys = np.sort(np.repeat(np.arange(len(users), dtype=np.int64), np.diff(sub.indptr)) * n_items
                   + sub.indices)
    out = rng.integers(0, n_items, size=(len(users), n))
    full = np.diff(sub.indptr) >= n_items
    if full.any():
        raise ConfigError(f"{int(full.sum())} user(s) have no item left to sample negatives from")
    for _ in range(1000):
        flat = np.arange(len(users))[:, None] * n_items + out
        bad = np.isin(flat, keys)
        if not bad.any():
            return out
        out[bad] = rng.integers(0, n_items, size=int(bad.sum()))
    raise ConfigError("could not sample negatives: users have almost every item excluded")


def parse_metric(name: str) -> tuple[str, int]:
    """``"Recall@20"`` -> ``("Recall", 20)``; an unknown name or cutoff says what is allowed."""
    base, _, cutoff = name.partition("@")
    if base not in METRICS or not cutoff.isdigit() or int(cutoff) < 1:
        raise ConfigError(f"metric '{name}': write NAME@K with NAME one of {', '.join(METRICS)} "
                          "and K a positive integer (e.g. HR@10, Recall@20, MRR@5)")
    return base, int(cutoff)


def metrics_from_ranks(ranks: np.ndarray, pair_users: np.ndarray, n_users: int,
                       ks: Sequence[int], rule: str,
                       names: Sequence[str] = RECORD_METRICS) -> dict[str, np.ndarray]:
    """Per-user metrics ``names`` at each cutoff of ``ks`` from the ranks of the held-out items.

    ``pair_users`` maps each rank to its user's position (0..n_users-1); every user must hold at
    least one item. ``default``: HR = any hit, NDCG = DCG / IDCG@min(K, #held-out).
    ``paper``: the reference code's sums over hits for HR and NDCG (a user's HR can exceed 1).
    Recall, Precision and MRR read the same under both rules: hits / #held-out, hits / K, and
    the reciprocal of the best rank when it lies within the top K (else 0).
    """
    if rule not in RULES:
        raise ConfigError(f"unknown metric rule '{rule}'; choose one of {RULES}")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    ranks = np.asarray(ranks, dtype=np.int64)
    pair_users = np.asarray(pair_users, dtype=np.int64)
    gain = 1.0 / np.log2(ranks.astype(np.float64) + 2.0)
    n_held = np.bincount(pair_users, minlength=n_users)
    best = np.full(n_users, np.iinfo(np.int64).max)
    np.minimum.at(best, pair_users, ranks)
    out = {}
    for k in ks:
        hit = ranks < k
        hits = np.bincount(pair_users, weights=hit, minlength=n_users)
        for name in names:
            if name == "HR":
                value = hits if rule == "paper" else (hits > 0).astype(np.float64)
            elif name == "NDCG":
                value = np.bincount(pair_users, weights=np.where(hit, gain, 0.0),
                                    minlength=n_users)
                if rule != "paper":
                    ideal = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
                    value = value / ideal[np.minimum(n_held, k) - 1]
            elif name == "Recall":
                value = hits / n_held
            elif name == "Precision":
                value = hits / k
            else:
                value = np.where(best < k, 1.0 / (best.astype(np.float64) + 1.0), 0.0)
            out[f"{name}@{k}"] = value
    return out


def _release_cached_memory(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def _masked_for(dataset: MultiBehaviorDataset, split: str) -> sp.csr_matrix:
    masked = dataset.train[dataset.target]
    if split == "test" and dataset.valid is not None:
        masked = (masked + dataset.valid).tocsr()
    return masked


@torch.no_grad()
def evaluate_all(score_fn: ScoreFn, dataset: MultiBehaviorDataset, split: str = "test",
                 ks: Sequence[int] = (10,), protocols: Sequence[str] = ("full",),
                 rules: Sequence[str] = RULES, block_size: int = 2048,
                 device: torch.device | str = "cpu", n_negatives: int = 99,
                 seed: int = 0) -> dict[str, EvalResult]:
    """Every (protocol, rule) result from one scoring pass, keyed ``protocol/rule``.

    ``score_fn(users)`` returns target scores [len(users), n_items]. Candidates exclude the
    training target items, and also the validation items when the test split is evaluated (they
    are known interactions then). The sampled protocol ranks each held-out item against
    ``n_negatives`` items drawn (seeded) outside the user's training target and held-out items."""
    for protocol in protocols:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"unknown protocol '{protocol}'; choose one of {PROTOCOLS}")
    for rule in rules:
        if rule not in RULES:
            raise ConfigError(f"unknown metric rule '{rule}'; choose one of {RULES}")
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] < 1:
        raise ConfigError(f"cutoffs K must be positive integers, got {ks}")
    held = dataset.split(split)
    masked = _masked_for(dataset, split)
    excluded = (masked + held).tocsr() if "sampled" in protocols else None
    users = dataset.eval_users(split)
    rng = np.random.default_rng(seed)
    ranks: dict[str, list[np.ndarray]] = {p: [] for p in protocols}
    pair_users, pair_items = [], []
    start = 0
    while start < len(users):
        block = users[start:start + block_size]
        try:
            scores = score_fn(torch.as_tensor(block, device=device)).float()
        except torch.cuda.OutOfMemoryError:
            if block_size == 1:
                raise
            block_size = max(block_size // 2, 1)     # retry the same users in smaller blocks
            _release_cached_memory(device)
            continue
        if scores.shape != (len(block), dataset.n_items):
            raise ConfigError(f"score function returned shape {tuple(scores.shape)}, expected "
                              f"({len(block)}, {dataset.n_items})")
        mrows, mcols = _rows_of(masked, block)
        scores[torch.as_tensor(mrows, device=device), torch.as_tensor(mcols, device=device)] = -torch.inf
        hrows, hitems = _rows_of(held, block)
        rows_t = torch.as_tensor(hrows, device=device)
        items_t = torch.as_tensor(hitems.astype(np.int64), device=device)
        # A NaN score never outranks anything (comparisons with NaN are false); a held-out item
        # scored NaN gets the worst rank. This costs no pass over the block, unlike nan_to_num.
        lost = torch.isnan(scores[rows_t, items_t])
        for protocol in protocols:
            if protocol == "full":
                block_ranks = _ranks_full(scores, rows_t, items_t)
                worst = dataset.n_items
            else:
                negatives = torch.as_tensor(sample_negatives(excluded, block, n_negatives, rng),
                                            device=device)
                block_ranks = _ranks_sampled(scores, rows_t, items_t, negatives)
                worst = n_negatives
            if bool(lost.any()):
                block_ranks = torch.where(lost, torch.full_like(block_ranks, worst), block_ranks)
            ranks[protocol].append(block_ranks.cpu().numpy())
        pair_users.append(hrows + start)
        pair_items.append(hitems.astype(np.int64))
        start += len(block)
    pairs = np.concatenate(pair_users) if pair_users else np.zeros(0, dtype=np.int64)
    items = np.concatenate(pair_items) if pair_items else np.zeros(0, dtype=np.int64)
    out = {}
    for protocol in protocols:
        r = np.concatenate(ranks[protocol]) if ranks[protocol] else np.zeros(0, dtype=np.int64)
        for rule in rules:
            per_user = metrics_from_ranks(r, pairs, len(users), ks, rule)
            metrics = {name: float(values.mean()) if len(values) else float("nan")
                       for name, values in per_user.items()}
            out[f"{protocol}/{rule}"] = EvalResult(split=split, protocol=protocol, rule=rule,
                                                   ks=ks, metrics=metrics, users=users,
                                                   per_user=per_user, ranks=r, pair_users=pairs,
                                                   pair_items=items)
    return out


def evaluate(score_fn: ScoreFn, dataset: MultiBehaviorDataset, split: str = "test",
             ks: Sequence[int] = (10,), rule: str = "default", protocol: str = "full",
             block_size: int = 2048, device: torch.device | str = "cpu",
             n_negatives: int = 99, seed: int = 0) -> EvalResult:
    """One protocol under one rule (see ``evaluate_all``)."""
    results = evaluate_all(score_fn, dataset, split, ks, (protocol,), (rule,), block_size, device,
                           n_negatives, seed)
    return results[f"{protocol}/{rule}"]
