"""GNMR (model-specs-table2 Part 2): the message passing against a loop-by-loop reading of the
spec, both predictors, full ranking against per-pair scores, the loss's divisor and L2 set, and
the sampler's release-shaped batches."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from baselines.multi import gnmr
from bench.data.dataset import MultiBehaviorDataset
from bench.models.base import Batch, Pairs
from bench.train import streams
from bench.train.seeds import generator
from tests.baselines.helpers import build, dense, first_batch, one_epoch, sampler_of, user_sets


def tiny() -> MultiBehaviorDataset:
    """5 users x 6 items, 2 behaviors; user 4 has no buy (target) training item."""
    view = sp.csr_matrix(np.array([[1, 1, 0, 0, 1, 0], [0, 1, 1, 0, 0, 0], [1, 0, 0, 1, 1, 1],
                                   [0, 0, 1, 1, 0, 0], [1, 0, 0, 0, 0, 1]], dtype=np.float32))
    buy = sp.csr_matrix(np.array([[1, 0, 0, 0, 1, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 1],
                                  [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=np.float32))
    test = sp.csr_matrix(np.array([[0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0],
                                   [0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=np.float32))
    return MultiBehaviorDataset("gnmr-tiny", ("view", "buy"), {"view": view, "buy": buy}, test)


def randomize_biases(model, seed: int = 5) -> None:
    """Biases start at zero; non-zero values check that each is used where it should be."""
    g = generator(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name or name.endswith(".b1"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def reference_aggregate(agg, messages: list[torch.Tensor]) -> torch.Tensor:
    """transMsg read literally: T_k = reshape(a_k W2, [n, d, d]), heads and behaviors looped."""
    d, heads = agg.dim, agg.heads
    width = d // heads
    memories = []
    for k, t in enumerate(messages):
        a = torch.relu(t @ agg.w1[k] + agg.b1[k])
        T = (a @ agg.w2).reshape(-1, d, d)
        memories.append(torch.stack([sum(t[n, j] * T[n, j] for j in range(d))
                                     for n in range(t.shape[0])]))
    K = len(memories)
    outs = []
    for k in range(K):
        q = memories[k] @ agg.query
        heads_out = []
        for h in range(heads):
            sl = slice(h * width, (h + 1) * width)
            logits = torch.stack([(q[:, sl] * (memories[j] @ agg.key)[:, sl]).sum(-1) / (d / heads)
                                  for j in range(K)], dim=1)
            att = torch.softmax(logits, dim=1)
            heads_out.append(sum(att[:, j:j + 1] * (memories[j] @ agg.value)[:, sl]
                                 for j in range(K)))
        outs.append(torch.cat(heads_out, dim=1))
    weights = torch.cat([torch.relu(s @ agg.gate1 + agg.gate1_bias) @ agg.gate2 + agg.gate2_bias
                         for s in outs], dim=1)
    beta = torch.softmax(weights, dim=1)
    return sum(beta[:, k:k + 1] * outs[k] for k in range(K))


def normalized(h: torch.Tensor) -> torch.Tensor:
    return h / (1e-6 + torch.sqrt(1e-6 + (h ** 2).sum(-1, keepdim=True)))


def test_layers_follow_the_spec_literally():
    data = tiny()
    model, _ = build("gnmr", data, dim=4, memory_size=3, att_heads=2)
    randomize_biases(model)
    enc = model.encoder
    R = [dense(m) for m in data.matrices()]          # unnormalized 0/1
    with torch.no_grad():
        reps = enc()
        hu, hi = [enc.users], [enc.items]
        for layer in range(2):
            hu_next = reference_aggregate(enc.aggregators[2 * layer], [r @ hi[-1] for r in R])
            hi_next = reference_aggregate(enc.aggregators[2 * layer + 1],
                                          [r.T @ hu[-1] for r in R])
            hu.append(hu_next)
            hi.append(hi_next)
    for layer in (1, 2):
        torch.testing.assert_close(reps.extra["gnmr_users"][layer - 1], normalized(hu[layer]),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(reps.extra["gnmr_items"][layer - 1], normalized(hi[layer]),
                                   rtol=1e-5, atol=1e-6)
    # every behavior sees [h^0 | h^1 | h^2], each block normalized (h^0 = E)
    expected_users = torch.cat([normalized(h) for h in hu], dim=1)
    for k in range(2):
        torch.testing.assert_close(reps.users[k], expected_users, rtol=1e-5, atol=1e-6)


def reference_concat_fc(dec, reps, u: int, i: int) -> float:
    fu = torch.relu(torch.cat([dec.user_pred[u]] + [h[u] for h in reps.extra["gnmr_users"]])
                    @ dec.combine + dec.combine_bias)
    fi = torch.relu(torch.cat([dec.item_pred[i]] + [h[i] for h in reps.extra["gnmr_items"]])
                    @ dec.combine + dec.combine_bias)
    z = 100.0 * fu * fi
    z = torch.relu(z @ dec.residual + dec.residual_bias) + z
    return float(z @ dec.out[:, 0] + dec.out_bias[0])


def reference_attentive(dec, reps, u: int, i: int) -> float:
    us = [dec.user_pred[u]] + [h[u] for h in reps.extra["gnmr_users"]]
    its = [dec.item_pred[i]] + [h[i] for h in reps.extra["gnmr_items"]]
    d, heads = us[0].shape[0], dec.heads
    w = d // heads
    z = torch.zeros(d)
    for h in range(heads):
        sl = slice(h * w, (h + 1) * w)
        for a in us:
            for b in its:
                att = torch.relu(((a @ dec.att_key)[sl] * (b @ dec.att_key)[sl]).sum())
                z[sl] += att * a[sl] * b[sl]
    z = 100.0 * z
    z = torch.relu(z @ dec.residual + dec.residual_bias) + z
    return float(z @ dec.out[:, 0] + dec.out_bias[0])


@pytest.mark.parametrize("predictor,reference", [("concat-fc", reference_concat_fc),
                                                 ("attentive", reference_attentive)])
def test_predictors_score_by_hand_and_full_ranking_equals_pairs(predictor, reference,
                                                                monkeypatch):
    data = tiny()
    model, _ = build("gnmr", data, dim=4, memory_size=3, predictor=predictor)
    randomize_biases(model)
    dec = model.decoder
    users = torch.arange(data.n_users)
    with torch.no_grad():
        reps = model.encoder()
        full = model.scorer()(users)
        monkeypatch.setattr(gnmr, "SCORE_BUDGET", 1)    # one user per chunk: same numbers
        chunked = model.scorer()(users)
        for u in range(data.n_users):
            for i in range(data.n_items):
                assert float(full[u, i]) == pytest.approx(reference(dec, reps, u, i), rel=1e-4,
                                                          abs=1e-4)
    torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-5)
    # not a dot product: a user's scores are no linear function of the items' features
    assert float(full.std()) > 0


def test_hinge_divides_by_batch_size_and_l2_covers_exactly_the_release_set():
    data = tiny()
    model, cfg = build("gnmr", data, dim=4, memory_size=3, reg=0.5, batch_size=32)
    randomize_biases(model)
    users = torch.tensor([0, 0, 1, 2, 3])
    pos = torch.tensor([0, 4, 2, 3, 2])
    neg = torch.tensor([1, 2, 0, 0, 5])
    weight = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0])        # slot 3: padding
    batch = Batch(users.unique(), {1: Pairs(users, pos, neg, weight)})
    total, parts = model(batch)
    with torch.no_grad():
        reps = model.encoder()
        y = [(reference_concat_fc(model.decoder, reps, int(u), int(p)),
              reference_concat_fc(model.decoder, reps, int(u), int(n)))
             for u, p, n in zip(users, pos, neg)]
    hinge = sum(w * max(0.0, 1.0 - (a - b)) for (a, b), w in zip(y, weight.tolist())) / 32
    assert float(parts["hinge"].detach()) == pytest.approx(hinge, rel=1e-4)
    enc, dec = model.encoder, model.decoder
    squares = [enc.users, enc.items, dec.combine, dec.residual, dec.out]
    for agg in enc.aggregators:
        squares += [agg.w1, agg.w2, agg.query, agg.key, agg.value, agg.gate1, agg.gate2]
    l2 = 0.5 * sum(float((p.detach() ** 2).sum()) for p in squares)
    assert float(parts["l2"].detach()) == pytest.approx(l2, rel=1e-5)
    assert set(parts) == {"hinge", "l2"}
    assert float(total.detach()) == pytest.approx(hinge + l2, rel=1e-5)
    # P (predictor slot 0) and the biases get gradient only from the hinge
    model.zero_grad()
    parts["l2"].backward()
    for name, p in model.named_parameters():
        unregularized = "pred" in name or "bias" in name or name.endswith(".b1")
        assert (p.grad is None or not p.grad.any()) == unregularized, name


def test_sampler_draws_the_release_batches(demo):
    model, cfg = build("gnmr", demo, users_per_epoch=150, neg_pool=7)
    sampler = sampler_of(model, demo, cfg, (4,))
    assert sampler.steps_per_epoch == math.ceil(150 / 32)
    buys = user_sets(demo.matrices()[-1])
    batches = one_epoch(sampler)
    seen = torch.cat([b.users[b.user_weight > 0] for b in batches]).tolist()
    assert len(seen) == len(set(seen)) == 150          # 150 distinct users, the last batch short
    keys = streams.derive(streams.run_keys([4]), streams.TAG_STEP, 0)
    order = torch.argsort(sampler.layout.draw(keys)["item-order"], dim=-1)[0].tolist()
    batch = batches[0]
    pairs = batch.pairs[demo.n_behaviors - 1]
    assert len(pairs) == 32 * 40
    for slot, u in enumerate(batch.users.tolist()):
        mine = slice(slot * 40, (slot + 1) * 40)
        assert (pairs.users[mine] == u).all() and (pairs.owner[mine] == slot).all()
        assert set(pairs.pos[mine].tolist()) <= buys[u]          # 40 with replacement
        pool = [i for i in order if i not in buys[u]][:7]         # negSamp's first 7
        assert set(pairs.neg[mine].tolist()) <= set(pool)
    assert pairs.weight.sum() == 32 * 40


def test_users_without_target_items_are_skipped_or_never_drawn():
    data = tiny()
    model, cfg = build("gnmr", data, batch_size=5, n_pairs=3)
    sampler = sampler_of(model, data, cfg)
    batch = first_batch(model, data, cfg)
    pairs = batch.pairs[1]
    assert sorted(batch.users.tolist()) == [0, 1, 2, 3, 4]
    owner_weight = pairs.weight.reshape(5, 3)[:, 0]
    for slot, u in enumerate(batch.users.tolist()):
        assert float(owner_weight[slot]) == (0.0 if u == 4 else 1.0)
    assert sampler.steps_per_epoch == 1
    model, cfg = build("gnmr", data, batch_size=5, n_pairs=3, epoch_users="with-target")
    batch = first_batch(model, data, cfg)
    real = batch.users[batch.user_weight > 0].tolist()
    assert sorted(real) == [0, 1, 2, 3] and float(batch.pairs[1].weight.sum()) == 12


def test_uniform_negatives_without_a_pool(demo):
    model, cfg = build("gnmr", demo, neg_pool=0)
    batch = first_batch(model, demo, cfg)
    pairs = batch.pairs[demo.n_behaviors - 1]
    buys = user_sets(demo.matrices()[-1])
    assert all(n not in buys[u] for u, n in zip(pairs.users.tolist(), pairs.neg.tolist()))
    # not confined to a pool: with neg_pool 7 a user has at most 7 distinct negatives
    distinct = [len(set(pairs.neg[s * 40:(s + 1) * 40].tolist())) for s in range(32)]
    assert min(distinct) > 7


def test_members_with_their_own_reg_and_lr_train_as_if_alone(monkeypatch):
    """``reg`` is batchable (a tuning batch may hold several values): the conformance check on
    members with their own values, for gnmr."""
    from bench.data.demo import make_demo
    from tests.conformance import test_models as conformance
    monkeypatch.setitem(conformance.MEMBER_SETTINGS, "gnmr",
                        [{"reg": 1.0}, {"reg": 1e-2, "lr": 1e-3}])
    conformance.test_members_with_their_own_values_train_as_if_alone(
        "gnmr", make_demo(n_users=300, n_items=400, seed=7))
