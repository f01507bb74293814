"""S-MBRec (model-specs-table2.md Part 3): the per-behavior hop means on shared tables, every loss
part recomputed by hand on a padded tail batch, both scores, the behavior weights and shares, the
K-behavior temperatures, the projections' initializations and the sampler's invariants."""
from __future__ import annotations

import math

import pytest
import torch

from baselines.multi.s_mbrec import behavior_shares, initial_behavior_weights
from bench.errors import ConfigError
from tests.baselines.helpers import build, dense, lgn, one_epoch, sampler_of, user_sets

DIM = 8


def test_each_behavior_is_the_mean_of_its_hops_on_shared_tables(demo):
    model, _ = build("s-mbrec", demo, dim=DIM)
    enc = model.encoder
    reps = enc()
    ego = torch.cat([enc.users, enc.items]).detach()
    for k, matrix in enumerate(demo.matrices()):
        a = lgn(matrix)
        hops = [ego]
        for _ in range(3):
            hops.append(a @ hops[-1])
        expected = torch.stack(hops).mean(0)
        got = torch.cat([reps.users[k], reps.items[k]]).detach()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_shares_and_initial_behavior_weights(demo):
    shares = behavior_shares(demo)
    counts = torch.stack([dense(m).sum(1) for m in demo.matrices()], dim=1)
    torch.testing.assert_close(shares, counts / counts.sum(1, keepdim=True))
    assert initial_behavior_weights(("pv", "cart", "buy"), []) == pytest.approx([0.3, 0.3, 0.4])
    assert initial_behavior_weights(("click", "collect", "cart", "buy"), []) == pytest.approx(
        [0.2, 0.2, 0.2, 0.4])
    assert initial_behavior_weights(("a", "b", "c", "d"), [0.3, 0.3, 0.3, 0.4]) == [0.3, 0.3,
                                                                                    0.3, 0.4]
    with pytest.raises(ConfigError, match="behavior_weights_init"):
        build("s-mbrec", demo, dim=DIM, behavior_weights_init=[0.4, 0.3])
    model, _ = build("s-mbrec", demo, dim=DIM)
    assert model.decoder.behavior_weight.tolist() == pytest.approx([0.3, 0.3, 0.4])
    # view-like behaviors contrast users at 1.0, the others at 0.5
    assert model.decoder.user_taus == [1.0, 0.5, 0.5]


