"""PME's "k but not j" pairs and the ``multi-behavior+uni`` sampler (spec §1, §7.7)."""
from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from baselines.pme import UNI_SAMPLER, uni_matrix
from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError
from bench.train.samplers import MultiBehaviorSampler, make_sampler
from bench.train.seeds import generator

from tests.multitask.helpers import build


def test_uni_pairs_are_in_k_not_j_with_negatives_outside(small):
    model, cfg = build("pkef", small)
    sampler = make_sampler(model, small, cfg, torch.device("cpu"))
    mats = [m.toarray().astype(bool) for m in small.matrices()]
    pairs_seen = 0
    for step, batch in enumerate(sampler.epoch(generator(4))):
        uni = batch.extra["uni"]
        assert set(uni) == set(model.decoder.uni_pairs)
        users = batch.users.numpy()
        for (k, j), pairs in uni.items():
            u, pos, neg = pairs.users.numpy(), pairs.pos.numpy(), pairs.neg.numpy()
            assert mats[k][u, pos].all() and not mats[j][u, pos].any()     # k but not j
            in_uni = mats[k][u, neg] & ~mats[j][u, neg]
            assert not in_uni.any()                                        # outside the uni set
            # per user min(n_pairs, |pos_k(u)|, |uni(u)|)
            set_size = (mats[k] & ~mats[j]).sum(1)
            expected = np.minimum(np.minimum(mats[k].sum(1), set_size), cfg["n_pairs"])[users]
            counts = np.bincount(u, minlength=small.n_users)[users]
            assert (counts == expected).all()
            pairs_seen += len(pairs)
        if step == 1:
            break
    assert pairs_seen > 0


def test_uni_sampler_leaves_the_main_pairs_of_the_harness_unchanged(small):
    model, cfg = build("pkef", small, users_per_epoch=0, batch_size=32)
    sampler = make_sampler(model, small, cfg, torch.device("cpu"))
    plain = MultiBehaviorSampler(small.matrices(), range(small.n_behaviors), 32, cfg["n_pairs"], 0,
                                 torch.device("cpu"))
    for ours, ref in zip(sampler.epoch(generator(9)), plain.epoch(generator(9))):
        assert torch.equal(ours.users, ref.users)
        for k in ref.pairs:
            for field in ("users", "pos", "neg"):
                assert torch.equal(getattr(ours.pairs[k], field), getattr(ref.pairs[k], field))
    # two epochs draw different uni pairs; the same seed repeats them
    a = [b.extra["uni"] for b in make_sampler(model, small, cfg, torch.device("cpu"))
         .epoch(generator(9))]
    b = [b.extra["uni"] for b in make_sampler(model, small, cfg, torch.device("cpu"))
         .epoch(generator(9))]
    key = model.decoder.uni_pairs[0]
    assert torch.equal(a[0][key].pos, b[0][key].pos)
    s = make_sampler(model, small, cfg, torch.device("cpu"))
    g = generator(9)
    first = next(iter(s.epoch(g))).extra["uni"][key].pos
    second = next(iter(s.epoch(g))).extra["uni"][key].pos
    assert not torch.equal(first, second)


def test_uni_pairs_skip_empty_sets_zero_weights_and_exclusions(small):
    model, _ = build("pkef", small)
    weights = model.decoder.weights
    K = small.n_behaviors
    expected = [(k, j) for k in range(K) for j in range(K)
                if j != k and weights[k] > 0 and uni_matrix(small, k, j).nnz > 0]
    assert model.decoder.uni_pairs == expected
    # demo's carts are all viewed: "cart but not view" is empty and skipped
    assert uni_matrix(small, 1, 0).nnz == 0 and (1, 0) not in expected
    assert (1, 2) in expected and (2, 1) in expected
    model, _ = build("pkef", small, uni_exclude=[1])
    assert all(1 not in pair for pair in model.decoder.uni_pairs)
    model, _ = build("pkef", small, uni_weight=0.0, sampler="multi-behavior")
    assert model.decoder.uni_pairs == []
    with pytest.raises(ConfigError, match="uni_exclude"):
        build("pkef", small, uni_exclude=[3])


def test_pme_refuses_a_sampler_without_uni_pairs(small):
    with pytest.raises(ConfigError, match=re.escape(UNI_SAMPLER)):
        build("pkef", small, sampler="multi-behavior")


def test_uni_matrix_semantics():
    bk = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))
    bj = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 1]], dtype=np.float32))
    data = MultiBehaviorDataset("t", ("a", "b"), {"a": bj, "b": bk},
                                test=sp.csr_matrix((2, 3), dtype=np.float32))
    assert uni_matrix(data, 1, 0).toarray().tolist() == [[0, 1, 0], [0, 1, 0]]
    assert uni_matrix(data, 0, 1).nnz == 0
