"""Conformance suite every registered model inherits (LensKit style): on ``demo``, a short training
run gives finite, falling losses; scores have the right shape; the same seed gives identical scores
on CPU; a serialized model scores identically after loading; a training step never synchronizes
with the host; and runs trained together as one batch end where each ends alone."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from bench.data.demo import make_demo
from bench.models.registry import MODELS, build_model, get_model, load_builtin
from bench.perf import Stepper
from bench.seed_groups import template_params
from bench.train import streams
from bench.train.samplers import make_sampler
from bench.train.seeds import generator
from bench.train.trainer import BatchTrainer, Member

load_builtin()
ALL_MODELS = sorted(MODELS)
STEPS = 12
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_users=300, n_items=400, seed=7)


def _demo_kg_file(dataset) -> str:
    """An item graph for models that read a user-supplied one (plain ``kmclr``): each item linked
    to two others, written once per session in the format ``baselines.multi.kmclr_kg`` documents."""
    folder = Path(tempfile.gettempdir()) / f"bench-conformance-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    path = folder / f"kg-{dataset.n_items}.txt"
    if not path.exists():
        lines = [f"{i} {r} {(i + 1 + r) % dataset.n_items}\n" for i in range(dataset.n_items)
                 for r in (0, 1)]
        path.write_text("".join(lines))
    return str(path)


def _user_inputs(spec, dataset) -> dict:
    """Files a model needs from its user, made up for the demo data."""
    defaults = spec.resolve(dataset.name, dataset.n_behaviors)
    if defaults.get("kg_source") == "file" and not defaults.get("kg_file"):
        return {"kg_file": _demo_kg_file(dataset)}
    return {}


def _build(name, dataset, seed=1, **overrides):
    spec = get_model(name)
    overrides = {**_user_inputs(spec, dataset), **overrides}
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, overrides)
    return build_model(spec, dataset, cfg, "cpu", generator(seed)), cfg


def batch_trainer(name, dataset, runs, overrides=None):
    """Members ``runs`` (model seed = run, sampling seed = 500 + run) as one batch; None for a
    model that does not train. ``overrides[i]`` are member i's own settings."""
    overrides = overrides or [{} for _ in runs]
    members = []
    for run, own in zip(runs, overrides):
        model, cfg = _build(name, dataset, seed=run, **own)
        members.append(Member(model, cfg, 500 + run))
    template = None
    if any(own != overrides[0] for own in overrides):      # as bench.runner.batch_template
        spec = get_model(name)
        params = template_params([m.cfg for m in members], spec.param_specs())
        template = build_model(spec, dataset, params, "cpu", generator(0))
    structure = template or members[0].model
    keys = streams.run_keys([m.sampling_seed for m in members])
    sampler = make_sampler(structure, dataset, structure.cfg, CPU, keys)
    if sampler is None:
        return None
    for member in members:
        member.model.train()
    return BatchTrainer(members, dataset, sampler, CPU, "off", name, template)


def _steps(name, dataset, n_steps):
    """A run trained on one fixed batch: its model and losses."""
    trainer = batch_trainer(name, dataset, [1])
    if trainer is None:
        return _build(name, dataset)[0], []
    trainer.sampler.start_epoch(0)
    batch = trainer.sampler.batch(torch.tensor(0), torch.tensor(0))
    losses = []
    for _ in range(n_steps):
        totals, _ = trainer.engine.losses(batch)
        trainer.engine.flat.grad = None
        totals.sum().backward()
        trainer.optimizer.step()
        losses.append(float(totals[0].detach()))
    trainer.engine.sync_models()
    return trainer.engine.models[0], losses


@pytest.mark.parametrize("name", ALL_MODELS)
def test_losses_finite_and_falling(name, demo):
    model, losses = _steps(name, demo, STEPS)
    if not losses:
        pytest.skip(f"{name} does not train")
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < losses[0], f"{name}: loss did not fall over {STEPS} steps: {losses}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_score_shape_and_determinism(name, demo):
    users = torch.arange(0, demo.n_users, 7)
    scores = []
    for _ in range(2):
        model, _ = _steps(name, demo, 2)
        scores.append(model.scorer()(users))
    assert scores[0].shape == (len(users), demo.n_items)
    assert torch.isfinite(scores[0]).all()
    assert torch.equal(scores[0], scores[1]), f"{name}: same seed gave different scores"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_serialization_round_trip(name, demo):
    model, _ = _steps(name, demo, 2)
    users = torch.arange(0, demo.n_users, 11)
    expected = model.scorer()(users)
    fresh, _ = _build(name, demo, seed=99)
    fresh.load_bytes(model.to_bytes())
    assert torch.equal(fresh.scorer()(users), expected)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_a_step_never_synchronizes_with_the_host(name, demo):
    """One step (sampling, loss, backward, Adam, the epoch sums) of one run and of a two-run batch
    runs no operator that makes the host wait for the device: what a CUDA graph needs."""
    for runs in ([0], [0, 1]):
        trainer = batch_trainer(name, demo, runs)
        if trainer is None:
            pytest.skip(f"{name} does not train")
        stepper = Stepper(trainer)
        stepper()                  # first step: lazy buffers (loss sums) are created
        ops = stepper.count()
        assert ops.syncs == {}, f"{name} ({trainer.engine.mode}): a step synchronizes: {ops.syncs}"


