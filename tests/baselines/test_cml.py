"""CML (model-specs-table2 Part 2): the behavior GCN by hand, the contrastive loss against the
release's set rule, the weight net against torch layers, the optimizer pieces against torch, the
sampler's invariants and the meta list's cursor, and what one training step does to phi."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from baselines.multi import cml_parts as parts
from baselines.multi.cml_sampler import meta_candidates, meta_windows
from bench.train import streams
from bench.train.seeds import generator
from tests.baselines.helpers import build, dense, first_batch, one_epoch, sampler_of, user_sets


def streams_key() -> torch.Tensor:
    return streams.run_keys([11])[0]


def test_encoder_is_the_unnormalized_sigmoid_gcn(demo):
    model, cfg = build("cml", demo, dim=8)
    enc = model.encoder
    a = [dense(m) for m in demo.matrices()]            # binary, not normalized
    x_u, x_i = enc.users.detach(), enc.items.detach()
    lay_u, lay_i, beh_u, beh_i = [], [], [], []
    for layer in range(cfg["cml_layers"]):
        p = [ak @ x_i for ak in a]
        q = [ak.T @ x_u for ak in a]
        w_u, w_i = enc.u_w[layer].detach(), enc.i_w[layer].detach()
        x_u = torch.sigmoid(sum(p) / len(p) @ w_u)
        x_i = torch.sigmoid(sum(q) / len(q) @ w_i)
        lay_u.append(x_u)
        lay_i.append(x_i)
        beh_u.append([torch.sigmoid(pk @ w_u) for pk in p])
        beh_i.append([torch.sigmoid(qk @ w_i) for qk in q])
    e_u = torch.cat(lay_u, 1) @ enc.u_cat.detach()
    e_i = torch.cat(lay_i, 1) @ enc.i_cat.detach()
    reps = enc()
    torch.testing.assert_close(reps.extra["user"].detach(), e_u, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reps.extra["item"].detach(), e_i, rtol=1e-4, atol=1e-5)
    for k in range(demo.n_behaviors):     # z_k through the same concatenation weights
        z_u = torch.cat([b[k] for b in beh_u], 1) @ enc.u_cat.detach()
        z_i = torch.cat([b[k] for b in beh_i], 1) @ enc.i_cat.detach()
        torch.testing.assert_close(reps.users[k].detach(), z_u, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(reps.items[k].detach(), z_i, rtol=1e-4, atol=1e-5)
    users = torch.arange(0, demo.n_users, 9)
    torch.testing.assert_close(model.scorer()(users), (e_u[users] @ e_i.T), rtol=1e-4, atol=1e-5)


def test_contrastive_loss_follows_the_release_set_rule():
    g = generator(3)
    target, behavior = torch.randn(12, 4, generator=g), torch.randn(12, 4, generator=g)
    # 9 slots with repeated users, the last two padding; chunks of 3 slots
    users = torch.tensor([5, 2, 5, 7, 1, 2, 9, 3, 3])
    weight = torch.tensor([1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.float32)
    got = parts.contrastive(target, behavior, users, weight, chunk=3)
    real = [int(u) for u, w in zip(users, weight) if w > 0]
    d = target.shape[1]
    for a, u in enumerate(real):
        chunk_users = set(real[(a // 3) * 3:(a // 3) * 3 + 3])
        others = set(real) - chunk_users                      # index_set - batch_index_set
        neg = sum(math.exp(float(target[u] @ behavior[v]) / d) for v in others)
        pos = math.exp(float(target[u] @ behavior[u]) / d)
        expected = -math.log(1e-8 + pos / (neg + 1e-8))
        assert float(got[a]) == pytest.approx(expected, rel=1e-5), a


def test_contrastive_loss_with_one_chunk_has_no_negatives():
    """Round 2 as released: 12 users in one chunk of 18, so c = -log(1e-8 + pos * 1e8)."""
    g = generator(4)
    z = torch.randn(20, 16, generator=g) * 0.3
    users = torch.arange(12)
    got = parts.contrastive(z, z, users, torch.ones(12), chunk=18)
    pos = torch.exp((z[:12] * z[:12]).sum(-1) / 16)
    torch.testing.assert_close(got, -torch.log(1e-8 + pos / 1e-8))


def _torch_weight_net(phi: dict[str, torch.Tensor], d: int):
    """MV_Net.MetaWeightNet's layers, loaded from phi."""
    h = (3 * d) // 2
    layers = {}
    for head, third in (("ssl", 2 * d), ("rs", d)):
        shapes = ((f"{head}1", (3 * d, h)), (f"{head}2", (h, 1)), (f"{head}3", (third, 1)))
        for name, (i, o) in shapes:
            lin = nn.Linear(i, o)
            with torch.no_grad():
                lin.weight.copy_(phi[f"{name}_w"])
                lin.bias.copy_(phi[f"{name}_b"])
            layers[name] = lin
    prelu = nn.PReLU()
    bn = nn.BatchNorm1d(1)
    with torch.no_grad():
        prelu.weight.copy_(phi["prelu"])
        bn.weight.copy_(phi["bn_w"])
        bn.bias.copy_(phi["bn_b"])
    return layers, prelu, bn.train()


