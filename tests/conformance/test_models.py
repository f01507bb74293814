"""Conformance suite every registered model inherits (LensKit style): on ``demo``, a short training
run gives finite, falling losses; scores have the right shape; the same seed gives identical scores
on CPU; a serialized model scores identically after loading."""
from __future__ import annotations

import pytest
import torch

from bench.data.demo import make_demo
from bench.models.registry import MODELS, build_model, get_model, load_builtin
from bench.train.samplers import make_sampler
from bench.train.seeds import generator
from bench.train.trainer import make_optimizer

load_builtin()
ALL_MODELS = sorted(MODELS)
STEPS = 12


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_users=300, n_items=400, seed=7)


def _build(name, dataset, seed=1, **overrides):
    spec = get_model(name)
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, overrides)
    return build_model(spec, dataset, cfg, "cpu", generator(seed)), cfg


def _steps(model, dataset, cfg, n_steps, seed=2):
    sampler = make_sampler(model, dataset, cfg, torch.device("cpu"))
    if sampler is None:
        return []
    opt, schedule = make_optimizer(model, cfg, sampler.steps_per_epoch(), dataset.n_users)
    gen = generator(seed)
    batch = next(iter(sampler.epoch(gen)))   # one fixed batch: the loss on it must fall
    losses = []
    for _ in range(n_steps):
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(float(loss))
    return losses


@pytest.mark.parametrize("name", ALL_MODELS)
def test_losses_finite_and_falling(name, demo):
    model, cfg = _build(name, demo)
    losses = _steps(model, demo, cfg, STEPS)
    if not model.trainable or cfg["sampler"] == "none":
        pytest.skip(f"{name} does not train")
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < losses[0], f"{name}: loss did not fall over {STEPS} steps: {losses}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_score_shape_and_determinism(name, demo):
    users = torch.arange(0, demo.n_users, 7)
    scores = []
    for _ in range(2):
        model, cfg = _build(name, demo)
        _steps(model, demo, cfg, 2)
        scores.append(model.scorer()(users))
    assert scores[0].shape == (len(users), demo.n_items)
    assert torch.isfinite(scores[0]).all()
    assert torch.equal(scores[0], scores[1]), f"{name}: same seed gave different scores"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_serialization_round_trip(name, demo):
    model, cfg = _build(name, demo)
    _steps(model, demo, cfg, 2)
    users = torch.arange(0, demo.n_users, 11)
    expected = model.scorer()(users)
    fresh, _ = _build(name, demo, seed=99)
    fresh.load_bytes(model.to_bytes())
    assert torch.equal(fresh.scorer()(users), expected)
