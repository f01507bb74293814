"""Helpers of the training tests: stream keys, one epoch of a sampler's batches."""
from __future__ import annotations

import itertools

import torch

from bench.models.base import Batch
from bench.train import streams
from bench.train.samplers import endless_batches, run_batches

CPU = torch.device("cpu")


def keys(*seeds: int) -> torch.Tensor:
    """[S, 2] stream keys of runs with sampling seeds ``seeds``."""
    return streams.run_keys(list(seeds))


def one_epoch(sampler, member: int = 0) -> list[Batch]:
    """Run ``member``'s batches of the sampler's first epoch (leading run axis dropped)."""
    return list(itertools.islice(run_batches(sampler, member), sampler.steps_per_epoch))


def batches(sampler, steps: int) -> list[Batch]:
    """The sampler's first ``steps`` batches of every run (leading run axis kept), across epochs."""
    return [batch for batch, _ in itertools.islice(endless_batches(sampler), steps)]
