"""Model builders and small utilities shared by the multi-task tests."""
from __future__ import annotations

import itertools

import torch

from bench.models.base import Batch
from bench.models.registry import build_model, get_model, load_builtin
from bench.train import streams
from bench.train.samplers import make_sampler, run_batches
from bench.train.seeds import generator

load_builtin()


def build(name, dataset, seed=1, **overrides):
    """A registered or composed model on ``dataset`` with ``overrides``, and its configuration."""
    spec = get_model(name)
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, overrides)
    return build_model(spec, dataset, cfg, "cpu", generator(seed)), cfg


def sampler_of(model, dataset, cfg, seeds=(2,)):
    """The model's sampler for runs with sampling seeds ``seeds`` (one run by default)."""
    return make_sampler(model, dataset, cfg, torch.device("cpu"), streams.run_keys(list(seeds)))


def one_epoch(sampler, member: int = 0) -> list[Batch]:
    """Run ``member``'s batches of the sampler's first epoch (leading run axis dropped)."""
    return list(itertools.islice(run_batches(sampler, member), sampler.steps_per_epoch))


def first_batch(model, dataset, cfg, seed=2) -> Batch:
    """The first batch of one run with sampling seed ``seed`` (no leading run axis)."""
    return next(run_batches(sampler_of(model, dataset, cfg, (seed,))))
