"""MBGCN (spec §7.3): per-user behavior weights, the item-item part and its graph options, the score
decomposition, dropout in training only, and E from the normalized MF pretraining."""
from __future__ import annotations

import dataclasses
import itertools

import torch

from bench.data.graphs import propagate
from bench.train import streams
from bench.train.samplers import run_batches
from bench.train.seeds import generator
from tests.baselines.helpers import build, dense, one_epoch, sampler_of, user_sets


def test_behavior_weights_are_normalized_per_user(demo):
    model, _ = build("mbgcn", demo, mgnn_weight=[0.5, 2.0, 1.0])
    model.eval()
    share = model.encoder().extra["behavior_share"].detach()
    deg = torch.stack([dense(m).sum(1) for m in demo.matrices()], dim=1)
    weighted = deg * torch.tensor([0.5, 2.0, 1.0])
    torch.testing.assert_close(share, weighted / (weighted.sum(1, keepdim=True) + 1e-8))
    torch.testing.assert_close(share.sum(1), torch.ones(demo.n_users))


def test_user_item_part_matches_the_formulas(demo):
    model, cfg = build("mbgcn", demo)
    model.eval()
    enc = model.encoder
    reps = enc()
    eu, ev = enc.users.detach(), enc.items.detach()
    r = [dense(m) for m in demo.matrices()]
    deg = torch.stack([m.sum(1) for m in r], dim=1)
    weighted = deg * enc.behavior_weight.detach()
    share = weighted / (weighted.sum(1, keepdim=True) + 1e-8)
    h_u = sum(share[:, t:t + 1] * (r[t] @ ev) / (deg[:, t:t + 1] + 1e-8) for t in range(len(r)))
    h_i = r[-1].T @ eu                                   # unnormalized sum over buyers
    w = enc.neighbour_weight.detach()
    torch.testing.assert_close(reps.extra["f_users"].detach(), torch.cat([eu, h_u @ w], 1),
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(reps.extra["f_items"].detach(), torch.cat([ev, h_i @ w], 1),
                               rtol=1e-4, atol=1e-5)


def test_item_item_part_uses_binary_cooccurrence_without_diagonal(demo):
    model, _ = build("mbgcn", demo)
    model.eval()
    enc = model.encoder
    reps = enc()
    ev = enc.items.detach()
    for t, matrix in enumerate(demo.matrices()):
        r = dense(matrix)
        g = ((r.T @ r) > 0).float()
        g.fill_diagonal_(0)
        torch.testing.assert_close(enc.item_graphs[t].degree, g.sum(1))
        neighbours = g @ ev / (g.sum(1, keepdim=True) + 1e-8)
        p = torch.cat([ev, neighbours @ enc.prop_weights[t].detach()], 1)
        torch.testing.assert_close(reps.extra["p_items"][t].detach(), p, rtol=1e-4, atol=1e-6)
        q = r @ p / (r.sum(1, keepdim=True) + 1e-8)
        torch.testing.assert_close(reps.extra["q_users"][t].detach(), q, rtol=1e-4, atol=1e-6)


def test_sparse_dense_and_count_item_graphs(demo):
    scores = {}
    users = torch.arange(0, demo.n_users, 7)
    for storage in ("dense", "sparse"):
        model, _ = build("mbgcn", demo, item_graph_storage=storage)
        assert {g.storage for g in model.encoder.item_graphs} == {storage}
        scores[storage] = model.scorer()(users)
    torch.testing.assert_close(scores["dense"], scores["sparse"], rtol=1e-4, atol=1e-5)
    model, _ = build("mbgcn", demo, item_graph="count")
    enc = model.encoder
    ev = torch.randn(demo.n_items, 4, generator=generator(3))
    for t, matrix in enumerate(demo.matrices()):
        r = dense(matrix)
        g = r.T @ r
        g.fill_diagonal_(0)                               # co-occurrence counts, zero diagonal
        torch.testing.assert_close(enc.item_graphs[t].apply(ev), g @ ev, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(enc.item_graphs[t].degree, g.sum(1))


def test_score_is_score1_plus_lamb_item_item_and_mean_of_behavior_tables(demo):
    model, _ = build("mbgcn", demo, lamb=0.7)
    model.eval()
    reps = model.encoder()
    users = torch.arange(0, demo.n_users, 5)
    ex = reps.extra
    score1 = ex["f_users"][users] @ ex["f_items"].T
    score2 = sum(ex["q_users"][t][users] @ ex["beh_weights"][t] @ ex["p_items"][t].T
                 for t in range(demo.n_behaviors)) / demo.n_behaviors
    got = model.scorer()(users)
    torch.testing.assert_close(got, (score1 + 0.7 * score2).detach(), rtol=1e-4, atol=1e-5)
    per_behavior = sum(reps.users[t][users] @ reps.items[t].T for t in range(demo.n_behaviors))
    torch.testing.assert_close(got, (per_behavior / demo.n_behaviors).detach(),
                               rtol=1e-4, atol=1e-5)


def test_dropout_only_in_training_and_repeatable(demo):
    model, cfg = build("mbgcn", demo)
    step0, step1 = itertools.islice(run_batches(sampler_of(model, demo, cfg, seeds=(2,))), 2)
    assert not torch.equal(step0.noise, step1.noise)
    other_key = dataclasses.replace(step0, noise=step1.noise)   # step 0's pairs, step 1's masks
    no_key = dataclasses.replace(step0, noise=None)
    model.train()
    first = model.loss(step0)[0].item()
    assert model.loss(step0)[0].item() == first        # masks are hashes of the step's key
    assert model.loss(other_key)[0].item() != first    # another step draws other masks
    assert model.loss(no_key)[0].item() != first       # without masks: dropout did act
    twin, _ = build("mbgcn", demo)
    twin.train()
    assert twin.loss(step0)[0].item() == first         # same init seed, same key: same masks
    # each of node and message dropout draws from the key on its own
    for node, message in ((0.2, 0.0), (0.0, 0.2)):
        alone, _ = build("mbgcn", demo, node_dropout=node, message_dropout=message)
        alone.train()
        assert alone.loss(step0)[0].item() != alone.loss(other_key)[0].item(), (node, message)
    model.eval()
    with torch.no_grad():
        evaluated = float(model.loss(step0)[0])
        assert evaluated == float(model.loss(other_key)[0]) == float(model.loss(no_key)[0])


def test_message_dropout_masks_at_rate_p_and_rescales(demo):
    model, _ = build("mbgcn", demo, message_dropout=0.2)
    model.train()
    x = torch.ones(4000, 8)
    noise = streams.run_keys([3])[0]
    dropped = model.decoder._drop(x, noise, 0)
    kept = dropped != 0
    assert abs(kept.float().mean().item() - 0.8) < 0.01          # 32000 draws: sd 0.0022
    torch.testing.assert_close(dropped[kept], torch.full((int(kept.sum()),), 1 / 0.8))
    assert torch.equal(model.decoder._drop(x, noise, 0), dropped)
    assert not torch.equal(model.decoder._drop(x, noise, 1), dropped)   # another draw number
    model.eval()
    assert torch.equal(model.decoder._drop(x, noise, 0), x)


def test_record_sampler_covers_every_target_record(demo):
    model, cfg = build("mbgcn", demo, batch_size=100)
    sampler = sampler_of(model, demo, cfg, seeds=(8,))
    bought = user_sets(demo.matrices()[-1])
    seen, padding = [], 0
    for batch in one_epoch(sampler):
        pairs = batch.pairs[demo.n_behaviors - 1]
        assert len(pairs) == 100                          # fixed shape, padding included
        for u, p, n, w in zip(pairs.users.tolist(), pairs.pos.tolist(), pairs.neg.tolist(),
                              pairs.weight.tolist()):
            assert n not in bought[u]
            if w == 1.0:
                seen.append((u, p))
            else:
                assert w == 0.0
                padding += 1
    expected = sorted((u, i) for u in range(demo.n_users) for i in bought[u])
    assert sorted(seen) == expected
    assert padding == sampler.steps_per_epoch * 100 - len(expected)


def test_reweighted_relation_graphs_forward_and_backward(demo):
    """Node dropout re-weights R_t per step: R and R^T views must agree with the dense matrix."""
    model, _ = build("mbgcn", demo)
    relation = model.encoder.relations[1]
    gen = generator(5)
    values = torch.rand(relation.nnz, generator=gen)      # one per entry, forward CSR order
    csr = demo.matrices()[1]
    owners = torch.repeat_interleave(torch.arange(demo.n_users),
                                     torch.as_tensor(csr.indptr[1:] - csr.indptr[:-1]))
    full = torch.zeros(demo.n_users, demo.n_items)
    full[owners, torch.as_tensor(csr.indices, dtype=torch.long)] = values
    for transpose, dense_op in ((False, full), (True, full.T)):
        x = torch.randn(dense_op.shape[1], 3, generator=gen, requires_grad=True)
        out = propagate(relation.view(values, transpose=transpose), x)
        torch.testing.assert_close(out, dense_op @ x.detach(), rtol=1e-5, atol=1e-5)
        grad_out = torch.randn(out.shape, generator=gen)
        (grad,) = torch.autograd.grad(out, x, grad_out)
        torch.testing.assert_close(grad, dense_op.T @ grad_out, rtol=1e-5, atol=1e-5)


def test_mbgcn_starts_from_the_normalized_mf_by_default(demo):
    model, cfg = build("mbgcn", demo, pretrain_epochs=3)
    assert cfg["pretrain_model"] == "mf" and cfg["epochs"] == 400
    enc = model.encoder
    assert enc.pretraining is not None and enc.pretraining.best_recall is not None
    torch.testing.assert_close(enc.users.detach(),
                               torch.nn.functional.normalize(enc.pretraining.users, dim=1))
    scratch, _ = build("mbgcn", demo, pretrain_model="none")
    assert scratch.encoder.pretraining is None
    assert not torch.allclose(scratch.encoder.users.norm(dim=1), torch.ones(demo.n_users))
