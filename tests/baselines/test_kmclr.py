"""KMCLR (model-specs-table2 Part 3): the co-interaction graph, the KG file parser and its errors,
the slot layout, the GAT, TransR/TATEC, GRACE, the CML InfoNCE, the view graphs, the MB encoder,
the losses' assembly and the sampler's invariants, on hand-sized data."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from baselines.multi import kmclr_kg
from baselines.multi.kmclr import register_with_kg
from baselines.multi.kmclr_parts import (BipartiteEdges, GATNoise, cml_infonce, gat_items, grace,
                                   layer_mean, tatec_loss, transr_loss, view_keep_weights)
from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError
from bench.models.registry import MODELS, get_model
from tests.baselines.helpers import build, dense, first_batch, lgn, one_epoch, sampler_of, user_sets


def csr(rows):
    return sp.csr_matrix(np.array(rows, dtype=np.float32))


# ---- the co-interaction graph ---------------------------------------------------------------------
def test_co_interaction_triples_by_hand():
    # users x items; B^T B = [[3, 2, 1], [2, 3, 1], [1, 1, 1]]
    b = csr([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 0]])
    assert kmclr_kg.co_interaction_triples(b, 5, 1).tolist() == [
        [0, 5, 0], [0, 5, 1], [1, 5, 0], [1, 5, 1]]
    assert kmclr_kg.co_interaction_triples(b, 0, 2).tolist() == [[0, 0, 0], [1, 0, 1]]
    # counts, not the number of distinct users: a repeated interaction is binarized first
    assert kmclr_kg.co_interaction_triples(b * 7, 0, 2).tolist() == [[0, 0, 0], [1, 0, 1]]


def test_co_interaction_kg_orders_by_relation_head_tail_and_uses_the_view_threshold():
    view = csr([[1, 1, 1], [1, 1, 0]])        # B^T B = [[2, 2, 1], [2, 2, 1], [1, 1, 1]]
    buy = csr([[0, 1, 1], [0, 0, 1]])         # [[0, 0, 0], [0, 1, 1], [0, 1, 2]]
    kg = kmclr_kg.co_interaction_kg([view, buy], ("view", "buy"), view_threshold=1, threshold=0)
    assert kg.triples.tolist() == [[0, 0, 0], [0, 0, 1], [1, 0, 0], [1, 0, 1],
                                   [1, 1, 1], [1, 1, 2], [2, 1, 1], [2, 1, 2]]
    assert (kg.entity_count, kg.relation_count) == (4, 3)
    assert kmclr_kg.co_interaction_threshold("pv", 4, 3) == 4
    assert kmclr_kg.co_interaction_threshold("cart", 4, 3) == 3
    with pytest.raises(ConfigError, match="kmclr-nokg"):
        kmclr_kg.co_interaction_kg([buy], ("buy",), 4, 3)


def test_cokg_reads_only_the_training_matrices(demo):
    """The dataset object is the training input: another test split gives the same graph."""
    buys = user_sets(demo.matrices()[-1])
    outside = [next(i for i in range(demo.n_items) if i not in buys[u]) for u in range(demo.n_users)]
    other_test = sp.csr_matrix((np.ones(demo.n_users, np.float32),
                                (np.arange(demo.n_users), outside)), shape=demo.matrices()[0].shape)
    other = MultiBehaviorDataset("demo", demo.behaviors, dict(zip(demo.behaviors,
                                                                  demo.matrices())), other_test)
    a, _ = build("kmclr-cokg", demo)
    b, _ = build("kmclr-cokg", other)
    assert torch.equal(a.encoder.slot_tails, b.encoder.slot_tails)


# ---- the slot layout ------------------------------------------------------------------------------
def test_layout_keeps_the_first_slots_in_file_order_and_pads():
    triples = np.array([[2, 0, 7], [0, 1, 3], [2, 1, 1], [2, 0, 4], [0, 0, 9]])
    kg = kmclr_kg._from_rows(triples, n_items=4, source="test")
    lay = kmclr_kg.layout(kg, n_items=4, slots=2)
    pad_e, pad_r = 11, 3                       # max tail 9 + 2, max relation 1 + 2
    assert lay.slot_tails.tolist() == [[3, 9], [pad_e, pad_e], [7, 1], [pad_e, pad_e]]
    assert lay.slot_relations.tolist() == [[1, 0], [pad_r, pad_r], [0, 1], [pad_r, pad_r]]
    assert lay.heads.tolist() == [2, 0]        # first appearance
    assert lay.pair_indptr.tolist() == [0, 3, 5]
    assert lay.pair_tails.tolist() == [7, 1, 4, 3, 9]      # all pairs, not only the slots
    assert lay.pair_relations.tolist() == [0, 1, 0, 1, 0]


# ---- the KG file ----------------------------------------------------------------------------------
def test_kg_file_is_read_deduplicated_and_heads_beyond_the_items_dropped(tmp_path):
    path = tmp_path / "kg.txt"
    path.write_text("# item relation entity\n0 1 5\n\n1 0 2\n0 1 5\n7 0 9\n1\t2  3\n")
    kg = kmclr_kg.read_kg_file(path, n_items=3)
    assert kg.triples.tolist() == [[0, 1, 5], [1, 0, 2], [1, 2, 3]]
    # the counts cover the dropped head's row too, as the release's do
    assert (kg.entity_count, kg.relation_count) == (11, 4)


@pytest.mark.parametrize("text, message", [
    ("0 1 5\n0 1\n", "line 2: 2 fields instead of 3"),
    ("0 1 5\n\n0 x 5\n", "line 3: the relation 'x' is not an integer"),
    ("0 1 -5\n", "line 1: the tail -5 is negative"),
    ("0 1 2 3\n", "line 1: 4 fields instead of 3"),
    ("# only a comment\n", "holds no triple"),
    ("9 0 1\n", "no triple has an item id"),
])
def test_kg_file_errors_name_the_file_the_line_and_the_fix(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        kmclr_kg.read_kg_file(path, n_items=3)
    assert "bad.txt" in str(err.value)


def test_kg_file_missing_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="kmclr-cokg / kmclr-nokg"):
        kmclr_kg.read_kg_file(tmp_path / "absent.txt", n_items=3)


def test_plain_kmclr_needs_a_kg_file(demo, tmp_path):
    assert MODELS["kmclr"].resolve(demo.name, demo.n_behaviors)["kg_source"] == "file"
    with pytest.raises(ConfigError, match="kg_file=PATH"):
        build("kmclr", demo)
    path = tmp_path / "kg.txt"
    path.write_text("".join(f"{i} {i % 2} {i + 1}\n" for i in range(demo.n_items)))
    model, _ = build("kmclr", demo, kg_file=str(path))
    assert model.encoder.slot_tails[:3, 0].tolist() == [1, 2, 3]
    assert model.encoder.kg.entity_count == demo.n_items + 2


def test_another_name_can_carry_its_own_kg_file(demo, tmp_path):
    path = tmp_path / "kg.txt"
    path.write_text("".join(f"{i} 0 {i}\n" for i in range(demo.n_items)))
    register_with_kg("kmclr-mine", str(path))
    try:
        model, cfg = build("kmclr-mine", demo)
        assert cfg["kg_file"] == str(path)
        assert model.encoder.kg.entity_count == (demo.n_items - 1) + 2    # max tail + 2
    finally:
        MODELS.pop("kmclr-mine", None)


# ---- the KG model's pieces -----------------------------------------------------------------------
def test_gat_by_hand():
    items = torch.tensor([[1.0, -1.0]])
    entities = torch.tensor([[0.5, 0.0], [0.0, 2.0], [9.0, 9.0]])      # row 2 = padding
    relations = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    tails, rels = torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, 1]])
    fc_w, fc_b = torch.tensor([[1.0, 0.0, 0.5, -0.5, 1.0, 1.0]]), torch.tensor([0.1])
    out_w, out_b = torch.tensor([[1.0, 2.0], [0.0, -1.0]]), torch.tensor([0.0, 0.5])
    got = gat_items(items, entities, relations, tails, rels, 2, fc_w, fc_b, out_w, out_b, None)
    # logits: slot 0: 1 + 0.5 - 0.5 + 0.5 + 0.1 = 1.6; slot 1: 1 + 0 + 2 + 0.1 = 3.1
    a0, a1 = math.exp(1.6) / (math.exp(1.6) + math.exp(3.1)), math.exp(3.1) / (
        math.exp(1.6) + math.exp(3.1))
    pooled = torch.tensor([0.5 * a0 + 1.0, 2.0 * a1 - 1.0])
    expected = torch.relu(pooled @ out_w.T + out_b)
    torch.testing.assert_close(got, expected[None])
    # a negative logit goes through LeakyReLU(0.2); with noise, the multipliers apply
    noise = GATNoise(torch.tensor([[[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]]]),
                     torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[0.0, 3.0]]))
    fc_neg = torch.tensor([[-1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    got = gat_items(items, entities, relations, tails, rels, 2, fc_neg, torch.zeros(1), out_w,
                    out_b, noise)
    # slot 0: e~ = [1, 0], logit -1 -> -0.2; slot 1: e~ = 0, logit -1 -> -0.2: alpha = (1/2, 1/2)
    pooled = torch.tensor([2.0 * 0.5 * 1.0 + 1.0, -1.0])
    expected = torch.relu(pooled @ out_w.T + out_b) * torch.tensor([0.0, 3.0])
    torch.testing.assert_close(got, expected[None])


def test_gat_item_without_triples_averages_the_padding_embedding():
    entities = torch.tensor([[5.0, 5.0], [1.0, 3.0]])
    got = gat_items(torch.zeros(1, 2), entities, torch.zeros(2, 2), torch.tensor([[1, 1]]),
                    torch.tensor([[1, 1]]), 1, torch.ones(1, 6), torch.zeros(1), torch.eye(2),
                    torch.zeros(2), None)
    torch.testing.assert_close(got, torch.tensor([[1.0, 3.0]]))


def test_transr_and_tatec_by_hand():
    items = torch.tensor([[1.0, 0.0]])
    entities = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    relations = torch.tensor([[0.5, 0.5]])
    m = torch.tensor([[[1.0, 1.0], [0.0, 2.0]]])
    ids = [torch.tensor([0])] * 4
    pos, neg = torch.tensor([0]), torch.tensor([1])
    w = torch.ones(1)
    # M h = (1, 0); M t+ = (1, 2); M t- = (2, 0); h + r = (1.5, 0.5):
    # d+ = |(0.5, -1.5)|^2 = 2.5, d- = |(-0.5, 0.5)|^2 = 0.5
    d_pos, d_neg = 2.5, 0.5
    l2 = 0.5 * (1 + 0.5 + 5 + 4) + float(m.norm())
    got = transr_loss(items, entities, relations, m, ids[0], ids[1], pos, neg, w)
    assert float(got) == pytest.approx(-math.log(1 / (1 + math.exp(-(d_neg - d_pos))))
                                       + 1e-3 * l2, rel=1e-6)
    # TATEC: s = h M t + h.r + t.r + h.t; s+ = 1 + 0.5 + 0.5 + 0 = 2, s- = 2 + 0.5 + 1 + 2 = 5.5
    l2 = 0.5 * (1 + 0.5 + 1 + 4) + float(m.norm())
    got = tatec_loss(items, entities, relations, m, ids[0], ids[1], pos, neg, w)
    assert float(got) == pytest.approx(-math.log(1 / (1 + math.exp(-(5.5 - 2.0)))) + 1e-3 * l2,
                                       rel=1e-6)
    fixed = tatec_loss(items, entities, relations, m, ids[0], ids[1], pos, neg, w, sign="fixed")
    assert float(fixed) == pytest.approx(-math.log(1 / (1 + math.exp(-(2.0 - 5.5)))) + 1e-3 * l2,
                                         rel=1e-6)


def test_grace_is_one_directional_without_the_positive_in_the_denominator():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    z2 = torch.tensor([[1.0, 1.0], [0.0, 2.0], [5.0, 5.0]])
    tau = 0.5
    c = F.normalize(z1) @ F.normalize(z2).T
    f = torch.exp(c / tau)
    expected = sum(-math.log(f[a, a] / (f[a].sum() - f[a, a])) for a in range(3))
    assert float(grace(z1, z2, tau, torch.ones(3))) == pytest.approx(float(expected), rel=1e-6)
    # padding rows (weight 0) take no part; here row 2
    f2 = f[:2, :2]
    expected = sum(-math.log(f2[a, a] / (f2[a].sum() - f2[a, a])) for a in range(2))
    got = grace(z1, z2, tau, torch.tensor([1.0, 1.0, 0.0]))
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


def test_cml_infonce_follows_the_release_sets():
    """Negatives of row s: the distinct sampled users outside s's chunk (Python sets, as
    Mul_Model.SSL builds them)."""
    gen = torch.Generator().manual_seed(3)
    anchor, other = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    users = torch.tensor([2, 5, 2, 0, 5, 1, 4, 0])
    real = 7                                         # the last slot is padding
    weight = (torch.arange(8) < real).float()
    got = cml_infonce(anchor, other, users, weight, chunk=3)
    sample = users[:real].tolist()
    expected = 0.0
    for s, u in enumerate(sample):
        chunk = set(sample[(s // 3) * 3:(s // 3) * 3 + 3])
        negatives = set(sample) - chunk
        pos = math.exp(float(anchor[u] @ other[u]) / (4 + 1e-8))
        neg = sum(math.exp(float(anchor[u] @ other[v]) / (4 + 1e-8)) for v in negatives)
        expected += -math.log(1e-8 + pos / (neg + 1e-8))
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_bipartite_edges_dropout_and_kept_edge_views():
    m = csr([[1, 0, 1], [0, 1, 0]])
    edges = BipartiteEdges(m, torch.device("cpu"))
    full = edges.graph(edges.normalized_values).forward_csr.to_dense()
    torch.testing.assert_close(full, lgn(m))
    # one entry (user 0 -> item 2) dropped in the forward direction only
    keep = torch.ones(edges.normalized_values.numel())
    keep[1] = 0.0
    g = edges.dropped(keep, 0.5)
    expected = lgn(m) / 0.5
    expected[0, 2 + 2] = 0.0
    torch.testing.assert_close(g.forward_csr.to_dense(), expected)
    torch.testing.assert_close(g.transpose_csr.to_dense(), expected.T)
    # a view keeps edges (0, 0) and (1, 1): D^-1/2 (A + A^T) D^-1/2 of those
    view = edges.kept_edges(torch.tensor([1.0, 0.0, 1.0])).forward_csr.to_dense()
    torch.testing.assert_close(view, lgn(csr([[1, 0, 0], [0, 1, 0]])))


def test_view_keep_weights_min_max_per_chunk():
    gen = torch.Generator().manual_seed(1)
    m = sp.random(5, 4, density=0.5, random_state=2, format="csr")
    m.data[:] = 1
    edges = BipartiteEdges(m, torch.device("cpu"))
    users, items = torch.randn(5, 3, generator=gen), torch.randn(4, 3, generator=gen)
    stab = torch.rand(4, generator=gen)
    got = view_keep_weights(users, items, stab, edges, chunk=2)
    coo = m.tocoo()
    expected = []
    for u, i in sorted(zip(coo.row, coo.col)):
        start = (u // 2) * 2
        s = torch.softmax(users[start:start + 2] @ items.T, -1) * stab
        expected.append(float(0.6 + 0.4 * (s[u - start, i] - s.min()) / (s.max() - s.min())))
    torch.testing.assert_close(got, torch.tensor(expected))


# ---- the model -----------------------------------------------------------------------------------
def test_mb_encoder_by_dense_formula(demo):
    model, cfg = build("kmclr-nokg", demo)
    enc = model.encoder
    e_u, e_i, z_u = (t.detach() for t in enc.mb_forward())
    mats = [dense(m) for m in demo.matrices()]          # raw binary A_k, not normalized
    x_u, x_i = enc.users.detach(), enc.items.detach()
    cat_u, cat_i, per = [], [], []
    for layer in range(cfg["mb_layers"]):
        w_u, w_i = enc.user_layers[layer].detach(), enc.item_layers[layer].detach()
        by_user = [a @ x_i for a in mats]
        by_item = [a.T @ x_u for a in mats]
        x_u = torch.sigmoid(torch.stack(by_user).mean(0) @ w_u)
        x_i = torch.sigmoid(torch.stack(by_item).mean(0) @ w_i)
        cat_u.append(x_u)
        cat_i.append(x_i)
        per.append(torch.stack([torch.sigmoid(b @ w_u) for b in by_user]))
    torch.testing.assert_close(e_u, torch.cat(cat_u, 1) @ enc.user_concat.detach(), rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(e_i, torch.cat(cat_i, 1) @ enc.item_concat.detach(), rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(z_u, torch.cat(per, 2) @ enc.user_concat.detach(), rtol=1e-4,
                               atol=1e-5)


def test_mb_losses_assembled_as_released(demo):
    model, cfg = build("kmclr-nokg", demo)
    batch = first_batch(model, demo, cfg)
    _, parts = model.loss(batch)
    e_u, e_i, z_u = model.encoder.mb_forward()
    bpr, reg = 0.0, 0.0
    for k, p in batch.pairs.items():
        sel = p.weight > 0
        u, i, j = e_u[p.users[sel]], e_i[p.pos[sel]], e_i[p.neg[sel]]
        bpr += float((-torch.log(torch.sigmoid((u * i).sum(-1) - (u * j).sum(-1)))).sum())
        if k == 2:
            reg = float(u.norm() ** 2 + i.norm() ** 2 + j.norm() ** 2)
    b = cfg["batch_size"]
    assert float(parts["mb_bpr"]) == pytest.approx(bpr / 3 / b, rel=1e-5)
    assert float(parts["mb_reg"]) == pytest.approx(1e-3 * reg / b, rel=1e-5)
    users, w = batch.extra["ssl_users"], batch.extra["ssl_weight"]
    ssl = sum(float(cml_infonce(z_u[2], z_u[k], users, w, 18)) for k in range(3))
    assert float(parts["mb_ssl"]) == pytest.approx(0.005 * ssl / 3 / b, rel=1e-5)
    assert set(parts) == {"mb_bpr", "mb_reg", "mb_ssl"}


def test_cokg_with_zero_blend_has_the_nokg_mb_losses(demo):
    """The KG branch reaches the MB loss only through the blend (and never the reverse)."""
    cokg, cfg = build("kmclr-cokg", demo, kg_blend=0.0)
    nokg, _ = build("kmclr-nokg", demo)
    batch = first_batch(cokg, demo, cfg)
    cokg.train()
    _, a = cokg.loss(batch)
    _, b = nokg.loss(batch)
    for name in ("mb_bpr", "mb_reg", "mb_ssl"):
        assert float(a[name]) == pytest.approx(float(b[name]), rel=1e-6)
    cokg, _ = build("kmclr-cokg", demo)
    cokg.train()
    _, parts = cokg.loss(batch)
    (parts["mb_bpr"] + parts["mb_reg"] + parts["mb_ssl"]).backward()
    kg_params = [p for n, p in cokg.encoder.named_parameters() if n.startswith(("kg_", "gat_",
                                                                                "transr", "tatec"))]
    assert kg_params and all(p.grad is None or not p.grad.any() for p in kg_params)


def test_blend_scores_use_the_kg_model_in_eval_mode(demo):
    model, _ = build("kmclr-cokg", demo)
    enc = model.encoder
    users = torch.arange(0, demo.n_users, 9)
    with torch.no_grad():
        e_u, e_i, _ = enc.mb_forward()
        k_u, k_i = enc.kg_forward(None)
        expected = (0.9 * e_u + 0.1 * k_u)[users] @ (0.9 * e_i + 0.1 * k_i).T
    torch.testing.assert_close(model.scorer()(users), expected)
    # the eval-mode KG model is LightGCN on the normalized buy graph, no dropout
    g0, g1 = enc.item_kg(0, None), enc.item_kg(1, None)
    x = torch.cat([enc.kg_users, (g0 + g1) / 2]).detach()
    a = lgn(demo.matrices()[-1])
    total, h = x, x
    for _ in range(3):
        h = a @ h
        total = total + h
    torch.testing.assert_close(torch.cat([k_u, k_i]), total / 4, rtol=1e-4, atol=1e-6)


# ---- the sampler ----------------------------------------------------------------------------------
def test_sampler_visits_every_buy_record_once_per_epoch(demo):
    model, cfg = build("kmclr-nokg", demo, batch_size=256)
    buy = sp.csr_matrix(demo.matrices()[-1])
    batches = one_epoch(sampler_of(model, demo, cfg))
    assert len(batches) == -(-buy.nnz // 256)
    seen = []
    sets = [user_sets(m) for m in demo.matrices()]
    for batch in batches:
        p = batch.pairs[2]
        real = p.weight > 0
        seen += list(zip(p.users[real].tolist(), p.pos[real].tolist()))
        for k in range(3):
            q = batch.pairs[k]
            for u, i, j, w in zip(q.users.tolist(), q.pos.tolist(), q.neg.tolist(),
                                  q.weight.tolist()):
                if w > 0:
                    assert i in sets[k][u] and j not in sets[k][u]
        n_real = int(real.sum())
        w = batch.extra["ssl_weight"]
        assert int(w.sum()) == n_real // 10
        picked = batch.extra["ssl_users"][w > 0].tolist()
        assert all(u in p.users[real].tolist() for u in picked)
    assert sorted(seen) == sorted(zip(*buy.nonzero()))


def test_sampler_kg_rows(demo):
    model, cfg = build("kmclr-cokg", demo, kg_batch_size=64, trans_batch_size=50)
    batch = first_batch(model, demo, cfg)
    ex = batch.extra
    buys = user_sets(demo.matrices()[-1])
    assert ex["kg_users"].shape == (64,)
    for u, i, j in zip(ex["kg_users"].tolist(), ex["kg_pos"].tolist(), ex["kg_neg"].tolist()):
        assert i in buys[u] and j not in buys[u]
    kg = model.encoder.kg
    pairs = {}
    for p, h in enumerate(kg.heads.tolist()):
        lo, hi = kg.pair_indptr[p], kg.pair_indptr[p + 1]
        pairs[h] = set(zip(kg.pair_relations[lo:hi].tolist(), kg.pair_tails[lo:hi].tolist()))
    for name in ("transr", "tatec"):
        heads, rels = ex[f"{name}_heads"].tolist(), ex[f"{name}_rels"].tolist()
        pos, neg, w = ex[f"{name}_pos"].tolist(), ex[f"{name}_neg"].tolist(), ex[f"{name}_weight"]
        assert len(set(heads)) == 50
        for h, r, t, n, weight in zip(heads, rels, pos, neg, w.tolist()):
            assert (r, t) in pairs[h]
            if weight > 0:
                assert (r, n) not in pairs[h]
                assert any(n == tail for other in pairs.values() for _, tail in other)


def test_nokg_has_no_kg_parameters_and_fuses_seed_batches(demo):
    model, _ = build("kmclr-nokg", demo)
    names = {n for n, _ in model.named_parameters()}
    assert names == {f"encoder.{n}" for n in ("users", "items", "user_layers", "item_layers",
                                              "user_concat", "item_concat")}
    assert model.encoder.looped_reason == ""
    cokg, _ = build("kmclr-cokg", demo)
    assert "edge dropout" in cokg.encoder.looped_reason
    assert get_model("kmclr-cokg").defaults["kg_source"] == "cokg"


def test_train_mode_scores_use_fixed_dropout_draws(demo):
    model, _ = build("kmclr-cokg", demo, kg_score_mode="train", kg_score_seed=3)
    users = torch.arange(0, demo.n_users, 9)
    first, again = model.scorer()(users), model.scorer()(users)
    assert torch.equal(first, again)
    plain, _ = build("kmclr-cokg", demo)
    assert not torch.allclose(first, plain.scorer()(users))


def test_kmclr_parts_refuse_other_samplers_and_encoders(demo):
    model, cfg = build("kmclr-cokg", demo, sampler="multi-behavior", batch_size=64)
    with pytest.raises(ConfigError, match="sampler=kmclr"):
        model.loss(first_batch(model, demo, cfg))
    composed, _ = build("lightgcn+kmclr", demo)
    nokg, nokg_cfg = build("kmclr-nokg", demo)
    with pytest.raises(ConfigError, match="encoder kmclr"):
        composed.loss(first_batch(nokg, demo, nokg_cfg))


def test_the_model_list_says_which_forms_loop_their_seed_batches():
    from bench.commands.listing import batching
    assert batching(MODELS["kmclr-cokg"]).startswith("looped: edge dropout")
    assert batching(MODELS["kmclr"]).startswith("looped: ")
    assert batching(MODELS["kmclr-nokg"]) == "fused"
