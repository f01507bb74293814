"""Training samplers, vectorized on the model's device (no Python loop per user or sample)."""
from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError
from bench.models.base import Batch, Model, Pairs


class Sampler(Protocol):
    """What the trainer needs of a sampler: the batches of one epoch, and their number."""

    def steps_per_epoch(self) -> int: ...

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]: ...


SamplerFactory = Callable[[MultiBehaviorDataset, dict, torch.device, Model], Sampler]
SAMPLERS: dict[str, SamplerFactory] = {}


def register_sampler(name: str):
    """Register ``factory(dataset, cfg, device, model) -> Sampler`` under ``name``; a model selects
    it with its ``sampler`` parameter."""
    def wrap(factory: SamplerFactory) -> SamplerFactory:
        if name in SAMPLERS:
            raise ConfigError(f"sampler name '{name}' is registered twice")
        SAMPLERS[name] = factory
        return factory
    return wrap


def make_sampler(model: Model, dataset: MultiBehaviorDataset, cfg: dict[str, Any],
                 device: torch.device) -> Sampler | None:
    """The model's sampler, or None for a model that does not train."""
    name = cfg["sampler"]
    if name == "none" or not model.trainable:
        return None
    if name not in SAMPLERS:
        raise ConfigError(f"{model.name}: unknown sampler '{name}'; samplers: "
                          f"{', '.join(sorted(SAMPLERS))}, none")
    return SAMPLERS[name](dataset, cfg, device, model)


def endless_batches(sampler: Sampler, generator: torch.Generator) -> Iterator[Batch]:
    """The sampler's batches epoch after epoch, for a fixed number of steps (benchmarks, tests)."""
    while True:
        yield from sampler.epoch(generator)


