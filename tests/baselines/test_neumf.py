"""NeuMF (model-specs-table2 Part 1): the logit written out by hand, the split-first-layer full
ranking, the BCE with padding, the release's row sampling on the target only, the initial laws and
the pretrained start."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from baselines.single import neumf
from bench.errors import ConfigError
from bench.models.base import Batch
from bench.train.samplers import run_batches
from bench.train.seeds import generator
from tests.baselines.helpers import build, one_epoch, sampler_of, user_sets

SMALL = {"dim": 3, "mlp_layers": [4, 3, 2]}


def randomized(model, seed: int = 4) -> None:
    """Weights of size ~1 everywhere (initial tables of 0.01 and zero biases would hide terms)."""
    g = generator(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))


def hand_logit(model, u: int, i: int) -> float:
    """h^T [p^G * q^G || relu(W2^T relu(W1^T [p^M || q^M] + b1) + b2)] + b, in float64."""
    enc, dec = model.encoder, model.decoder
    p = enc.users[u].detach().double().numpy()
    q = enc.items[i].detach().double().numpy()
    f = 3
    gmf = p[:f] * q[:f]
    h = np.concatenate([p[f:], q[f:]])
    for w, b in zip(dec.mlp.weights, dec.mlp.biases):
        h = np.maximum(h @ w.detach().double().numpy() + b.detach().double().numpy(), 0.0)
    top = dec.predict.detach().double().numpy()[:, 0]
    return float(np.concatenate([gmf, h]) @ top + dec.predict_bias.item())


def test_shapes_follow_the_keras_layout(demo):
    model, _ = build("neumf", demo, **SMALL)
    enc, dec = model.encoder, model.decoder
    # GMF 3 + MLP table 4 / 2 = 2 columns; Dense 4 -> 3 -> 2; prediction 3 + 2 -> 1
    assert enc.users.shape == (demo.n_users, 5) and enc.items.shape == (demo.n_items, 5)
    assert [tuple(w.shape) for w in dec.mlp.weights] == [(4, 3), (3, 2)]
    assert dec.predict.shape == (5, 1)


def test_logits_match_the_hand_computation(demo):
    model, _ = build("neumf", demo, **SMALL)
    randomized(model)
    users, items = torch.tensor([0, 5, 17, 199]), torch.tensor([3, 3, 250, 0])
    reps = model.encoder()
    got = model.decoder.logits(reps.users[-1][users], reps.items[-1][items]).detach()
    expected = [hand_logit(model, u, i) for u, i in zip(users.tolist(), items.tolist())]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", [neumf.SCORE_BLOCK_ELEMENTS, 300 * 3 * 2])
def test_full_ranking_equals_pairwise_logits(demo, monkeypatch, block):
    """The split first layer (user part + item part) and the user blocks (here also 2 users per
    block) give the same scores as the row-by-row logit."""
    monkeypatch.setattr(neumf, "SCORE_BLOCK_ELEMENTS", block)
    model, _ = build("neumf", demo, **SMALL)
    randomized(model)
    users = torch.arange(0, demo.n_users, 9)
    scores = model.scorer()(users)
    reps = model.encoder()
    uu = users.repeat_interleave(demo.n_items)
    ii = torch.arange(demo.n_items).repeat(len(users))
    pairwise = model.decoder.logits(reps.users[-1][uu], reps.items[-1][ii]).detach()
    torch.testing.assert_close(scores, pairwise.view(len(users), demo.n_items),
                               rtol=1e-5, atol=1e-5)
    u, i = int(users[3]), 123
    assert scores[3, i].item() == pytest.approx(hand_logit(model, u, i), rel=1e-5, abs=1e-5)


def test_loss_is_the_mean_bce_over_real_rows(demo):
    model, _ = build("neumf", demo, **SMALL)
    randomized(model)
    users, items = torch.tensor([1, 2, 3, 4]), torch.tensor([10, 11, 12, 13])
    labels, weight = torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 1.0, 0.0])
    batch = Batch(users, {}, extra={"rows": {"users": users, "items": items, "labels": labels,
                                             "weight": weight}})
    total, parts = model.loss(batch)
    terms = []
    for u, i, y in ((1, 10, 1), (2, 11, 0), (3, 12, 0)):    # the fourth row is padding
        p = 1.0 / (1.0 + math.exp(-hand_logit(model, u, i)))
        terms.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
    assert set(parts) == {"bce"}
    assert float(total.detach()) == pytest.approx(sum(terms) / 3, rel=1e-5)


def test_an_epoch_is_every_buy_pair_once_plus_four_negatives(demo):
    model, cfg = build("neumf", demo, **SMALL, batch_size=256)
    sampler = sampler_of(model, demo, cfg)
    buy = sp.csr_matrix(demo.matrices()[-1])
    buys = user_sets(buy)
    assert sampler.steps_per_epoch == -(-5 * buy.nnz // 256)
    batches = one_epoch(sampler)
    rows = {key: torch.cat([b.extra["rows"][key] for b in batches]) for key in
            ("users", "items", "labels", "weight")}
    real = rows["weight"] == 1
    assert int(real.sum()) == 5 * buy.nnz
    assert torch.all(rows["weight"][5 * buy.nnz:] == 0)         # padding only at the end
    users, items, labels = (rows[k][real] for k in ("users", "items", "labels"))
    positives = sorted(zip(users[labels == 1].tolist(), items[labels == 1].tolist()))
    coo = buy.tocoo()
    assert positives == sorted(zip(coo.row.tolist(), coo.col.tolist()))   # each buy pair once
    negatives = list(zip(users[labels == 0].tolist(), items[labels == 0].tolist()))
    assert len(negatives) == 4 * buy.nnz
    assert all(i not in buys[u] for u, i in negatives)       # never a bought item
    # single behavior: negatives may be viewed items (view/cart are not looked at)
    views = user_sets(demo.matrices()[0])
    assert any(i in views[u] for u, i in negatives)
    # each buy pair's 4 negatives belong to its user
    per_user = np.bincount(users[labels == 0].numpy(), minlength=demo.n_users)
    np.testing.assert_array_equal(per_user, 4 * np.diff(buy.indptr))


def test_negatives_are_redrawn_every_epoch(demo):
    model, cfg = build("neumf", demo, **SMALL)
    sampler = sampler_of(model, demo, cfg)
    stream = run_batches(sampler)
    steps = sampler.steps_per_epoch
    first = [next(stream) for _ in range(steps)]
    second = [next(stream) for _ in range(steps)]
    a = torch.cat([b.extra["rows"]["items"] for b in first])
    b = torch.cat([b.extra["rows"]["items"] for b in second])
    assert not torch.equal(a, b)


def test_initial_laws(demo):
    model, _ = build("neumf", demo)
    model.requires_grad_(False)
    enc, dec = model.encoder, model.decoder
    assert enc.users.shape[1] == 64 + 64                     # d 64 GMF + 128 / 2 MLP
    assert abs(float(enc.users.std()) - 0.01) < 5e-4
    limit = math.sqrt(3.0 / (64 + 16))                      # LeCun-uniform on the 80 inputs
    assert float(dec.predict.abs().max()) <= limit and float(dec.predict.abs().max()) > 0.9 * limit
    glorot = math.sqrt(6.0 / (128 + 64))
    assert float(dec.mlp.weights[0].abs().max()) <= glorot
    assert all(float(b.abs().max()) == 0 for b in dec.mlp.biases)
    assert float(dec.predict_bias) == 0


def test_pretrained_start_is_half_gmf_plus_half_mlp(demo):
    """After ``load_pretrained`` NeuMF's logit is 0.5 (GMF logit + MLP logit) on every pair."""
    model, cfg = build("neumf", demo, **SMALL)
    gmf = neumf.AloneModel("gmf", demo.n_users, demo.n_items, cfg, generator(3))
    mlp = neumf.AloneModel("mlp", demo.n_users, demo.n_items, cfg, generator(4))
    randomized(gmf, 5)
    randomized(mlp, 6)
    neumf.load_pretrained(model.encoder, model.decoder, gmf, mlp)
    users, items = torch.tensor([0, 7, 150]), torch.tensor([299, 1, 42])
    with torch.no_grad():
        expected = 0.5 * (gmf.logits(users, items) + mlp.logits(users, items))
        scores = model.scorer()(users)
    torch.testing.assert_close(scores[torch.arange(3), items], expected, rtol=1e-5, atol=1e-5)


