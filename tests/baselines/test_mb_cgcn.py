"""MB-CGCN (spec §7.5): transformation matrices between the cascaded LightGCNs, the final sum, the
distinct-user sampler, and E0 from the view pretraining."""
from __future__ import annotations

import itertools

import pytest
import torch

from baselines import pretrain
from baselines.pretrain import PretrainConfig
from bench.models.registry import get_model
from bench.train.samplers import run_batches
from bench.train.seeds import generator
from tests.baselines.helpers import build, first_batch, lgn, one_epoch, sampler_of, user_sets

CPU = torch.device("cpu")


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


def test_mb_cgcn_starts_e0_from_the_view_gcn_by_default(demo):
    small = dict(pretrain_epochs=2, pretrain_eval_every=1, pretrain_batch_size=128)
    model, cfg = build("mb-cgcn", demo, **small)
    scratch, scratch_cfg = build("mb-cgcn", demo, pretrain_model="none")
    assert cfg["pretrain_model"] == "gcn" and scratch_cfg["pretrain_model"] == "none"
    enc = model.encoder
    assert enc.pretraining is not None and enc.pretraining.epochs_run >= 1
    assert torch.equal(enc.users.detach(), enc.pretraining.users)
    assert torch.equal(enc.items.detach(), enc.pretraining.items)
    assert scratch.encoder.pretraining is None
    # the pretraining draws its stream after the encoder's own tables: W's are as from scratch
    assert torch.equal(enc.user_transforms[0], scratch.encoder.user_transforms[0])
    # the same pretraining as a direct call on the first behavior with the encoder's settings
    direct = pretrain.pretrain_gcn(
        demo.matrices()[0], PretrainConfig("gcn", 2, 1, cfg["pretrain_patience"],
                                           cfg["pretrain_lr"], cfg["pretrain_reg"], 128, cfg["dim"],
                                           cfg["pretrain_layers"], cfg["init_std"], 20),
        _child_of_init(enc, cfg), CPU)
    assert torch.equal(direct.users, enc.pretraining.users)


def _child_of_init(encoder, cfg) -> torch.Generator:
    """The generator the encoder hands its pretraining: one draw after its own tables."""
    init = generator(1)
    d, n = cfg["dim"], encoder.n_behaviors - 1
    for shape in [(encoder.n_users, d), (encoder.n_items, d)] + [(d, d)] * (2 * n):
        torch.randn(*shape, generator=init)
    child = torch.Generator()
    child.manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=init)))
    return child


@pytest.mark.parametrize("kind", ["lightgcn", "mf"])
def test_mb_cgcn_pretraining_options(kind, demo):
    model, _ = build("mb-cgcn", demo, pretrain_model=kind, pretrain_epochs=1)
    assert model.encoder.pretraining is not None
    assert torch.equal(model.encoder.users.detach(), model.encoder.pretraining.users)


def test_mb_cgcn_taobao_layers_are_the_release_readme_run():
    spec = get_model("mb-cgcn")
    assert spec.resolve("taobao", 3)["cascade_layers"] == [2, 4, 3]
    assert spec.resolve("demo", 3)["cascade_layers"] == [1, 5, 3]
    assert spec.resolve("taobao", 3)["pretrain_model"] == "gcn"