class InteractionIndex:
    """A binary user x item matrix on a device: per-user positives and fast membership tests."""

    def __init__(self, matrix: sp.csr_matrix, device: torch.device) -> None:
        m = sp.csr_matrix(matrix)
        m.sort_indices()
        self.n_items = m.shape[1]
        self.indptr = torch.as_tensor(m.indptr.astype(np.int64), device=device)
        self.indices = torch.as_tensor(m.indices.astype(np.int64), device=device)
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        # CSR with sorted columns gives globally sorted keys row * n_items + col.
        self.keys = torch.as_tensor(rows * self.n_items + m.indices, device=device)
        self.degree = self.indptr[1:] - self.indptr[:-1]

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self.keys.numel() == 0:
            return torch.zeros_like(users, dtype=torch.bool)
        query = users * self.n_items + items
        pos = torch.searchsorted(self.keys, query).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == query

    def draw_positives(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One positive per entry of ``users`` (each must have at least one), uniform, with repeats."""
        offset = (torch.rand(users.shape, generator=generator, device=users.device)
                  * self.degree[users]).long()
        offset = torch.minimum(offset, self.degree[users] - 1)
        return self.indices[self.indptr[users] + offset]

    def draw_negatives(self, users: torch.Tensor, generator: torch.Generator,
                       max_rounds: int = 1000) -> torch.Tensor:
        """One item per entry of ``users`` outside the user's positives, uniform (rejection)."""
        items = torch.randint(0, self.n_items, users.shape, generator=generator, device=users.device)
        for _ in range(max_rounds):
            bad = self.contains(users, items)
            if not bool(bad.any()):
                return items
            items[bad] = torch.randint(0, self.n_items, (int(bad.sum()),), generator=generator,
                                       device=users.device)
        raise RuntimeError("negative sampling did not converge: some user has (almost) every item")


class MultiBehaviorSampler:
    """The reference TF-family harness (model-specs §2): per epoch a permutation of the users in
    batches; per behavior and user min(n_pairs, #positives) positives drawn with replacement and as
    many negatives outside that behavior's positives."""

    def __init__(self, matrices: Sequence[sp.csr_matrix], behaviors: Sequence[int], batch_size: int,
                 n_pairs: int, users_per_epoch: int, device: torch.device) -> None:
        self.index = {k: InteractionIndex(matrices[k], device) for k in behaviors}
        self.n_users = matrices[0].shape[0]
        self.batch_size = batch_size
        self.n_pairs = n_pairs
        self.users_per_epoch = users_per_epoch or self.n_users
        self.device = device

    def steps_per_epoch(self) -> int:
        return -(-min(self.users_per_epoch, self.n_users) // self.batch_size)

    def pairs(self, k: int, users: torch.Tensor, generator: torch.Generator) -> Pairs:
        index = self.index[k]
        counts = torch.clamp(index.degree[users], max=self.n_pairs)
        rep_users = torch.repeat_interleave(users, counts)
        pos = index.draw_positives(rep_users, generator)
        neg = index.draw_negatives(rep_users, generator)
        return Pairs(rep_users, pos, neg)

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(self.n_users, generator=generator, device=self.device)
        order = order[:self.users_per_epoch]
        for start in range(0, len(order), self.batch_size):
            users = order[start:start + self.batch_size]
            yield Batch(users, {k: self.pairs(k, users, generator) for k in self.index})


class BPRSampler:
    """Official LightGCN sampling on one behavior: per epoch #interactions draws of a uniform
    random user with at least one positive, one positive and one negative each."""

    def __init__(self, matrix: sp.csr_matrix, behavior: int, batch_size: int,
                 device: torch.device) -> None:
        self.index = InteractionIndex(matrix, device)
        self.behavior = behavior
        self.active = torch.nonzero(self.index.degree > 0).squeeze(1)
        self.n_samples = int(self.index.keys.numel())
        self.batch_size = batch_size
        self.device = device

    def steps_per_epoch(self) -> int:
        return -(-self.n_samples // self.batch_size)

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        pick = torch.randint(0, len(self.active), (self.n_samples,), generator=generator,
                             device=self.device)
        users = self.active[pick]
        pos = self.index.draw_positives(users, generator)
        neg = self.index.draw_negatives(users, generator)
        for start in range(0, self.n_samples, self.batch_size):
            sl = slice(start, start + self.batch_size)
            yield Batch(users[sl], {self.behavior: Pairs(users[sl], pos[sl], neg[sl])})


class InteractionBPRSampler(BPRSampler):
    """RecBole-style sampling on one behavior: per epoch every training interaction once, in a
    shuffled order, each with one uniform negative. Users are drawn in proportion to their
    interactions, where the official LightGCN sampler draws them uniformly."""

    def epoch(self, generator: torch.Generator) -> Iterator[Batch]:
        order = torch.randperm(self.n_samples, generator=generator, device=self.device)
        keys = self.index.keys[order]
        users = torch.div(keys, self.index.n_items, rounding_mode="floor")
        pos = keys - users * self.index.n_items
        neg = self.index.draw_negatives(users, generator)
        for start in range(0, self.n_samples, self.batch_size):
            sl = slice(start, start + self.batch_size)
            yield Batch(users[sl], {self.behavior: Pairs(users[sl], pos[sl], neg[sl])})


@register_sampler("multi-behavior")
def _multi_behavior(dataset: MultiBehaviorDataset, cfg: dict, device: torch.device,
                    model: Model) -> MultiBehaviorSampler:
    # A decoder that trains only some behaviors says so; the others are not sampled.
    behaviors = getattr(model.decoder, "trained_behaviors", None)
    if behaviors is None:
        behaviors = range(dataset.n_behaviors)
    return MultiBehaviorSampler(dataset.matrices(), list(behaviors), cfg["batch_size"],
                                cfg["n_pairs"], cfg["users_per_epoch"], device)


@register_sampler("bpr")
def _bpr(dataset: MultiBehaviorDataset, cfg: dict, device: torch.device, model: Model) -> BPRSampler:
    return BPRSampler(dataset.matrices()[-1], dataset.n_behaviors - 1, cfg["batch_size"], device)


@register_sampler("bpr-interactions")
def _bpr_interactions(dataset: MultiBehaviorDataset, cfg: dict, device: torch.device,
                      model: Model) -> InteractionBPRSampler:
    return InteractionBPRSampler(dataset.matrices()[-1], dataset.n_behaviors - 1,
                                 cfg["batch_size"], device)
