"""Helpers of the baseline-model tests."""
from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp
import torch

from bench.models.registry import build_model, get_model
from bench.train import streams
from bench.train.samplers import make_sampler, run_batches
from bench.train.seeds import generator


def build(name: str, dataset, seed: int = 1, **overrides):
    spec = get_model(name)
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, overrides)
    return build_model(spec, dataset, cfg, "cpu", generator(seed)), cfg


def sampler_of(model, dataset, cfg, seeds=(2,)):
    """The model's sampler for runs with sampling seeds ``seeds`` (one run by default)."""
    return make_sampler(model, dataset, cfg, torch.device("cpu"), streams.run_keys(list(seeds)))


def one_epoch(sampler, member: int = 0) -> list:
    """Run ``member``'s batches of the sampler's first epoch (leading run axis dropped)."""
    return list(itertools.islice(run_batches(sampler, member), sampler.steps_per_epoch))


def first_batch(model, dataset, cfg, seed: int = 2):
    """The first batch of one run with sampling seed ``seed`` (no leading run axis)."""
    return next(run_batches(sampler_of(model, dataset, cfg, (seed,))))


def dense(matrix: sp.spmatrix) -> torch.Tensor:
    return torch.from_numpy(np.asarray(sp.csr_matrix(matrix).todense(), dtype=np.float32))


def lgn(matrix: sp.spmatrix, eps: float | None = None) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite lift of a user x item matrix, dense (degrees: sums, or
    #non-zeros + eps)."""
    m = dense(matrix)
    u, i = m.shape
    a = torch.zeros(u + i, u + i)
    a[:u, u:] = m
    a[u:, :u] = m.T
    deg = (a != 0).sum(1).double() + eps if eps is not None else a.sum(1).double()
    inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg)).float()
    return inv[:, None] * a * inv[None, :]


def user_sets(matrix: sp.spmatrix) -> list[set[int]]:
    m = sp.csr_matrix(matrix)
    return [set(m.indices[m.indptr[u]:m.indptr[u + 1]].tolist()) for u in range(m.shape[0])]
