"""Model builders and small utilities shared by the multi-task tests."""
from __future__ import annotations

import torch

from bench.models.base import Batch
from bench.models.registry import build_model, get_model, load_builtin
from bench.train.samplers import make_sampler
from bench.train.seeds import generator

load_builtin()


def build(name, dataset, seed=1, **overrides):
    """A registered or composed model on ``dataset`` with ``overrides``, and its configuration."""
    spec = get_model(name)
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, overrides)
    return build_model(spec, dataset, cfg, "cpu", generator(seed)), cfg


def first_batch(model, dataset, cfg, seed=2) -> Batch:
    sampler = make_sampler(model, dataset, cfg, torch.device("cpu"))
    return next(iter(sampler.epoch(generator(seed))))
