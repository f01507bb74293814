"""CRGCN (spec §7.4): the residual cascade, the loss's padding rows, the sampler's invariants."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from bench.train.seeds import generator
from tests.baselines.helpers import (build, first_batch, lgn, one_epoch, sampler_of,
                                     user_sets)


def test_behavior_k_starts_from_behavior_k_minus_1_plus_residual(demo):
    model, _ = build("crgcn", demo, cascade_layers=[1, 2, 1])
    enc = model.encoder
    with torch.no_grad():   # non-zero biases, so that the bias path is checked too
        for bias in enc.biases:
            bias.normal_(0, 0.1, generator=generator(5))
    reps = enc()
    t = torch.cat([enc.users, enc.items]).detach()
    for k, matrix in enumerate(demo.matrices()):
        a = lgn(matrix)
        h = t
        for layer in range(enc.layers[k]):
            h = a @ h + enc.biases[k][layer].detach()
        t = t + F.normalize(h, dim=-1)        # T_k = T_{k-1} + normalize_row(Enc_k(T_{k-1}))
        got = torch.cat([reps.users[k], reps.items[k]]).detach()
        torch.testing.assert_close(got, t, rtol=1e-4, atol=1e-5)


def test_prediction_uses_the_target_output(demo):
    model, _ = build("crgcn", demo)
    users = torch.arange(0, demo.n_users, 13)
    reps = model.encoder()
    expected = reps.users[-1][users] @ reps.items[-1].T
    torch.testing.assert_close(model.scorer()(users), expected.detach())


def test_users_without_a_behavior_count_in_the_mean(demo):
    model, cfg = build("crgcn", demo, reg=0.0, batch_size=256)
    batch = first_batch(model, demo, cfg, seed=3)
    per_behavior = [user_sets(m) for m in demo.matrices()]
    real = [u for u, w in zip(batch.users.tolist(), batch.user_weight.tolist()) if w == 1.0]
    assert len(batch.users) == 256 and sorted(real) == list(range(demo.n_users))  # 56 padding rows
    reps = model.encoder()
    loss, parts = model.loss(batch)
    expected, padded = 0.0, 0
    for k, pairs in batch.pairs.items():
        zu, zv = reps.users[k], reps.items[k]
        terms = []
        for slot, u in enumerate(pairs.users.tolist()):
            if pairs.weight[slot] == 1.0:
                p, n = pairs.pos[slot], pairs.neg[slot]
                terms.append(-torch.log(1e-10 + torch.sigmoid((zu[u] * (zv[p] - zv[n])).sum())))
        # a real user lacking behavior k is a (0, 0, 0) row: sigmoid(0); padding users are no row
        missing = sum(1 for u in real if not per_behavior[k][u])
        assert len(terms) == len(real) - missing
        padded += missing
        expected = expected + (torch.stack(terms).sum()
                               + missing * -math.log(1e-10 + 0.5)) / len(real)
    assert padded > 0     # the demo has users without cart
    torch.testing.assert_close(parts["bpr"], expected)


def test_sampler_visits_every_user_once_with_all_behavior_negatives(demo):
    model, cfg = build("crgcn", demo, batch_size=64)
    sampler = sampler_of(model, demo, cfg, seeds=(4,))
    union = user_sets(demo.union())
    per_behavior = [user_sets(m) for m in demo.matrices()]
    seen = []
    batches = one_epoch(sampler)
    assert len(batches) == sampler.steps_per_epoch == 4
    for batch in batches:
        assert batch.users.shape == batch.user_weight.shape == (64,)     # fixed shapes
        users = batch.users.tolist()
        real = batch.user_weight.tolist()
        seen += [u for u, w in zip(users, real) if w == 1.0]
        for k, pairs in batch.pairs.items():
            assert pairs.users.tolist() == users                       # one slot per batch user
            # weight 1 exactly for the real users having behavior k
            assert pairs.weight.tolist() == [float(w == 1.0 and bool(per_behavior[k][u]))
                                             for u, w in zip(users, real)]
            for u, p, n, w in zip(users, pairs.pos.tolist(), pairs.neg.tolist(),
                                  pairs.weight.tolist()):
                if w:
                    assert p in per_behavior[k][u]
                assert n not in union[u]                  # never in the all-behavior set
    assert sorted(seen) == list(range(demo.n_users))      # every user once; 56 padding slots
    assert sum(len(b.users) for b in batches) - len(seen) == 4 * 64 - demo.n_users
