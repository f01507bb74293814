"""MB-CGCN (spec §7.5): transformation matrices between the cascaded LightGCNs, the final sum, and
the distinct-user sampler."""
from __future__ import annotations

import itertools

import torch

from bench.train.samplers import run_batches
from tests.baselines.helpers import build, first_batch, lgn, one_epoch, sampler_of, user_sets


def _layer_mean(a: torch.Tensor, x: torch.Tensor, layers: int) -> torch.Tensor:
    total, layer = x, x
    for _ in range(layers):
        layer = a @ layer
        total = total + layer
    return total / (layers + 1)


def test_transformations_sit_between_behaviors(demo):
    model, _ = build("mb-cgcn", demo, cascade_layers=[1, 2, 1])
    enc = model.encoder
    reps = enc()
    u = demo.n_users
    x = torch.cat([enc.users, enc.items]).detach()
    merged = 0
    for k, matrix in enumerate(demo.matrices()):
        if k > 0:   # E^{(k-1)} times W_u (user rows) / W_i (item rows) of the transition into k
            x = torch.cat([x[:u] @ enc.user_transforms[k - 1].detach(),
                           x[u:] @ enc.item_transforms[k - 1].detach()])
        x = _layer_mean(lgn(matrix), x, enc.layers[k])
        # Z^k exposed per behavior is the untransformed layer mean E^{(k)}
        torch.testing.assert_close(torch.cat([reps.users[k], reps.items[k]]).detach(), x,
                                   rtol=1e-4, atol=1e-7)
        merged = merged + x
    torch.testing.assert_close(torch.cat([reps.extra["merged_users"],
                                          reps.extra["merged_items"]]).detach(), merged,
                               rtol=1e-4, atol=1e-7)
    users = torch.arange(0, demo.n_users, 9)
    torch.testing.assert_close(model.scorer()(users), merged[users] @ merged[u:].T,
                               rtol=1e-4, atol=1e-9)


def test_two_transitions_for_three_behaviors_and_gradients_reach_them(demo):
    model, cfg = build("mb-cgcn", demo)
    enc = model.encoder
    assert len(enc.user_transforms) == len(enc.item_transforms) == demo.n_behaviors - 1
    batch = first_batch(model, demo, cfg, seed=2)
    loss, parts = model.loss(batch)
    assert set(parts) == {"bpr", "l2"}
    loss.backward()
    for w in list(enc.user_transforms) + list(enc.item_transforms):
        assert w.grad is not None and float(w.grad.abs().sum()) > 0


def test_sampler_distinct_users_and_step_count(demo):
    model, cfg = build("mb-cgcn", demo, batch_size=64)
    sampler = sampler_of(model, demo, cfg, seeds=(6,))
    buys = demo.matrices()[-1]
    assert sampler.steps_per_epoch == buys.nnz // 64 + 1
    bought = user_sets(buys)
    active = {u for u in range(demo.n_users) if bought[u]}
    batches = one_epoch(sampler)
    assert len(batches) == sampler.steps_per_epoch
    drawn = set()
    for batch in batches:
        (k, pairs), = batch.pairs.items()
        assert k == demo.n_behaviors - 1
        users = pairs.users.tolist()
        assert len(users) == 64 and len(set(users)) == 64 and set(users) <= active
        assert pairs.weight.tolist() == [1.0] * 64                  # no padding: all real
        assert torch.equal(batch.users, pairs.users)
        for u, p, n in zip(users, pairs.pos.tolist(), pairs.neg.tolist()):
            assert p in bought[u] and n not in bought[u]
    # a fresh draw each step: the steps do not repeat one set of users, and over three epochs
    # every active user is drawn (each step takes 64 of the 200)
    assert len({tuple(sorted(b.users.tolist())) for b in batches}) == len(batches)
    later = itertools.islice(run_batches(sampler), 3 * sampler.steps_per_epoch)
    assert set(torch.cat([b.users for b in later]).tolist()) == active


def test_first_behavior_pretraining_initializes_e0(demo):
    scratch, _ = build("mb-cgcn", demo)
    model, _ = build("mb-cgcn", demo, pretrain_epochs=2, pretrain_layers=2)
    again, _ = build("mb-cgcn", demo, pretrain_epochs=2, pretrain_layers=2)
    e0 = torch.cat([model.encoder.users, model.encoder.items]).detach()
    assert torch.isfinite(e0).all()
    assert not torch.equal(e0, torch.cat([scratch.encoder.users, scratch.encoder.items]).detach())
    assert torch.equal(e0, torch.cat([again.encoder.users, again.encoder.items]).detach())
    # the transformation matrices keep their own initialization
    assert torch.equal(model.encoder.user_transforms[0], scratch.encoder.user_transforms[0])
