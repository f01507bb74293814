"""Build-time pretraining (baselines.pretrain): the holdout rule, its own sampling, each model
improving its own objective, early stopping and the best tables returned (the encoders' use of it:
test_mb_cgcn.py, test_mbgcn.py)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from baselines import pretrain
from baselines.pretrain import (HoldoutRecall, LightGCN, MatrixFactorization, PretrainConfig,
                                ReleaseGCN, fit_early_stopped)
from baselines.pretrain_data import DistinctUserSampling, RecordSampling, split_holdout
from bench.data.graphs import Graph, bipartite, normalize
from bench.errors import ConfigError
from bench.train.seeds import generator
from tests.baselines.helpers import user_sets

CPU = torch.device("cpu")


def config(model: str, **overrides) -> PretrainConfig:
    values = dict(model=model, max_epochs=3, eval_every=1, patience=2, lr=1e-2, reg=1e-4,
                  batch_size=64, dim=8, layers=2, init_std=0.1, cutoff=20)
    values.update(overrides)
    return PretrainConfig(**values)


def test_holdout_takes_one_item_of_each_user_with_two(demo):
    views = demo.matrices()[0]
    train, held = split_holdout(views, generator(3))
    degree = np.diff(views.indptr)
    assert np.array_equal(np.diff(held.indptr), (degree >= 2).astype(int))
    assert held.multiply(train).nnz == 0
    assert (train + held != views).nnz == 0             # nothing lost, nothing added
    again_train, again_held = split_holdout(views, generator(3))
    assert (again_held != held).nnz == 0 and (again_train != train).nnz == 0
    single = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 1]], dtype=np.float32))
    _, held = split_holdout(single, generator(0))
    assert held[0].nnz == 0 and held[1].nnz == 1        # a lone interaction stays in training


def test_samplings_draw_positives_and_negatives_of_the_matrix(demo):
    views = demo.matrices()[0]
    owned = user_sets(views)
    distinct = DistinctUserSampling(views, 50, CPU)
    batches = list(distinct.epoch(generator(4)))
    assert len(batches) == views.nnz // 50 + 1
    for users, pos, neg in batches:
        assert len(set(users.tolist())) == len(users) == 50
        for u, p, n in zip(users.tolist(), pos.tolist(), neg.tolist()):
            assert p in owned[u] and n not in owned[u]
    seen = []
    for users, pos, neg in RecordSampling(views, 100, CPU).epoch(generator(5)):
        for u, p, n in zip(users.tolist(), pos.tolist(), neg.tolist()):
            assert n not in owned[u]
            seen.append((u, p))
    assert sorted(seen) == sorted((u, i) for u in range(demo.n_users) for i in owned[u])


def _model(kind: str, train: sp.csr_matrix, cfg: PretrainConfig, seed: int):
    gen = generator(seed)
    if kind == "mf":
        return MatrixFactorization(*train.shape, cfg, gen, CPU)
    graph = Graph(normalize(bipartite(train), "symmetric"), CPU)
    cls = ReleaseGCN if kind == "gcn" else LightGCN
    return cls(graph, *train.shape, cfg, gen, CPU)


@pytest.mark.parametrize("kind", pretrain.PRETRAIN_MODELS)
def test_each_model_improves_its_loss_and_its_holdout_recall(kind, demo):
    cfg = config(kind, max_epochs=8, eval_every=2, patience=4,
                 lr=1e-2 if kind == "mf" else 5e-3, reg=1e-3 if kind == "mf" else 1e-4)
    train, held = split_holdout(demo.matrices()[0], generator(1))
    holdout = HoldoutRecall(train, held, cfg.cutoff, CPU)
    sampling = (RecordSampling if kind == "mf" else DistinctUserSampling)(train, 64, CPU)
    fixed = list(sampling.epoch(generator(9)))[:4]      # the same triples before and after

    def mean_loss(model):
        with torch.no_grad():
            return float(sum(model.loss(*triples) for triples in fixed)) / len(fixed)
    model = _model(kind, train, cfg, seed=2)
    before_loss, before_recall = mean_loss(model), holdout.recall(model)
    result = fit_early_stopped(model, sampling, holdout, cfg, generator(7), "test")
    assert mean_loss(model) < 0.9 * before_loss
    assert result.best_recall > before_recall + 0.02
    assert result.best_recall == max(recall for _, recall in result.curve)


def test_early_stopping_stops_after_patience_flat_evaluations(demo):
    # a learning rate this small leaves the holdout ranking unchanged: no evaluation is better
    cfg = config("lightgcn", max_epochs=50, eval_every=2, patience=3, lr=1e-12)
    result = pretrain.pretrain_lightgcn(demo.matrices()[0], cfg, generator(1), CPU)
    assert result.epochs_run == 8                      # evaluations at 2 (best), 4, 6, 8
    assert [epoch for epoch, _ in result.curve] == [2, 4, 6, 8]
    assert result.best_epoch == 2
    uncapped = pretrain.pretrain_mf(demo.matrices()[-1], config("mf", max_epochs=3, patience=9),
                                    generator(1), CPU)
    assert uncapped.epochs_run == 3 and [e for e, _ in uncapped.curve] == [1, 2, 3]


def test_the_tables_of_the_best_evaluation_are_returned(demo, monkeypatch):
    scripted = iter([0.1, 0.3, 0.2, 0.25])
    snapshots = []

    def fake_recall(self, model):
        snapshots.append(model.users.detach().clone())
        return next(scripted)
    monkeypatch.setattr(HoldoutRecall, "recall", fake_recall)
    cfg = config("mf", max_epochs=10, eval_every=1, patience=2)
    result = pretrain.pretrain_mf(demo.matrices()[-1], cfg, generator(1), CPU)
    assert result.epochs_run == 4 and result.best_epoch == 2 and result.best_recall == 0.3
    assert torch.equal(result.users, snapshots[1])
    assert not torch.equal(result.users, snapshots[-1])


def test_same_generator_same_tables_and_the_global_stream_untouched(demo):
    cfg = config("gcn", max_epochs=2)
    state = torch.get_rng_state()
    first = pretrain.pretrain(demo.matrices()[0], cfg, generator(5), CPU)
    assert torch.equal(torch.get_rng_state(), state)
    second = pretrain.pretrain(demo.matrices()[0], cfg, generator(5), CPU)
    other = pretrain.pretrain(demo.matrices()[0], cfg, generator(6), CPU)
    assert torch.equal(first.users, second.users) and torch.equal(first.items, second.items)
    assert not torch.equal(first.users, other.users)


def test_bad_settings_name_the_fix(demo):
    with pytest.raises(ConfigError, match="unknown pretraining model 'ngcf'"):
        config("ngcf")
    empty = sp.csr_matrix((4, 5), dtype=np.float32)
    with pytest.raises(ConfigError, match="pretrain_model=none"):
        pretrain.pretrain_mf(empty, config("mf"), generator(0), CPU)