def test_pretraining_runs_and_lowers_the_alone_losses(demo):
    matrix = demo.matrices()[-1]
    _, cfg = build("neumf", demo, **SMALL)
    cfg = {**cfg, "pretrain_epochs": 3, "pretrain_lr": 1e-2}
    for part in ("gmf", "mlp"):
        model = neumf.AloneModel(part, demo.n_users, demo.n_items, cfg, generator(1))
        users, items, labels = neumf.training_rows(matrix, 4, generator(2))

        def loss() -> float:
            with torch.no_grad():
                return float(torch.nn.functional.binary_cross_entropy_with_logits(
                    model.logits(users, items), labels))
        before = loss()
        assert neumf.fit_alone(model, matrix, cfg, generator(3)) == []     # no holdout: no checks
        assert loss() < before - 0.05, part
    model, _ = build("neumf", demo, **SMALL, pretrain=True, pretrain_epochs=1)
    assert torch.isfinite(model.scorer()(torch.arange(4))).all()


@pytest.mark.parametrize("part", ["gmf", "mlp"])
def test_alone_scorer_equals_its_logits(demo, part):
    _, cfg = build("neumf", demo, **SMALL)
    model = neumf.AloneModel(part, demo.n_users, demo.n_items, cfg, generator(1))
    randomized(model, 2)
    users = torch.tensor([0, 9, 150])
    scores = model.scorer()(users)
    with torch.no_grad():
        expected = torch.stack([model.logits(torch.full((demo.n_items,), int(u)),
                                             torch.arange(demo.n_items)) for u in users])
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


