"""RGCN (model-specs-table2 Part 1, adaptation [I]): the relational layers against a dense hand
computation (per-relation mean, inverse relations, root term, bias, ReLU between layers only), the
basis decomposition and per-type root, the scores and the BPR / BCE losses with the ego L2."""
from __future__ import annotations

import math

import pytest
import torch

from bench.models.base import Batch, Pairs
from bench.train.seeds import generator
from tests.baselines.helpers import build, dense, first_batch, sampler_of


def randomized(model, seed: int = 4) -> None:
    """Non-zero biases and comparable weights everywhere, so that every term shows."""
    g = generator(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    model.requires_grad_(False)


def mean_matrices(dataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(D_U^-1 A_k, D_I^-1 A_k^T) of each binary behavior matrix, dense; 0 rows stay 0."""
    out = []
    for matrix in dataset.matrices():
        a = (dense(matrix) > 0).float()
        du, di = a.sum(1, keepdim=True), a.T.sum(1, keepdim=True)
        out.append((torch.where(du > 0, a / du.clamp_min(1), 0.0),
                    torch.where(di > 0, a.T / di.clamp_min(1), 0.0)))
    return out


def hand_forward(model, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The adaptation's two equations, relation by relation, with explicit loops."""
    enc = model.encoder
    graphs = mean_matrices(dataset)
    hu, hi = enc.users.detach(), enc.items.detach()
    L = enc.cfg["rgcn_layers"]
    for layer in range(L):
        theta = enc.relation_weights(layer).detach()
        root, bias = enc.root[layer].detach(), enc.bias[layer].detach()
        new_u = hu @ root[0] + bias[0]
        new_i = hi @ root[-1] + bias[-1]
        for k, (to_users, to_items) in enumerate(graphs):
            new_u = new_u + to_users @ hi @ theta[2 * k]          # item -> user under k
            new_i = new_i + to_items @ hu @ theta[2 * k + 1]      # user -> item under k
        hu, hi = new_u, new_i
        if layer < L - 1:
            hu, hi = torch.relu(hu), torch.relu(hi)
    return hu, hi


@pytest.mark.parametrize("overrides", [{}, {"rgcn_layers": 1}, {"rgcn_layers": 3},
                                       {"root": "per-type"}, {"num_bases": 2}])
def test_layers_match_the_dense_hand_computation(demo, overrides):
    model, _ = build("rgcn", demo, dim=8, **overrides)
    randomized(model)
    reps = model.encoder()
    hu, hi = hand_forward(model, demo)
    torch.testing.assert_close(reps.users[-1].detach(), hu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(reps.items[-1].detach(), hi, rtol=1e-4, atol=1e-4)
    assert any(float(t.min()) < 0 for t in (reps.users[-1], reps.items[-1]))  # no final ReLU


def test_one_layer_by_hand_for_one_user(demo):
    """h'_u = e_u R + b + sum_k mean_{i in N_k(u)} e_i Theta_k written out for user 0."""
    model, _ = build("rgcn", demo, dim=4, rgcn_layers=1)
    randomized(model)
    enc = model.encoder
    u = 0
    expected = enc.users[u] @ enc.root[0][0] + enc.bias[0][0]
    for k, matrix in enumerate(demo.matrices()):
        items = matrix.tocsr()[u].indices
        if len(items):
            expected = expected + enc.items[items].mean(0) @ enc.relation[0][2 * k]
    torch.testing.assert_close(model.encoder().users[-1][u], expected, rtol=1e-5, atol=1e-5)


def test_basis_decomposition_combines_the_bases(demo):
    model, _ = build("rgcn", demo, dim=4, num_bases=2)
    enc = model.encoder
    theta = enc.relation_weights(0)
    assert theta.shape == (2 * demo.n_behaviors, 4, 4)
    expected = enc.comp[0][3, 0] * enc.bases[0][0] + enc.comp[0][3, 1] * enc.bases[0][1]
    torch.testing.assert_close(theta[3], expected)
    assert not hasattr(enc, "relation")


def test_concat_combines_layers_zero_to_L(demo):
    model, _ = build("rgcn", demo, dim=4, combine="concat")
    randomized(model)
    reps = model.encoder()
    assert reps.users[-1].shape == (demo.n_users, 12)
    torch.testing.assert_close(reps.users[-1][:, :4], model.encoder.users)
    hu, _ = hand_forward(model, demo)
    torch.testing.assert_close(reps.users[-1][:, 8:].detach(), hu, rtol=1e-4, atol=1e-4)


def test_initial_laws(demo):
    model, _ = build("rgcn", demo)
    model.requires_grad_(False)
    enc = model.encoder
    limit = math.sqrt(6.0 / (demo.n_users + demo.n_items + 64))    # one Glorot table E^0
    both = torch.cat([enc.users, enc.items]).detach()
    assert float(both.abs().max()) <= limit and float(both.abs().max()) > 0.95 * limit
    assert float(enc.relation[0].abs().max()) <= math.sqrt(6.0 / 128)
    assert enc.relation[0].shape == (6, 64, 64) and len(enc.relation) == 2
    assert all(float(b.abs().max()) == 0 for b in enc.bias)


@pytest.mark.parametrize("score", ["dot", "distmult"])
def test_scores_are_the_target_products(demo, score):
    model, _ = build("rgcn", demo, dim=8, score=score)
    randomized(model)
    users = torch.arange(0, demo.n_users, 7)
    reps = model.encoder()
    items = reps.items[-1] * (model.decoder.diagonal if score == "distmult" else 1.0)
    expected = (reps.users[-1][users] @ items.T).detach()
    torch.testing.assert_close(model.scorer()(users), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["bpr", "bce"])
def test_losses_by_hand(demo, loss):
    model, _ = build("rgcn", demo, dim=8, reg=1e-2, loss=loss)
    randomized(model)
    users, pos, neg = torch.tensor([0, 3, 3, 9]), torch.tensor([5, 6, 7, 8]), torch.tensor(
        [1, 2, 40, 41])
    weight = torch.tensor([1.0, 1.0, 1.0, 0.0])
    batch = Batch(users, {demo.n_behaviors - 1: Pairs(users, pos, neg, weight)})
    _, parts = model.loss(batch)
    reps = model.encoder()
    zu, zv = reps.users[-1].detach(), reps.items[-1].detach()
    eu, ev = model.encoder.users.detach(), model.encoder.items.detach()
    rank, l2 = [], []
    for u, p, n in zip(users[:3].tolist(), pos[:3].tolist(), neg[:3].tolist()):
        sp_, sn = float(zu[u] @ zv[p]), float(zu[u] @ zv[n])
        if loss == "bpr":
            rank.append(-math.log(1 / (1 + math.exp(-(sp_ - sn)))))
        else:
            rank.append(0.5 * (math.log(1 + math.exp(-sp_)) + math.log(1 + math.exp(sn))))
        l2.append(float(eu[u] @ eu[u] + ev[p] @ ev[p] + ev[n] @ ev[n]))
    assert float(parts[loss].detach()) == pytest.approx(sum(rank) / 3, rel=1e-4)
    assert float(parts["l2"].detach()) == pytest.approx(1e-2 * sum(l2) / 3, rel=1e-5)


def test_sampler_is_every_buy_pair_once(demo):
    model, cfg = build("rgcn", demo, batch_size=100000)
    batch = first_batch(model, demo, cfg)
    pairs = batch.pairs[demo.n_behaviors - 1]
    buy = demo.matrices()[-1].tocoo()
    real = pairs.weight == 1
    assert sorted(zip(pairs.users[real].tolist(), pairs.pos[real].tolist())) == sorted(
        zip(buy.row.tolist(), buy.col.tolist()))
    assert sampler_of(model, demo, cfg).steps_per_epoch == 1


def test_edge_dropout_zeroes_entries_and_keeps_the_full_graph_normalization(demo):
    model, _ = build("rgcn", demo, dim=8, edge_dropout=0.4)
    randomized(model)
    enc = model.encoder
    enc.train()
    noise = torch.tensor([123, 456])
    graphs = enc.step_graphs(noise)
    kept, total = 0, 0
    for relation, graph in zip(enc.graphs, graphs):
        full = relation.graph.forward_csr.to_dense()
        dropped = graph.forward_csr.to_dense()
        nonzero = dropped != 0
        assert torch.equal(dropped[nonzero], full[nonzero])     # no rescale, same 1/degree
        assert torch.equal(graph.transpose_csr.to_dense(), dropped.T)   # backward graph agrees
        kept += int(nonzero.sum())
        total += int((full != 0).sum())
    assert abs(kept / total - 0.6) < 0.02
    # the layers run on the dropped graphs: hand computation with the dropped dense matrices
    u = demo.n_users
    dense_graphs = [(g.forward_csr.to_dense()[:u, u:], g.forward_csr.to_dense()[u:, :u])
                    for g in graphs]
    reps = enc(noise)
    hu, hi = enc.users, enc.items
    for layer in range(2):
        theta, root, bias = enc.relation[layer], enc.root[layer][0], enc.bias[layer][0]
        new_u, new_i = hu @ root + bias, hi @ root + bias
        for k, (to_users, to_items) in enumerate(dense_graphs):
            new_u = new_u + to_users @ hi @ theta[2 * k]
            new_i = new_i + to_items @ hu @ theta[2 * k + 1]
        hu, hi = (torch.relu(new_u), torch.relu(new_i)) if layer == 0 else (new_u, new_i)
    torch.testing.assert_close(reps.users[-1], hu, rtol=1e-4, atol=1e-4)
    # evaluation (and a call without noise) uses the whole graph
    enc.eval()
    plain = hand_forward(model, demo)[0]
    torch.testing.assert_close(enc(noise).users[-1], plain, rtol=1e-4, atol=1e-4)
    assert model.scorer()(torch.arange(3)).shape == (3, demo.n_items)


def test_self_loop_dropout_is_inverted_dropout_on_the_root_term(demo):
    model, _ = build("rgcn", demo, dim=8, rgcn_layers=1, self_loop_dropout=0.5)
    randomized(model)
    enc = model.encoder
    enc.train()
    noise = torch.tensor([7, 8])
    root_term = enc.users @ enc.root[0][0]
    dropped = enc._self_loop(root_term, noise, 0)
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], 2.0 * root_term[kept])
    assert abs(float(kept.float().mean()) - 0.5) < 0.05
    no_root = enc(noise).users[-1] - dropped
    enc.eval()
    torch.testing.assert_close(enc().users[-1] - root_term, no_root, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("overrides, mode", [({"edge_dropout": 0.4}, "looped"),
                                             ({"self_loop_dropout": 0.2}, "fused")])
def test_dropout_runs_train_in_a_batch_as_alone(demo, overrides, mode):
    """Edge dropout gives each run its own sparse values (runs are looped, with the reason);
    self-loop dropout stays fused. Either way a run ends where it ends alone."""
    from bench.perf import Stepper
    from tests.conformance.test_models import batch_trainer
    together = batch_trainer("rgcn", demo, [0, 1], [overrides, overrides])
    assert together.engine.mode == mode
    stepper = Stepper(together)
    for _ in range(2):
        stepper()
    for run in (0, 1):
        alone = batch_trainer("rgcn", demo, [run], [overrides])
        single = Stepper(alone)
        for _ in range(2):
            single()
        torch.testing.assert_close(together.engine.flat[run].detach(),
                                   alone.engine.flat[0].detach(), rtol=1e-4, atol=1e-6)
