"""PME's "k but not j" pairs and the ``multi-behavior+uni`` sampler (spec §1, §7.7)."""
from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from baselines.decoders.pme import UNI_SAMPLER, uni_matrix
from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError
from bench.train import streams
from bench.train.samplers import (MultiBehaviorSampler, endless_batches, make_sampler,
                                  run_batches)

from tests.multitask.helpers import build, one_epoch, sampler_of


def test_uni_pairs_are_in_k_not_j_with_negatives_outside(small):
    model, cfg = build("pkef", small, batch_size=50)
    mats = [m.toarray().astype(bool) for m in small.matrices()]
    pairs_seen = 0
    for step, batch in enumerate(one_epoch(sampler_of(model, small, cfg, (4,)))):
        uni = batch.extra["uni"]
        assert set(uni) == set(model.decoder.uni_pairs)
        users, user_weight = batch.users.numpy(), batch.user_weight.numpy()
        for (k, j), pairs in uni.items():
            u, pos, neg = pairs.users.numpy(), pairs.pos.numpy(), pairs.neg.numpy()
            w = pairs.weight.numpy()
            assert len(pairs) % 256 == 0 and set(w.tolist()) <= {0.0, 1.0}
            assert (users[pairs.owner.numpy()] == u).all()                  # owner: u's position
            real = w == 1.0
            assert mats[k][u[real], pos[real]].all()                        # k ...
            assert not mats[j][u[real], pos[real]].any()                    # ... but not j
            in_uni = mats[k][u, neg] & ~mats[j][u, neg]
            assert not in_uni.any()                                        # outside the uni set
            # per real user min(n_pairs, |pos_k(u)|, |uni(u)|); none for a padding user
            set_size = (mats[k] & ~mats[j]).sum(1)
            expected = np.minimum(np.minimum(mats[k].sum(1), set_size), cfg["n_pairs"])[users]
            counts = np.bincount(pairs.owner.numpy()[real], minlength=len(users))
            assert (counts == expected * user_weight).all()
            pairs_seen += int(real.sum())
        if step == 2:     # the epoch's last batch: 120 users in 3 steps of 50, 30 padding users
            assert user_weight.sum() == 20
    assert pairs_seen > 0


def test_uni_sampler_leaves_the_main_pairs_of_the_harness_unchanged(small):
    model, cfg = build("pkef", small, users_per_epoch=0, batch_size=32)
    keys = streams.run_keys([9, 10])
    sampler = make_sampler(model, small, cfg, torch.device("cpu"), keys)
    plain = make_sampler(model, small, {**cfg, "sampler": "multi-behavior"}, torch.device("cpu"),
                         keys)
    assert type(plain) is MultiBehaviorSampler and type(sampler) is not MultiBehaviorSampler
    n = sampler.steps_per_epoch + 2         # into the second epoch
    for (ours, _), (ref, _) in zip(itertools.islice(endless_batches(sampler), n),
                                   itertools.islice(endless_batches(plain), n)):
        assert "uni" in ours.extra and "uni" not in ref.extra
        for field in ("users", "user_weight", "noise"):
            assert torch.equal(getattr(ours, field), getattr(ref, field))
        assert set(ours.pairs) == set(ref.pairs)
        for k in ref.pairs:
            for field in ("users", "pos", "neg", "weight", "owner"):
                assert torch.equal(getattr(ours.pairs[k], field), getattr(ref.pairs[k], field))
    # the same keys repeat the uni pairs; another epoch draws other ones
    key = model.decoder.uni_pairs[0]
    again = make_sampler(model, small, cfg, torch.device("cpu"), keys)
    a = [b.extra["uni"][key] for b in itertools.islice(run_batches(sampler), n)]
    b = [b.extra["uni"][key] for b in itertools.islice(run_batches(again), n)]
    assert all(torch.equal(x.pos, y.pos) and torch.equal(x.neg, y.neg) for x, y in zip(a, b))
    first, second = a[0], a[sampler.steps_per_epoch]      # step 0 of epochs 0 and 1
    assert not torch.equal(first.pos, second.pos)


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