def test_weight_head_matches_the_release_layers():
    d, n, p = 8, 10, 0.8
    g = generator(5)
    phi = parts.unpack_phi(parts.init_phi(d, g), d)
    layers, prelu, bn = _torch_weight_net(phi, d)
    loss = torch.rand(n, generator=g) + 0.2
    e_u, z_k = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    masks = parts.dropout_masks(streams_key(), 3, n, (3 * d) // 2, p)
    weight = torch.ones(n)
    with torch.no_grad():
        # BPR head: x = [l 1_d || e_u || z_k], x3 = l e_u; omega = w1 + w3
        x = torch.cat([loss[:, None].repeat(1, d), e_u, z_k], 1)
        w1 = prelu(layers["rs1"](x)) * masks[0]
        w1 = math.sqrt(3 * d) * (layers["rs2"](w1).squeeze() * masks[1])
        w1 = torch.sigmoid(bn(w1[:, None])).squeeze()
        w3 = prelu(layers["rs3"](loss[:, None] * e_u)) * masks[2][:, None]
        w3 = torch.sigmoid(bn(w3)).squeeze()
        got1, got3 = parts.weight_head(phi, "rs", loss, e_u, z_k, weight, masks)
        torch.testing.assert_close(got1, w1)
        torch.testing.assert_close(got3, w3)
        # contrastive head: x = [c 1_d || z_k || e_u], x3 = c [z_k || e_u]
        x = torch.cat([loss[:, None].repeat(1, d), z_k, e_u], 1)
        s1 = prelu(layers["ssl1"](x)) * masks[0]
        s1 = math.sqrt(3 * d) * layers["ssl2"](s1).squeeze() * masks[1]
        s1 = torch.sigmoid(bn(s1[:, None]))
        s3 = prelu(layers["ssl3"](loss[:, None] * torch.cat([z_k, e_u], 1))) * masks[2][:, None]
        s3 = torch.sigmoid(bn(s3))
        got1, got3 = parts.weight_head(phi, "ssl", loss, z_k, e_u, weight, masks)
        torch.testing.assert_close(got1, s1.squeeze())
        torch.testing.assert_close(got3, s3.squeeze())


def test_batch_norm_ignores_padding_slots():
    g = generator(6)
    phi = parts.unpack_phi(parts.init_phi(4, g), 4)
    x = torch.randn(7, generator=g)
    weight = torch.tensor([1, 1, 1, 1, 1, 0, 0], dtype=torch.float32)
    padded = x.clone()
    padded[5:] = 100.0
    full = parts.masked_batch_norm(x[:5], torch.ones(5), phi)
    torch.testing.assert_close(parts.masked_batch_norm(padded, weight, phi)[:5], full)
    bn = nn.BatchNorm1d(1).train()
    torch.testing.assert_close(full, bn(x[:5, None]).squeeze().detach())


def test_dropout_masks_keep_a_fifth_scaled_by_five():
    first, second, third = parts.dropout_masks(streams_key(), 0, 4000, 24, 0.8)
    values = torch.cat([first.reshape(-1), second, third])
    assert set(values.unique().tolist()) == {0.0, 5.0}
    assert abs(float((values > 0).float().mean()) - 0.2) < 0.01


def test_first_adamw_step_is_a_fresh_torch_adamw_step():
    g = generator(7)
    p0 = torch.randn(5, 3, generator=g)
    grad = torch.randn(5, 3, generator=g) * 1e-3
    grad[0, 0] = 0.0
    param = nn.Parameter(p0.clone())
    opt = torch.optim.AdamW([param], lr=3e-4, weight_decay=1e-4)
    param.grad = grad.clone()
    opt.step()
    (ours,) = parts.first_adamw_step([p0], [grad], 3e-4, 1e-4)
    torch.testing.assert_close(ours, param.detach(), rtol=0, atol=1e-7)


def test_persistent_adamw_step_matches_torch_over_three_steps():
    g = generator(8)
    p0 = torch.randn(20, generator=g)
    param = nn.Parameter(p0.clone())
    opt = torch.optim.AdamW([param], lr=1e-3, weight_decay=1e-4)
    ours, m, v, step = p0.clone(), torch.zeros(20), torch.zeros(20), torch.zeros(())
    for _ in range(3):
        grad = torch.randn(20, generator=g)
        param.grad = grad.clone()
        opt.step()
        parts.adamw_step_(ours, grad, m, v, step, torch.tensor(1e-3), 1e-4)
        torch.testing.assert_close(ours, param.detach(), rtol=0, atol=1e-7)


def test_clip_norm_matches_torch():
    g = generator(9)
    grads = [torch.randn(4, 3, generator=g) * 10, torch.randn(6, generator=g) * 10]
    params = [nn.Parameter(torch.zeros_like(x)) for x in grads]
    for p, x in zip(params, grads):
        p.grad = x.clone()
    nn.utils.clip_grad_norm_(params, 20.0)
    for ours, p in zip(parts.clip_norm(grads, 20.0), params):
        torch.testing.assert_close(ours, p.grad)
    small = [x * 1e-3 for x in grads]         # under the threshold: unchanged
    for ours, x in zip(parts.clip_norm(small, 20.0), small):
        torch.testing.assert_close(ours, x)


def test_cyclic_lr_is_torch_cyclic_lr_stepped_per_epoch():
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, 1e-4, 2e-3, step_size_up=3, step_size_down=7,
                                              mode="triangular", cycle_momentum=False)
    for epoch in range(25):
        assert parts.cyclic_lr(epoch, 1e-4, 2e-3, 3, 7) == pytest.approx(
            opt.param_groups[0]["lr"], rel=1e-9), epoch
        opt.step()
        sched.step()