def noise_driven(grad_alone: torch.Tensor, grad_batched: torch.Tensor) -> torch.Tensor:
    """Parameter entries whose gradient is dominated by rounding noise: it differs between the run
    alone and in the batch by more than a thousandth of itself plus a millionth of the largest
    gradient (sums of large opposite terms, e.g. a positive and a negative score times ``mult``,
    leave errors of that size), or by anything at all where it is below a hundred-thousandth of
    the largest. Where a gradient is zero in exact arithmetic (a score
    bias, or the user half of a tower's weight, cancel in pos - neg) only noise reaches it, and
    Adam turns any noise into full-size steps, so those entries depend on summation order and are
    not compared."""
    largest = grad_alone.abs().max()
    tiny = grad_alone.abs() <= 1e-5 * largest      # at noise level: any difference counts
    allowance = torch.where(tiny, torch.zeros_like(largest), 1e-6 * largest)
    return (grad_alone - grad_batched).abs() > 1e-3 * grad_alone.abs() + allowance


@pytest.mark.parametrize("name", ALL_MODELS)
def test_batch_trains_each_run_as_if_alone(name, demo):
    """Two runs trained as one batch end where each ends alone (floating-point noise aside):
    fused under vmap, or member by member where the model says why it cannot be."""
    n_steps = 3
    together = batch_trainer(name, demo, [0, 1])
    if together is None:
        pytest.skip(f"{name} does not train")
    stepper = Stepper(together)
    grads = []
    for _ in range(n_steps):
        stepper()
        grads.append(together.engine.flat.grad.detach().clone())
    engine = together.engine
    for run in (0, 1):
        alone = batch_trainer(name, demo, [run])
        single = Stepper(alone)
        compared = torch.ones_like(alone.engine.flat[0], dtype=torch.bool)
        for step in range(n_steps):
            single()
            compared &= ~noise_driven(alone.engine.flat.grad[0], grads[step][run])
        # the exemption stays narrow: nearly every entry is compared
        assert compared.float().mean() > 0.95, f"{name}: {compared.float().mean():.3f} compared"
        for key, a, b, keep in zip(engine.names, alone.engine.flat[0].split(engine.sizes),
                                   engine.flat[run].split(engine.sizes),
                                   compared.split(engine.sizes)):
            torch.testing.assert_close(b.detach()[keep], a.detach()[keep], rtol=1e-4, atol=1e-6,
                                       msg=f"{name}: {key} of run {run} differs ({engine.mode} "
                                           "mode)")
    assert engine.mode == ("looped" if engine.looped_reason else "fused")


# members that differ in batchable values: (model, each member's settings)
MEMBER_SETTINGS = {
    # a weight of 0 in one member only: the batch computes that task, the member weighs it 0
    "copf": [{"cl_temperature": 0.1, "loss_weights": [0.0, 2 / 6, 4 / 6]},
             {"cl_temperature": 0.4, "loss_weights": [1 / 6, 2 / 6, 3 / 6], "lr": 3e-3}],
    "cogcn+mesi": [{"reg": 1e-2}, {"reg": 1e-3, "loss_weights": [0.2, 0.3, 0.5]}],
    "pkef": [{"lr": 1e-3}, {"lr": 2e-3, "reg": 1e-3, "loss_weights": [0.2, 0.3, 0.5]}],
    "cogcn+mmoe": [{"loss_weights": [1.0, 0.0, 0.0], "shared_input": "weighted"},
                   {"loss_weights": [0.0, 0.0, 1.0], "shared_input": "weighted"}],
    "crgcn": [{"lr": 1e-2, "reg": 1e-3}, {"lr": 3e-3, "reg": 1e-4}],
    "lightgcn": [{"reg": 1e-4}, {"reg": 1e-3, "lr": 5e-3, "lr_decay": 0.9}],
}


@pytest.mark.parametrize("name", sorted(MEMBER_SETTINGS))
def test_members_with_their_own_values_train_as_if_alone(name, demo):
    """Members of one batch that differ in batchable hyper-parameters (temperature, loss
    weights, learning rate, regularization) end where each ends alone."""
    settings = MEMBER_SETTINGS[name]
    n_steps = 3
    together = batch_trainer(name, demo, [0, 0], settings)
    assert together.engine.mode == "fused"
    stepper = Stepper(together)
    grads = []
    for _ in range(n_steps):
        stepper()
        grads.append(together.engine.flat.grad.detach().clone())
    for member, own in enumerate(settings):
        alone = batch_trainer(name, demo, [0], [own])
        single = Stepper(alone)
        compared = torch.ones_like(alone.engine.flat[0], dtype=torch.bool)
        for step in range(n_steps):
            single()
            compared &= ~noise_driven(alone.engine.flat.grad[0], grads[step][member])
        assert compared.float().mean() > 0.95
        torch.testing.assert_close(together.engine.flat[member].detach()[compared],
                                   alone.engine.flat[0].detach()[compared], rtol=1e-4, atol=1e-6,
                                   msg=f"{name}: member {member} ({own}) differs")
