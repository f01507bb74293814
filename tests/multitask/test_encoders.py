"""CIGF's and PKEF's encoders against dense re-computations of their formulas (spec §7.6, §7.7)."""
from __future__ import annotations

import torch

from bench.data.graphs import normalized_graph

from tests.multitask.helpers import build, first_batch


def _dense_graphs(dataset):
    return [torch.tensor(normalized_graph(dataset, "behavior", "left", k).toarray(),
                         dtype=torch.float64) for k in range(dataset.n_behaviors)]


def _leaky(x):
    return torch.where(x > 0, x, 0.1 * x)


def _proj(b, a):
    return ((b * a).sum(-1, keepdim=True) / ((a * a).sum(-1, keepdim=True) + 1e-12)) * a


def test_cigf_attention_propagates_s_not_h(small):
    L = 3
    model, _ = build("cigf", small, cigf_layers=L)
    enc = model.encoder
    with torch.no_grad():   # non-zero attention biases, so that c enters the check too
        for bias in enc.att_biases:
            bias.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(5))
        reps = enc()
    A = _dense_graphs(small)
    K = small.n_behaviors
    e0 = torch.cat([enc.users, enc.items]).detach().double()
    n_u = small.n_users
    for b in range(K):
        def run(use_h):
            s = A[b] @ e0
            h = e0 + s
            total = e0 + h
            for layer in range(1, L):
                i = b * (L - 1) + layer - 1
                att = _leaky(e0 @ enc.att_weights[i].detach().double()
                             + enc.att_biases[i].detach().double())
                source = h if use_h else s
                s = sum(att[:, k:k + 1] * (A[k] @ source) for k in range(K))
                h = h + s
                total = total + h
            return total
        expected = run(use_h=False)
        got = torch.cat([reps.users[b], reps.items[b]]).double()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        wrong = run(use_h=True)
        assert (got - wrong).abs().max() > 100 * (got - expected).abs().max()
        assert got[:n_u].shape == (n_u, 64)


def test_cigf_one_layer_is_own_graph_only(small):
    model, _ = build("cigf", small, cigf_layers=1)
    assert len(model.encoder.att_weights) == 0
    A = _dense_graphs(small)
    with torch.no_grad():
        reps = model.encoder()
    e0 = torch.cat([model.encoder.users, model.encoder.items]).detach().double()
    for b in range(small.n_behaviors):
        expected = e0 + (e0 + A[b] @ e0)
        torch.testing.assert_close(torch.cat([reps.users[b], reps.items[b]]).double(), expected,
                                   rtol=1e-4, atol=1e-5)


def test_cigf_regularizes_embeddings_and_attention(small):
    model, cfg = build("cigf", small)
    batch = first_batch(model, small, cfg)
    _, parts = model.loss(batch)
    enc, dec = model.encoder, model.decoder
    expected = cfg["reg"] * (enc.users.pow(2).sum() + enc.items.pow(2).sum()
                             + sum(w.pow(2).sum() for w in enc.att_weights)
                             + dec.gate.weight.pow(2).sum())
    torch.testing.assert_close(parts["l2"], expected)
    assert set(parts) == {"l2", "bpr"}
    # equal task weights without the x3: lambda_k * 3 is exactly 1
    assert [w * 3.0 for w in model.decoder.weights] == [1.0, 1.0, 1.0]


def test_pkef_cascade_adds_projection_of_parallel_layer(small):
    layers = [2, 1, 3]
    for weight in (0.3, 0.0):
        model, _ = build("pkef", small, pkef_layers=layers, proj_weight=weight)
        enc = model.encoder
        with torch.no_grad():
            reps = enc()
        A = _dense_graphs(small)
        e0 = torch.cat([enc.users, enc.items]).detach().double()
        x = e0
        for k in range(small.n_behaviors):
            h, p = x, e0
            total_h, total_p = h, p
            for _ in range(layers[k]):
                s = A[k] @ h
                p = A[k] @ p + p
                h = s + h + weight * _proj(p, s)
                total_h, total_p = total_h + h, total_p + p
            x = h + x
            got = torch.cat([reps.users[k], reps.items[k]]).double()
            torch.testing.assert_close(got, total_h, rtol=1e-4, atol=1e-5)
            par = torch.cat([reps.extra["parallel_users"][k], reps.extra["parallel_items"][k]])
            torch.testing.assert_close(par.double(), total_p, rtol=1e-4, atol=1e-5)


def test_pkef_losses_include_parallel_and_uni_terms(small):
    model, cfg = build("pkef", small)
    batch = first_batch(model, small, cfg)
    total, parts = model.loss(batch)
    assert set(parts) == {"l2", "parallel", "bpr", "uni"}
    torch.testing.assert_close(total, sum(parts.values()))
    enc = model.encoder
    expected_l2 = cfg["reg"] * (enc.users.pow(2).sum() + enc.items.pow(2).sum()
                                + model.decoder.gate.weight.pow(2).sum())
    torch.testing.assert_close(parts["l2"], expected_l2)
    # the parallel BPR: lambda_k * 3 * mean softplus(-(y_pos - y_neg)) on the main pairs
    reps = enc()
    # over the real pairs (padding slots have weight 0)
    expected = 0.0
    for k, w in enumerate(cfg["loss_weights"]):
        pairs = batch.pairs[k]
        if w == 0:
            continue
        real = pairs.weight == 1.0
        assert (~real).any() and (pairs.weight[~real] == 0.0).all()
        users, pos_items, neg_items = pairs.users[real], pairs.pos[real], pairs.neg[real]
        yu, yv = reps.extra["parallel_users"][k], reps.extra["parallel_items"][k]
        pos = cfg["mult"] * (yu[users] * yv[pos_items]).sum(-1)
        neg = cfg["mult"] * (yu[users] * yv[neg_items]).sum(-1)
        expected = expected + w * 3 * torch.nn.functional.softplus(neg - pos).mean()
    torch.testing.assert_close(parts["parallel"], expected)
    # dropped on request; PKEF+DFME keeps it next to DFME's contrastive loss
    model, cfg = build("pkef", small, parallel_loss=False)
    assert "parallel" not in model.loss(first_batch(model, small, cfg))[1]
    model, cfg = build("pkef+dfme", small)
    assert {"parallel", "cl", "bpr", "l2"} <= set(model.loss(first_batch(model, small, cfg))[1])