def test_meta_windows_follow_the_release_cursor():
    positions, weights = meta_windows(300, 5, 128)
    starts_ends = [(int(p[w > 0][0]), int(p[w > 0][-1]) + 1) for p, w in zip(positions, weights)]
    # end != len: start = (start + 128) % (len - 1); end == len: back to 0
    assert starts_ends == [(0, 128), (128, 256), (256, 300), (0, 128), (128, 256)]
    positions, weights = meta_windows(50, 2, 128)      # a list shorter than one window
    assert weights.sum(1).tolist() == [50, 50]


def test_meta_candidates_rule():
    def m(rows):
        return sp.csr_matrix((np.ones(len(rows)), (rows, np.zeros(len(rows), dtype=int))),
                             shape=(5, 2))
    view, cart, buy = m([0, 1, 2, 3]), m([0, 2, 4]), m([0, 1, 3, 4])
    # user 0: all; 1: view+buy; 2: no buy; 3: view+buy; 4: cart+buy without view
    assert meta_candidates([view, cart, buy], "all-or-view-only").tolist() == [0, 1, 3]
    assert meta_candidates([view, cart, buy], "buyers").tolist() == [0, 1, 3, 4]


@pytest.mark.parametrize("round2", ["release", "fixed"])
def test_sampler_records_and_meta_pairs(demo, round2):
    model, cfg = build("cml", demo, batch_size=512, cml_round2=round2)
    batch = first_batch(model, demo, cfg)
    sets = [user_sets(m) for m in demo.matrices()]
    valid = batch.user_weight > 0
    K = demo.n_behaviors
    for k in range(K):
        pk = batch.pairs[k]
        for u, pos, neg, w, v in zip(pk.users.tolist(), pk.pos.tolist(), pk.neg.tolist(),
                                     pk.weight.tolist(), valid.tolist()):
            assert neg not in sets[k][u]
            if k == K - 1:
                assert w == float(v) and pos in sets[k][u]          # the record itself
            elif v:
                assert w == float(bool(sets[k][u]))                 # no pair without the behavior
                assert not w or pos in sets[k][u]
    meta = batch.extra
    meta_users = meta["meta_users"][meta["meta_weight"] > 0].tolist()
    assert len(meta_users) == min(cfg["cml_meta_batch"], len(meta_candidates(
        demo.matrices(), cfg["cml_meta_users"])))
    for k in range(K):
        source = sets[K - 1] if round2 == "release" else sets[k]
        pk = meta["meta_pairs"][k]
        real = pk.weight > 0
        counts = {u: min(cfg["cml_samp_num"], len(source[u])) for u in meta_users}
        assert int(real.sum()) == sum(counts.values())
        for u, pos, neg in zip(pk.users[real].tolist(), pk.pos[real].tolist(),
                               pk.neg[real].tolist()):
            assert pos in source[u] and neg not in source[u]