def _contrast_by_hand(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    n = a.shape[0]
    m = torch.empty(n, n)
    for x in range(n):
        for y in range(n):
            m[x, y] = math.exp(float(torch.dot(a[x], b[y]) / (a[x].norm() * b[y].norm())) / tau)
    ce = sum(-math.log(m[x, x] / (m[x].sum() + 1e-8)) for x in range(n)) / n
    ce_t = sum(-math.log(m[x, x] / (m[:, x].sum() + 1e-8)) for x in range(n)) / n
    return torch.tensor((ce + ce_t) / 2)


def test_every_loss_part_by_hand_on_a_padded_tail_batch(demo):
    model, cfg = build("s-mbrec", demo, dim=DIM, batch_size=200, reg=0.5, cl_weight=0.7)
    batches = one_epoch(sampler_of(model, demo, cfg, seeds=(3,)))
    batch = batches[-1]                                   # the tail: 138 records, 62 padding slots
    real = batch.user_weight > 0
    n_real = int(real.sum())
    assert 0 < n_real < 200 and len(batches) == -(-demo.matrices()[-1].nnz // 200)
    _, parts = model.loss(batch)
    dec, enc = model.decoder, model.encoder
    reps = enc()
    pairs = batch.pairs[2]
    users, pos = pairs.users[real], pairs.pos[real]
    negs = batch.extra["negatives"][real]
    with torch.no_grad():
        w = dec.behavior_weight
        alpha = torch.softmax(dec.shares[users] * w, dim=1)
        mixed = sum(alpha[:, k:k + 1] * reps.users[k][users] for k in range(3))
        u = mixed @ dec.user_projection
        items = torch.cat(reps.items, dim=1)
        s_pos = (u * (items[pos] @ dec.pos_projection)).sum(1)
        s_neg = torch.stack([(u * (items[negs[:, j]] @ dec.neg_projection)).sum(1)
                             for j in range(5)], dim=1)
        rec = torch.log(1 + torch.exp(s_neg - s_pos[:, None]).sum(1)).mean()
        l2 = 0.5 * 0.5 * (enc.users[users].pow(2).sum() + 3 * enc.items[pos].pow(2).sum()
                          + 3 * enc.items[negs].pow(2).sum()) / n_real
        cl = {"cl_users_view": _contrast_by_hand(reps.users[2][users], reps.users[0][users], 1.0),
              "cl_users_cart": _contrast_by_hand(reps.users[2][users], reps.users[1][users], 0.5),
              "cl_items_view": _contrast_by_hand(reps.items[2][pos], reps.items[0][pos], 0.2),
              "cl_items_cart": _contrast_by_hand(reps.items[2][pos], reps.items[1][pos], 0.2)}
    assert set(parts) == {"rec", "l2", *cl}
    torch.testing.assert_close(parts["rec"].detach(), rec, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(parts["l2"].detach(), l2, rtol=1e-5, atol=1e-9)
    for name, value in cl.items():
        torch.testing.assert_close(parts[name].detach(), 0.7 * value, rtol=1e-5, atol=1e-7)


def test_scores_release_eval_and_training(demo):
    users = torch.arange(0, demo.n_users, 9)
    model, _ = build("s-mbrec", demo, dim=DIM)
    reps = model.encoder()
    expected = sum(reps.users[k][users] @ reps.items[k].T for k in range(3))
    torch.testing.assert_close(model.scorer()(users), expected.detach(), rtol=1e-5, atol=1e-6)
    model, _ = build("s-mbrec", demo, dim=DIM, score="training")
    dec = model.decoder
    reps = model.encoder()
    alpha = torch.softmax(dec.shares[users] * dec.behavior_weight, dim=1)
    u = sum(alpha[:, k:k + 1] * reps.users[k][users] for k in range(3)) @ dec.user_projection
    i = torch.cat(reps.items, dim=1) @ dec.pos_projection
    torch.testing.assert_close(model.scorer()(users), (u @ i.T).detach(), rtol=1e-5, atol=1e-6)


def test_projections_xavier_by_default_zeros_as_the_release_ran(demo):
    model, cfg = build("s-mbrec", demo, dim=DIM)
    dec = model.decoder
    limit = math.sqrt(6 / (3 * DIM + DIM))
    assert 0 < dec.pos_projection.abs().max() <= limit
    assert not torch.equal(dec.pos_projection, dec.neg_projection)       # W+ and W- not tied
    model, cfg = build("s-mbrec", demo, dim=DIM, projection_init="zeros")
    batch = one_epoch(sampler_of(model, demo, cfg))[0]
    _, parts = model.loss(batch)
    # every score 0: rec is log(1 + 5) and gives the projections no gradient
    assert float(parts["rec"].detach()) == pytest.approx(math.log(6.0))
    parts["rec"].backward()
    for w in (model.decoder.user_projection, model.decoder.pos_projection,
              model.decoder.neg_projection):
        assert w.grad is None or torch.count_nonzero(w.grad) == 0


def test_sampler_visits_every_buy_record_once_with_negatives_outside_buys(demo):
    model, cfg = build("s-mbrec", demo, dim=DIM, batch_size=256)
    sampler = sampler_of(model, demo, cfg, seeds=(5,))
    buys = demo.matrices()[-1]
    bought = user_sets(buys)
    seen = []
    batches = one_epoch(sampler)
    assert len(batches) == sampler.steps_per_epoch == -(-buys.nnz // 256)
    for batch in batches:
        pairs = batch.pairs[2]
        negatives = batch.extra["negatives"]
        assert negatives.shape == (256, 5) and torch.equal(pairs.neg, negatives[:, 0])
        for u, p, w, negs in zip(pairs.users.tolist(), pairs.pos.tolist(),
                                 batch.user_weight.tolist(), negatives.tolist()):
            if w:
                seen.append((u, p))
                assert p in bought[u]
                assert not set(negs) & bought[u]
    coo = buys.tocoo()
    assert sorted(seen) == sorted(zip(coo.row.tolist(), coo.col.tolist()))
    # a later epoch reshuffles
    sampler.start_epoch(1)
    again = sampler.batch(torch.tensor(0), torch.tensor(len(batches)))
    assert not torch.equal(again.pairs[2].users[0], batches[0].pairs[2].users)
