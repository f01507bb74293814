"""BCIPM (spec §7.8): the encoder as written, u_point as a SUM over the user's buys, the two-branch
loss, the inference score, and the record sampler."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from baselines.multi.bcipm import lightgcn_as_written
from bench.kernels import plain_kernels
from bench.train.seeds import generator
from tests.baselines.helpers import build, lgn, one_epoch, sampler_of, user_sets


def _as_written(a: torch.Tensor, x: torch.Tensor, layers: int) -> torch.Tensor:
    out, layer = x, x
    for depth in range(1, layers + 1):
        layer = F.normalize(a @ layer, dim=-1)
        out = out + layer / depth + layer              # both x_l / l and x_l are kept
    return out


def test_global_then_target_encoder(demo):
    model, _ = build("bcipm", demo)
    model.eval()     # in training under its own decoder the encoder skips the summed tables
    enc = model.encoder
    reps = enc()
    x0 = torch.cat([enc.users, enc.items]).detach()
    g = _as_written(lgn(demo.union(), eps=1e-7), x0, 2)
    t = _as_written(lgn(demo.matrices()[-1], eps=1e-7), g, 2)   # runs on the global output
    u = demo.n_users
    torch.testing.assert_close(reps.extra["global_users"].detach(), g[:u], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reps.extra["target_items"].detach(), t[u:], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reps.users[-1].detach(), (g + t)[:u], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reps.items[0].detach(), g[u:], rtol=1e-4, atol=1e-5)


def test_u_point_is_a_sum_over_the_users_buys(demo):
    model, _ = build("bcipm", demo)
    dec = model.decoder
    reps = model.encoder()
    gu, gv = reps.extra["global_users"], reps.extra["global_items"]
    users = torch.tensor([3, 0, 17, 3, 150])
    points, counts = dec.user_points(gu, gv, users)
    bought = user_sets(demo.matrices()[-1])
    b = torch.tensor([demo.n_behaviors - 1])
    for row, u in enumerate(users.tolist()):
        items = sorted(bought[u])
        assert counts[row] == len(items) > 1
        expected = sum(dec.aggregate(gu[u:u + 1], gv[j:j + 1], b)[0] for j in items)
        torch.testing.assert_close(points[row], expected, rtol=1e-5, atol=1e-6)


def test_score_mixes_u_point_and_graph_term_with_lambda(demo):
    model, _ = build("bcipm", demo)
    dec = model.decoder
    reps = model.encoder()
    ex = reps.extra
    users = torch.arange(0, demo.n_users, 19)
    got = model.scorer()(users)
    bought = user_sets(demo.matrices()[-1])
    b = torch.tensor([demo.n_behaviors - 1])
    for row, u in enumerate(users.tolist()):
        point = sum(dec.aggregate(ex["global_users"][u:u + 1], ex["global_items"][j:j + 1], b)[0]
                    for j in bought[u])
        lam = 1.0 / (len(bought[u]) + 1e-8)
        expected = ((1 - lam) * ex["global_items"] @ point
                    + lam * (ex["global_items"] + ex["target_items"])
                    @ (ex["global_users"][u] + ex["target_users"][u]))
        torch.testing.assert_close(got[row], expected.detach(), rtol=1e-4, atol=1e-5)


def test_loss_is_weighted_bce_plus_bpr_plus_frobenius_reg(demo):
    model, cfg = build("bcipm", demo, log_reg=0.3, reg=0.5, batch_size=256)
    batch = one_epoch(sampler_of(model, demo, cfg, seeds=(2,)))[-1]
    real = batch.user_weight == 1.0
    assert (~real).any() and real.sum() > 10      # the epoch's last batch has padding records
    total, parts = model.loss(batch)
    assert set(parts) == {"bce", "bpr", "reg"}
    reps = model.encoder()
    gu, gv = reps.extra["global_users"], reps.extra["global_items"]
    dec = model.decoder
    # the pointwise branch on the real records only
    users, items = batch.users[real], batch.extra["record_items"][real]
    negs, behs = batch.extra["negatives"][real], batch.extra["record_behaviors"][real]
    logits, labels = [], []
    for col in range(negs.shape[1] + 1):
        it = items if col == 0 else negs[:, col - 1]
        a = dec.aggregate(gu[users], gv[it], behs)
        logits.append((a * gv[it]).sum(-1))
        labels.append(torch.full((len(users),), 1.0 if col == 0 else 0.0))
    bce = F.binary_cross_entropy(torch.sigmoid(torch.cat(logits)), torch.cat(labels))
    torch.testing.assert_close(parts["bce"], 0.3 * bce, rtol=1e-4, atol=1e-6)
    reg = 0.5 * (model.encoder.users.norm() / (demo.n_users + 1)
                 + model.encoder.items.norm() / (demo.n_items + 1))
    torch.testing.assert_close(parts["reg"], reg)
    torch.testing.assert_close(total, parts["bce"] + parts["bpr"] + parts["reg"])
    # the pairwise branch, one real (u, pos, neg) triple at a time
    tu, tv = reps.extra["target_users"], reps.extra["target_items"]
    bought = user_sets(demo.matrices()[-1])
    target = torch.tensor([demo.n_behaviors - 1])
    pairs = batch.pairs[demo.n_behaviors - 1]
    assert pairs.count() > 10
    bprs = []
    for u, pos, neg, w in zip(pairs.users.tolist(), pairs.pos.tolist(), pairs.neg.tolist(),
                              pairs.weight.tolist()):
        if w == 0.0:
            continue
        point = sum(dec.aggregate(gu[u:u + 1], gv[j:j + 1], target)[0] for j in bought[u])
        lam = 1.0 / (len(bought[u]) + 1e-8)
        y = [(1 - lam) * point @ gv[i] + lam * (gu[u] + tu[u]) @ (gv[i] + tv[i])
             for i in (pos, neg)]
        bprs.append(-torch.log(1e-10 + torch.sigmoid(y[0] - y[1])))
    torch.testing.assert_close(parts["bpr"], 0.7 * torch.stack(bprs).mean(), rtol=1e-4, atol=1e-6)


def test_sampler_covers_every_record_with_all_behavior_negatives(demo):
    model, cfg = build("bcipm", demo, batch_size=300)
    sampler = sampler_of(model, demo, cfg, seeds=(9,))
    union = user_sets(demo.union())
    per_behavior = [user_sets(m) for m in demo.matrices()]
    target = demo.n_behaviors - 1
    records, padding = [], 0
    batches = one_epoch(sampler)
    assert len(batches) == sampler.steps_per_epoch
    for batch in batches:
        users = batch.users.tolist()
        real = [w == 1.0 for w in batch.user_weight.tolist()]
        padding += real.count(False)
        negs = batch.extra["negatives"]
        assert len(users) == 300 and negs.shape == (300, 4)            # fixed shapes
        for row, (u, i, b) in enumerate(zip(users, batch.extra["record_items"].tolist(),
                                            batch.extra["record_behaviors"].tolist())):
            if real[row]:
                records.append((u, i, b))
            assert not set(negs[row].tolist()) & union[u]
        # one target triple per record, real where the record is and its user has buys
        pairs = batch.pairs[target]
        assert pairs.users.tolist() == users
        assert pairs.weight.tolist() == [float(r and bool(per_behavior[target][u]))
                                         for u, r in zip(users, real)]
        for u, p, n, w in zip(users, pairs.pos.tolist(), pairs.neg.tolist(),
                              pairs.weight.tolist()):
            if w:
                assert p in per_behavior[target][u]
            assert n not in union[u]
        # u_point: every real record's anchor is a real record of the same user, and the point
        # slots owned by that anchor hold the user's target items, each once
        anchor = batch.extra["record_anchor"].tolist()
        owned = {}
        for slot, item, w in zip(batch.extra["point_slot"].tolist(),
                                 batch.extra["point_items"].tolist(),
                                 batch.extra["point_weight"].tolist()):
            if w:
                owned.setdefault(slot, []).append(item)
        anchors = set()
        for row, u in enumerate(users):
            if real[row]:
                a = anchor[row]
                assert users[a] == u and real[a]
                anchors.add(a)
                assert sorted(owned.get(a, [])) == sorted(per_behavior[target][u])
        assert set(owned) <= anchors          # no slot belongs to a padding or non-anchor row
    expected = sorted((u, i, b) for b, sets in enumerate(per_behavior)
                      for u in range(demo.n_users) for i in sets[u])
    assert sorted(records) == expected
    assert padding == len(batches) * 300 - len(expected)


def test_aggregator_is_the_gru_like_gate(demo):
    model, _ = build("bcipm", demo)
    dec = model.decoder
    with torch.no_grad():
        dec.behavior_vectors.add_(0.1)       # trained vectors are no longer one-hot
    gen = generator(4)
    u, i = torch.randn(6, 64, generator=gen), torch.randn(6, 64, generator=gen)
    behaviors = torch.tensor([0, 1, 2, 2, 1, 0])
    b = dec.behavior_vectors[behaviors]
    gates = torch.sigmoid(torch.cat([u, i, b], 1) @ dec.w_rz)
    reset, update = gates[:, :64], gates[:, 64:]
    expected = update * torch.tanh(torch.cat([reset * u, i, b], 1) @ dec.w_u)
    torch.testing.assert_close(dec.aggregate(u, i, behaviors), expected, rtol=1e-5, atol=1e-6)


def test_aggregate_rows_shares_each_users_products_and_equals_the_gate(demo):
    model, _ = build("bcipm", demo)
    dec = model.decoder
    gen = generator(5)
    users, items = torch.randn(4, 64, generator=gen), torch.randn(9, 64, generator=gen)
    user_at = torch.tensor([0, 0, 3, 1, 0, 2, 2, 3, 1])
    behaviors = torch.tensor([0, 1, 2, 2, 1, 0, 2, 2, 1])
    torch.testing.assert_close(dec.aggregate_rows(users, user_at, items, behaviors),
                               dec.aggregate(users[user_at], items, behaviors),
                               rtol=1e-5, atol=1e-6)


def test_fused_encoder_stack_matches_pytorchs_own_ops(demo):
    """The hand-written backward of the encoder stack gives the plain composition's gradients."""
    model, _ = build("bcipm", demo)
    enc = model.encoder
    weights = torch.randn(demo.n_users + demo.n_items, 64, generator=generator(6))
    grads = []
    for plain in (False, True):
        with plain_kernels(plain):
            out = lightgcn_as_written(enc.global_graph, torch.cat([enc.users, enc.items]), 3)
            grads.append((out.detach(), *torch.autograd.grad((out * weights).sum(),
                                                              [enc.users, enc.items])))
    for fused, reference in zip(*grads):
        torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-5)
