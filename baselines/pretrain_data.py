"""The data side of the build-time pretraining (``baselines.pretrain``): its holdout and its sampling.

Self-contained on purpose: the pretraining runs inside an encoder's constructor, before and apart
from the suite's trainer, so it draws its own samples from a CPU ``torch.Generator`` (derived from
the encoder's init generator) and hands index tensors to the model's device. Same generator, same
samples, on any device.

Holdout rule (the early stopping's validation): of the pretraining behavior's training matrix, one
interaction per user with at least two is held out, chosen uniformly by the generator; users with a
single interaction keep it (their only positive). The pretraining trains on the rest and never sees
the dataset's test (or validation) split, which are not part of the training matrices.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from bench.errors import ConfigError

Triples = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def split_holdout(matrix: sp.spmatrix,
                  generator: torch.Generator) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(train, held-out) binary user x item matrices: one interaction held out per user with at
    least two (see the module docstring)."""
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    m.sort_indices()
    counts = np.diff(m.indptr)
    eligible = np.flatnonzero(counts >= 2)
    draws = torch.rand(len(eligible), generator=generator, dtype=torch.float64).numpy()
    positions = m.indptr[eligible] + np.minimum(
        np.floor(draws * counts[eligible]).astype(np.int64), counts[eligible] - 1)
    held = sp.csr_matrix((np.ones(len(eligible), dtype=np.float32),
                          (eligible, m.indices[positions])), shape=m.shape)
    keep = np.ones(m.nnz, dtype=bool)
    keep[positions] = False
    owners = np.repeat(np.arange(m.shape[0]), counts)
    train = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32),
                           (owners[keep], m.indices[keep])), shape=m.shape)
    return train, held


class UserItems:
    """A binary user x item matrix as CPU tensors: each user's items and a membership test."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        m = sp.csr_matrix(matrix)
        m.sort_indices()
        self.n_items = m.shape[1]
        self.indptr = torch.as_tensor(m.indptr.astype(np.int64))
        self.indices = torch.as_tensor(m.indices.astype(np.int64))
        self.degree = self.indptr[1:] - self.indptr[:-1]
        owners = torch.repeat_interleave(torch.arange(m.shape[0]), self.degree)
        self.owners = owners
        # sorted CSR columns make row * n_items + column a sorted key array
        self.keys = owners * self.n_items + self.indices
        if bool((self.degree >= self.n_items).any()):
            raise ConfigError("pretraining: a user has interacted with every item, so no negative "
                              "item can be drawn for it; drop that user from the data")

    def positives(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One item per user, uniform over its items (each user must have one)."""
        offset = (torch.rand(users.shape, generator=generator, dtype=torch.float64)
                  * self.degree[users]).long()
        return self.indices[self.indptr[users] + torch.minimum(offset, self.degree[users] - 1)]

    def negatives(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One item per user, uniform over the items the user does not have (redrawn until so)."""
        items = torch.randint(0, self.n_items, users.shape, generator=generator)
        bad = self.contains(users, items)
        while bool(bad.any()):
            items[bad] = torch.randint(0, self.n_items, (int(bad.sum()),), generator=generator)
            bad = self.contains(users, items)
        return items

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        query = users * self.n_items + items
        where = torch.searchsorted(self.keys, query).clamp_(max=max(len(self.keys) - 1, 0))
        return self.keys[where] == query


class DistinctUserSampling:
    """MB-CGCN's ``GCN.py`` sampling: per step ``batch_size`` distinct users among those with
    interactions (all of them when fewer), one positive and one negative each;
    ``#interactions // batch_size + 1`` steps per epoch."""

    def __init__(self, matrix: sp.csr_matrix, batch_size: int, device: torch.device) -> None:
        self.index = UserItems(matrix)
        self.active = torch.nonzero(self.index.degree > 0).squeeze(1)
        self.batch_size, self.device = batch_size, device
        self.steps = len(self.index.keys) // batch_size + 1

    def epoch(self, generator: torch.Generator) -> Iterator[Triples]:
        for _ in range(self.steps):
            pick = torch.randperm(len(self.active), generator=generator)[:self.batch_size]
            users = self.active[pick]
            pos = self.index.positives(users, generator)
            neg = self.index.negatives(users, generator)
            yield users.to(self.device), pos.to(self.device), neg.to(self.device)


class RecordSampling:
    """MBGCN's sampling (``sample.py``): every interaction once per epoch in a shuffled order, with
    one negative each; ``batch_size`` interactions per step."""

    def __init__(self, matrix: sp.csr_matrix, batch_size: int, device: torch.device) -> None:
        self.index = UserItems(matrix)
        self.batch_size, self.device = batch_size, device

    def epoch(self, generator: torch.Generator) -> Iterator[Triples]:
        order = torch.randperm(len(self.index.keys), generator=generator)
        users, pos = self.index.owners[order], self.index.indices[order]
        neg = self.index.negatives(users, generator)
        for start in range(0, len(users), self.batch_size):
            part = slice(start, start + self.batch_size)
            yield (users[part].to(self.device), pos[part].to(self.device),
                   neg[part].to(self.device))