def test_every_buy_record_once_per_epoch(demo):
    model, cfg = build("cml", demo, batch_size=300)
    batches = one_epoch(sampler_of(model, demo, cfg))
    seen = []
    for b in batches:
        keep = b.user_weight > 0
        seen += list(zip(b.users[keep].tolist(), b.pairs[demo.n_behaviors - 1].pos[keep].tolist()))
    buy = demo.matrices()[-1].tocoo()
    assert sorted(seen) == sorted(zip(buy.row.tolist(), buy.col.tolist()))


def test_a_training_step_moves_phi_twice_and_returns_round_three(demo):
    model, cfg = build("cml", demo, batch_size=2048)
    batch = first_batch(model, demo, cfg)
    dec = model.decoder
    before = dec.phi.clone()
    with torch.no_grad():                  # evaluation-style call: no meta rounds
        model.loss(batch)
    assert torch.equal(dec.phi, before) and float(dec.phi_steps) == 0
    dec.trace = {}
    total, terms = model.loss(batch)
    assert float(dec.phi_steps) == 2 and not torch.equal(dec.phi, before)
    assert not dec.phi.requires_grad       # phi is stepped by its own AdamW, not the trainer's
    # J's aggregation, by hand from round 3's per-row terms
    tr, K, B = dec.trace, demo.n_behaviors, cfg["batch_size"]
    bpr = sum(float((tr[f"round3/bpr_weights/{k}"] * tr[f"round3/bpr_rows/{k}"]
                     * batch.pairs[k].weight).sum()) for k in range(K)) / K / B
    assert float(terms["bpr"].detach()) == pytest.approx(bpr, rel=1e-5)
    reps = model.encoder()
    buy = batch.pairs[K - 1]
    e_u, e_i = reps.extra["user"].detach(), reps.extra["item"].detach()
    reg = float((((e_u[buy.users] ** 2).sum(1) + (e_i[buy.pos] ** 2).sum(1)
                  + (e_i[buy.neg] ** 2).sum(1)) * buy.weight).sum())
    assert float(terms["reg"].detach()) == pytest.approx(cfg["cml_reg"] * reg / B, rel=1e-5)
    # round 3's weights carry no gradient: the loss's gradient reaches theta only
    total.backward()
    assert model.encoder.users.grad is not None


def test_lift_product_differentiates_under_torch_func_and_vmap(demo):
    from baselines.multi.cml import _LiftProduct, _graphs
    graph = _graphs(demo, torch.device("cpu"))[0]
    a = dense(sp.csr_matrix(graph.forward_csr.to_dense().numpy()))
    x = torch.randn(2, a.shape[0], 3, generator=generator(12))

    def f(t):
        return torch.sigmoid(_LiftProduct.apply(t, graph)).pow(2).sum()

    got = torch.func.vmap(torch.func.grad(f))(x)
    for s in range(2):
        t = x[s].clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(torch.sigmoid(a @ t).pow(2).sum(), [t])
        torch.testing.assert_close(got[s], expected, rtol=1e-5, atol=1e-6)