def test_pretraining_keeps_the_best_holdout_epoch(demo):
    """Every check is recorded; the weights left are those of the best check."""
    from baselines.pretrain import HoldoutRecall
    from baselines.pretrain_data import split_holdout
    _, cfg = build("neumf", demo, **SMALL)
    cfg = {**cfg, "pretrain_epochs": 4, "pretrain_eval_every": 1, "pretrain_lr": 0.1}
    train, held = split_holdout(demo.matrices()[-1], generator(5))
    holdout = HoldoutRecall(train, held, 10, torch.device("cpu"))
    model = neumf.AloneModel("gmf", demo.n_users, demo.n_items, cfg, generator(1))
    curve = neumf.fit_alone(model, train, cfg, generator(3), holdout)
    assert [epoch for epoch, _ in curve] == [1, 2, 3, 4]
    best = max(value for _, value in curve)
    assert curve[-1][1] < best          # here the last epoch is not the best one
    assert holdout.recall(model) == best
    # a check every 3 epochs: after epoch 3 and after the last
    model = neumf.AloneModel("gmf", demo.n_users, demo.n_items, cfg, generator(1))
    curve = neumf.fit_alone(model, train, {**cfg, "pretrain_eval_every": 3}, generator(3), holdout)
    assert [epoch for epoch, _ in curve] == [3, 4]


def test_release_rows_reject_training_items(demo):
    matrix = sp.csr_matrix(demo.matrices()[-1])
    users, items, labels = neumf.training_rows(matrix, 4, generator(9))
    buys = user_sets(matrix)
    assert len(users) == 5 * matrix.nnz and int(labels.sum()) == matrix.nnz
    assert all((i in buys[u]) == bool(y) for u, i, y in
               zip(users.tolist(), items.tolist(), labels.tolist()))


@pytest.mark.parametrize("layers", [[64], [63, 32]])
def test_bad_mlp_layers_are_refused(demo, layers):
    with pytest.raises(ConfigError, match="mlp_layers"):
        build("neumf", demo, mlp_layers=layers)
