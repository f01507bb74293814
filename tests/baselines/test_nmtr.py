"""NMTR (model-specs-table2.md "NMTR"): chain labels on non-nested data, the two cascades, the
release's BCE, the chunked ranking score, the sampler's epoch of union pairs and negatives."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import baselines.multi.nmtr as nmtr
from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError
from bench.models.base import Batch
from tests.baselines.helpers import build, one_epoch, sampler_of, user_sets


def toy(behaviors=("view", "cart", "buy"), pairs=None, shape=(3, 6)) -> MultiBehaviorDataset:
    """Hand-made non-nested interactions: buys without cart or view, a cart without view."""
    pairs = pairs or {
        "view": [(0, 0), (1, 0), (2, 4)],
        "cart": [(0, 2), (1, 3)],
        "buy": [(0, 1), (0, 2), (1, 0), (2, 5)],
    }
    train = {}
    for b in behaviors:
        r, c = zip(*pairs[b])
        train[b] = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=shape)
    test = sp.csr_matrix((np.ones(1, dtype=np.float32), ([shape[0] - 1], [3])), shape=shape)
    return MultiBehaviorDataset("toy", behaviors, train, test)


# the union's pairs in (user, item) order: (0,0) (0,1) (0,2) (1,0) (1,3) (2,4) (2,5)
CHAIN = [[1, 0, 0],     # (0,0) view only
         [1, 1, 1],     # (0,1) buy only: counts as cart and view
         [1, 1, 1],     # (0,2) cart + buy, no view
         [1, 1, 1],     # (1,0) view + buy, no cart
         [1, 1, 0],     # (1,3) cart only: counts as view
         [1, 0, 0],     # (2,4) view
         [1, 1, 1]]     # (2,5) buy only
RAW = [[1, 0, 0], [0, 0, 1], [0, 1, 1], [1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]]


def test_chain_labels_close_the_chain_on_non_nested_data():
    data = toy()
    labels = nmtr.chain_labels(data.matrices(), data.union(), "chain")
    assert labels.tolist() == CHAIN
    assert nmtr.chain_labels(data.matrices(), data.union(), "raw").tolist() == RAW
    # the release's count map S -> label would call the buy-only pair (0,1) a view only
    count_map = {1: [1, 0, 0], 2: [1, 1, 0], 3: [1, 1, 1]}
    counts = np.asarray(sum(m.toarray() for m in data.matrices()))
    union = sp.coo_matrix(data.union())
    released = [count_map[int(counts[u, i])] for u, i in sorted(zip(union.row, union.col))]
    assert released[1] == [1, 0, 0] and CHAIN[1] == [1, 1, 1]


def test_chain_labels_with_four_behaviors():
    pairs = {"click": [(0, 0)], "collect": [(0, 1)], "cart": [(1, 2)], "buy": [(0, 3), (1, 2)]}
    data = toy(("click", "collect", "cart", "buy"), pairs, shape=(2, 5))
    # (0,0) click, (0,1) collect, (0,3) buy, (1,2) cart + buy
    assert nmtr.chain_labels(data.matrices(), data.union(), "chain").tolist() == [
        [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
    assert nmtr.chain_labels(data.matrices(), data.union(), "raw").tolist() == [
        [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]]


def test_cascade_coefficients_unroll_the_recursions():
    assert nmtr.cascade_coefficients(3, "halving") == ([0.25, 0.25, 0.5], 1.75)
    assert nmtr.cascade_coefficients(4, "halving") == ([0.125, 0.125, 0.25, 0.5], 1.875)
    assert nmtr.cascade_coefficients(3, "sum") == ([1.0, 1.0, 1.0], 1.0)
    with pytest.raises(ConfigError, match="cascade"):
        nmtr.cascade_coefficients(3, "product")


def hand_model(cascade: str):
    """d = 2 with hand-set weights: user 0 = (1, 2), item 1 = (3, -1), b_1 = 0.5."""
    data = toy()
    model, cfg = build("nmtr", data, dim=2, cascade=cascade)
    with torch.no_grad():
        model.encoder.users.zero_()
        model.encoder.items.zero_()
        model.encoder.users[0] = torch.tensor([1.0, 2.0])
        model.encoder.items[1] = torch.tensor([3.0, -1.0])
        model.decoder.item_bias.zero_()
        model.decoder.item_bias[1] = 0.5
        # W_t and h_t: z = (3, -2); z W_1 = (3, -2) -> relu (3, 0); g_1 = 3 * 1 = 3
        model.decoder.tower_weights.copy_(torch.tensor([
            [[1.0, 0.0], [0.0, 1.0]],
            [[1.0, 1.0], [1.0, -1.0]],     # z W_2 = (1, 5) -> g_2 = 1 * 2 + 5 * 1 = 7
            [[0.0, -1.0], [1.0, 0.0]]]))   # z W_3 = (-2, -3) -> relu 0 -> g_3 = 0
        model.decoder.tower_outputs.copy_(torch.tensor([[1.0, 4.0], [2.0, 1.0], [5.0, 5.0]]))
    return model, data


def test_halving_cascade_by_hand():
    model, _ = hand_model("halving")
    o = model.decoder.logits(torch.tensor([0]), torch.tensor([1]), model.encoder())[0]
    g1, g2, g3, b = 3.0, 7.0, 0.0, 0.5
    o1 = g1 + b
    o2 = (g2 + o1) / 2 + b
    o3 = (g3 + o2) / 2 + b
    torch.testing.assert_close(o, torch.tensor([o1, o2, o3]))
    assert o3 == pytest.approx(g3 / 2 + g2 / 4 + g1 / 4 + 1.75 * b)
    assert float(model.scorer()(torch.tensor([0]))[0, 1]) == pytest.approx(o3)


def test_plain_sum_cascade_by_hand():
    model, _ = hand_model("sum")
    o = model.decoder.logits(torch.tensor([0]), torch.tensor([1]), model.encoder())[0]
    torch.testing.assert_close(o, torch.tensor([3.5, 10.5, 10.5]))   # b_i once per stage
    assert float(model.scorer()(torch.tensor([0]))[0, 1]) == pytest.approx(10.5)


@pytest.mark.parametrize("cascade", nmtr.CASCADES)
def test_chunked_score_is_the_last_stage_of_every_pair(demo, cascade, monkeypatch):
    model, _ = build("nmtr", demo, dim=8, cascade=cascade)
    with torch.no_grad():
        model.decoder.item_bias.normal_(0, 0.3)
    # a chunk of 2 users only, so that 23 users take 12 chunks (the last one partial)
    monkeypatch.setattr(nmtr, "SCORE_CHUNK_ELEMENTS", 2 * demo.n_items * 3 * 8)
    users = torch.arange(0, demo.n_users, 9)
    scores = model.scorer()(users)
    grid_u = users[:, None].expand(-1, demo.n_items)
    grid_i = torch.arange(demo.n_items)[None, :].expand(len(users), -1)
    with torch.no_grad():
        expected = model.decoder.logits(grid_u, grid_i, model.encoder())[..., -1]
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)


def test_loss_is_the_weighted_release_bce_by_hand():
    model, _ = hand_model("halving")
    with torch.no_grad():
        model.decoder.hp("loss_weights").copy_(torch.tensor([0.2, 0.3, 0.5]))
    # rows: (0, 1) labelled (1, 1, 1); (0, 1) as a negative; a padding slot
    batch = Batch(users=torch.tensor([0, 0, 2]), pairs={},
                  extra={"items": torch.tensor([1, 1, 0]),
                         "labels": torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0],
                                                 [1.0, 1.0, 1.0]])},
                  user_weight=torch.tensor([1.0, 1.0, 0.0]))
    with torch.no_grad():
        total, parts = model.loss(batch)
    o = [3.5, 5.75, 3.375]      # the halving cascade of g = (3, 7, 0), b_1 = 0.5
    expected = {}
    for t, (name, w) in enumerate(zip(("view", "cart", "buy"), (0.2, 0.3, 0.5))):
        s = 1 / (1 + math.exp(-o[t]))
        pos, neg = -math.log(s + 1e-7), -math.log(1 - s + 1e-7)
        expected[f"bce_{name}"] = w * (pos + neg) / 2        # the padding slot is no row
        assert float(parts[f"bce_{name}"]) == pytest.approx(expected[f"bce_{name}"], rel=1e-6)
    assert float(parts["reg"]) == 0.0
    assert float(total) == pytest.approx(sum(expected.values()), rel=1e-6)


def test_l2_terms_cover_p_every_w_and_q():
    model, _ = build("nmtr", toy(), dim=4, reg=0.1, item_reg=0.01)
    batch = Batch(users=torch.tensor([0]), pairs={},
                  extra={"items": torch.tensor([1]), "labels": torch.ones(1, 3)},
                  user_weight=torch.ones(1))
    _, parts = model.loss(batch)
    enc, dec = model.encoder, model.decoder
    expected = (0.1 * (enc.users.pow(2).sum() + dec.tower_weights.pow(2).sum())
                + 0.01 * enc.items.pow(2).sum())
    torch.testing.assert_close(parts["reg"], expected)


def test_initial_weights_follow_the_release(demo):
    model, _ = build("nmtr", demo)
    limit = math.sqrt(3 / 64)
    for table in (model.encoder.users.detach(), model.encoder.items.detach()):
        assert table.abs().max() <= 0.02 and 0.008 < float(table.std()) < 0.0095   # truncated
    for weight in (model.decoder.tower_weights.detach(), model.decoder.tower_outputs.detach()):
        assert weight.abs().max() <= limit and weight.abs().max() > 0.95 * limit
    assert model.decoder.tower_weights.shape == (3, 64, 64)
    assert float(model.decoder.item_bias.detach().abs().sum()) == 0.0


def test_sampler_epoch_is_every_union_pair_once_plus_its_negatives():
    data = toy()
    model, cfg = build("nmtr", data, batch_size=5, n_negatives=2)
    sampler = sampler_of(model, data, cfg, seeds=(3,))
    nnz = data.union().nnz                      # 7 pairs -> 21 rows -> 4 batches of 5, 1 dropped
    assert sampler.steps_per_epoch == 4
    union = user_sets(data.union())
    chain = dict(zip(sorted(zip(*sp.find(data.union())[:2])), map(tuple, CHAIN)))
    positives, negatives = [], 0
    for batch in one_epoch(sampler):
        assert batch.users.shape == batch.extra["items"].shape == (5,)
        assert batch.extra["labels"].shape == (5, 3)
        assert batch.user_weight.tolist() == [1.0] * 5
        for u, i, y in zip(batch.users.tolist(), batch.extra["items"].tolist(),
                           batch.extra["labels"].tolist()):
            if i in union[u]:
                positives.append((u, i))
                assert tuple(y) == chain[(u, i)]
            else:
                negatives += 1
                assert y == [0.0, 0.0, 0.0]
    assert len(positives) + negatives == 20                   # 21 rows, the remainder dropped
    assert len(set(positives)) == len(positives) >= nnz - 1   # each pair at most once


def test_sampler_covers_every_pair_and_draws_negatives_per_slot(demo):
    model, cfg = build("nmtr", demo, batch_size=1024)
    sampler = sampler_of(model, demo, cfg, seeds=(4,))
    nnz = demo.union().nnz
    rows = nnz * 5
    assert sampler.steps_per_epoch == rows // 1024
    union = user_sets(demo.union())
    seen_pos, n_neg, neg_items = set(), 0, set()
    for batch in one_epoch(sampler):
        for u, i in zip(batch.users.tolist(), batch.extra["items"].tolist()):
            if i in union[u]:
                seen_pos.add((u, i))
            else:
                n_neg += 1
                neg_items.add(i)
    dropped = rows - 1024 * sampler.steps_per_epoch
    assert len(seen_pos) + n_neg == rows - dropped
    assert len(seen_pos) >= nnz - dropped and n_neg >= 4 * nnz - dropped
    assert len(neg_items) > 0.9 * demo.n_items        # negatives spread over the catalogue
    # the second epoch shuffles again and redraws the negatives
    first = one_epoch(sampler)[0]
    sampler.start_epoch(1)
    again = sampler.batch(torch.tensor(0), torch.tensor(sampler.steps_per_epoch))
    assert not torch.equal(first.extra["items"], again.extra["items"][0])


def test_raw_labels_reach_the_batches_and_bad_rules_are_named():
    data = toy()
    model, cfg = build("nmtr", data, labels="raw", batch_size=7, n_negatives=0)
    batch = one_epoch(sampler_of(model, data, cfg))[0]
    raw = dict(zip(sorted(zip(*sp.find(data.union())[:2])), map(tuple, RAW)))
    got = {(u, i): tuple(y) for u, i, y in zip(batch.users.tolist(),
                                                batch.extra["items"].tolist(),
                                                batch.extra["labels"].tolist())}
    assert got == raw                                  # every pair once, no negative row
    with pytest.raises(ConfigError, match="labels"):
        nmtr.chain_labels(data.matrices(), data.union(), "count")


def test_another_sampler_is_refused_with_the_fix(demo):
    model, cfg = build("nmtr", demo, sampler="multi-behavior")
    batch = one_epoch(sampler_of(model, demo, cfg))[0]
    with pytest.raises(ConfigError, match="sampler 'nmtr'"):
        model.loss(batch)
