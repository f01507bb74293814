"""Conformance suite every registered model inherits (LensKit style): on ``demo``, a short training
run gives finite, falling losses; scores have the right shape; the same seed gives identical scores
on CPU; a serialized model scores identically after loading."""
from __future__ import annotations

import pytest
import torch

from bench.data.demo import make_demo
from bench.models.registry import MODELS, build_model, get_model, load_builtin
from bench.train.samplers import endless_batches, make_sampler
from bench.train.seed_batch import RandomStreams, SeedBatch
from bench.train.seeds import generator
from bench.train.trainer import make_optimizer

load_builtin()
ALL_MODELS = sorted(MODELS)
STEPS = 12
# models whose encoder draws random numbers in training (dropout): batched seed by seed
LOOPED_ENCODERS = {"mbgcn"}


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


def _separate_steps(name, dataset, seed, n_steps):
    """A run alone: its own model, sampler stream and global random state."""
    torch.manual_seed(1000 + seed)
    model, cfg = _build(name, dataset, seed=seed)
    sampler = make_sampler(model, dataset, cfg, torch.device("cpu"))
    opt, schedule = make_optimizer(model, cfg, sampler.steps_per_epoch(), dataset.n_users)
    batches = endless_batches(sampler, generator(500 + seed))
    for _ in range(n_steps):
        loss, _ = model.loss(next(batches))
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    return model


@pytest.mark.parametrize("name", ALL_MODELS)
def test_seed_batch_trains_each_run_as_if_alone(name, demo):
    """Two runs trained as one seed batch end where each ends alone (floating-point noise aside),
    fused under vmap where the encoder allows it, seed by seed where it does not."""
    cpu = torch.device("cpu")
    probe, cfg = _build(name, demo)
    if not probe.trainable or cfg["sampler"] == "none":
        pytest.skip(f"{name} does not train")
    seeds, n_steps = (0, 1), 2
    alone = [_separate_steps(name, demo, s, n_steps) for s in seeds]
    models, states = [], []
    for s in seeds:
        torch.manual_seed(1000 + s)
        models.append(_build(name, demo, seed=s)[0])
        states.append(RandomStreams.capture(cpu))
    batch = SeedBatch(models)
    streams = RandomStreams(states, cpu)
    samplers = [make_sampler(m, demo, cfg, cpu) for m in models]
    opt, schedule = make_optimizer(batch.parameters(), cfg, samplers[0].steps_per_epoch(),
                                   demo.n_users)
    streams_of_batches = [endless_batches(smp, generator(500 + s)) for smp, s in zip(samplers, seeds)]
    for _ in range(n_steps):
        results = batch.losses([next(b) for b in streams_of_batches], streams)
        opt.zero_grad()
        torch.stack([total for total, _ in results]).sum().backward()
        opt.step()
        schedule.step()
    batch.sync_models()
    for single, batched in zip(alone, models):
        for (key, a), (_, b) in zip(single.state_dict().items(), batched.state_dict().items()):
            if a.is_floating_point():
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=f"{name}: {key} "
                                           f"differs ({batch.mode} mode)")
    if name in LOOPED_ENCODERS:
        assert batch.mode == "looped"
    else:
        assert batch.mode == "fused", batch.fallback_reason
