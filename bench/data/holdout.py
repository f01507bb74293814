"""A validation split for the honest protocol.

The TF-family releases have no validation split, so choosing epochs or hyper-parameters on the
test items leaks them. ``with_validation_holdout`` moves one training target interaction per user
into ``valid``, chosen by a seeded generator, leaving test untouched. Only users with at least two
training target interactions give one up, so nobody loses their last target interaction (which the
target-behavior losses and the samplers need). Auxiliary behaviors are not touched: the holdout
hides a target interaction, and keeping e.g. the matching cart is what the upstream signal is for.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bench.data.dataset import MultiBehaviorDataset


def with_validation_holdout(dataset: MultiBehaviorDataset, seed: int) -> MultiBehaviorDataset:
    """A copy with one target interaction per eligible user moved from train to ``valid``;
    the dataset itself when it already has a validation split. Same seed, same split."""
    if dataset.valid is not None:
        return dataset
    target = dataset.train[dataset.target].tocsr(copy=True)
    target.sort_indices()
    counts = np.diff(target.indptr)
    users = np.flatnonzero(counts >= 2)
    rng = np.random.default_rng(seed)
    offsets = np.floor(rng.random(len(users)) * counts[users]).astype(np.int64)
    positions = target.indptr[users] + offsets
    items = target.indices[positions]
    valid = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)),
                          shape=target.shape, dtype=np.float32)
    keep = np.ones(target.nnz, dtype=bool)
    keep[positions] = False
    rows = np.repeat(np.arange(target.shape[0]), counts)
    remaining = sp.csr_matrix((target.data[keep], (rows[keep], target.indices[keep])),
                              shape=target.shape, dtype=np.float32)
    train = dict(dataset.train)
    train[dataset.target] = remaining
    return dataset.with_splits(train=train, valid=valid, suffix=f"+holdout(seed={seed})")
