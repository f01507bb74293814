"""The reference multi-behavior sampler and the BPR sampler keep their invariants."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from bench.data.demo import make_demo
from bench.train.samplers import (BPRSampler, InteractionBPRSampler, InteractionIndex,
                                  MultiBehaviorSampler)
from bench.train.seeds import derive_seed, generator


def test_interaction_index_membership_and_draws():
    m = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0]], dtype=float))
    index = InteractionIndex(m, torch.device("cpu"))
    users = torch.tensor([0, 0, 1, 2, 2])
    items = torch.tensor([0, 1, 3, 3, 2])
    assert index.contains(users, items).tolist() == [True, False, True, False, True]
    gen = generator(0)
    many = torch.tensor([0, 1, 2] * 200)
    pos = index.draw_positives(many, gen)
    neg = index.draw_negatives(many, gen)
    dense = torch.tensor(m.toarray(), dtype=torch.bool)
    assert dense[many, pos].all()
    assert not dense[many, neg].any()
    assert set(pos[many == 2].tolist()) == {0, 1, 2}        # uniform over positives: all appear


def test_multi_behavior_sampler_counts_and_alignment():
    data = make_demo(n_users=200, n_items=300, seed=3)
    sampler = MultiBehaviorSampler(data.matrices(), [0, 1, 2], 64, 40, 0, torch.device("cpu"))
    assert sampler.steps_per_epoch() == 4
    seen = []
    for batch in sampler.epoch(generator(1)):
        seen.append(batch.users)
        for k, pairs in batch.pairs.items():
            m = data.matrices()[k]
            degree = np.diff(m.indptr)
            expected = np.minimum(degree[batch.users.numpy()], 40)
            counts = np.bincount(pairs.users.numpy(), minlength=data.n_users)[batch.users.numpy()]
            assert (counts == expected).all()
            dense = torch.tensor(m.toarray(), dtype=torch.bool)
            assert dense[pairs.users, pairs.pos].all()
            assert not dense[pairs.users, pairs.neg].any()
    assert sorted(torch.cat(seen).tolist()) == list(range(data.n_users))   # every user once


def test_users_per_epoch_limits_the_epoch():
    data = make_demo(n_users=200, n_items=300, seed=3)
    sampler = MultiBehaviorSampler(data.matrices(), [2], 32, 40, 100, torch.device("cpu"))
    users = torch.cat([b.users for b in sampler.epoch(generator(1))])
    assert len(users) == 100 and len(set(users.tolist())) == 100


def test_bpr_sampler_draws_interaction_count_per_epoch():
    data = make_demo(n_users=200, n_items=300, seed=3)
    sampler = BPRSampler(data.matrices()[-1], 2, 100, torch.device("cpu"))
    batches = list(sampler.epoch(generator(0)))
    assert sum(len(b.pairs[2]) for b in batches) == data.matrices()[-1].nnz
    assert len(batches) == sampler.steps_per_epoch()


def test_interaction_sampler_visits_every_interaction_once_per_epoch():
    data = make_demo(n_users=200, n_items=300, seed=3)
    target = data.matrices()[-1].tocsr()
    sampler = InteractionBPRSampler(target, 2, 64, torch.device("cpu"))
    pairs = [b.pairs[2] for b in sampler.epoch(generator(0))]
    users = torch.cat([p.users for p in pairs]).tolist()
    pos = torch.cat([p.pos for p in pairs]).tolist()
    neg = torch.cat([p.neg for p in pairs]).tolist()
    rows, cols = target.nonzero()
    assert sorted(zip(users, pos)) == sorted(zip(rows.tolist(), cols.tolist()))
    assert not np.asarray(target[users, neg]).any()
    assert len(pairs) == sampler.steps_per_epoch()


def test_same_generator_same_batches():
    data = make_demo(n_users=100, n_items=150, seed=3)
    sampler = MultiBehaviorSampler(data.matrices(), [0, 1, 2], 50, 40, 0, torch.device("cpu"))
    a = [b.pairs[1].neg for b in sampler.epoch(generator(5))]
    b = [b.pairs[1].neg for b in sampler.epoch(generator(5))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_seeds_depend_on_purpose_dataset_and_run_not_model():
    a = derive_seed(1, "taobao", 0, "init")
    assert a == derive_seed(1, "taobao", 0, "init")
    others = {derive_seed(1, "taobao", 0, "sampling"), derive_seed(1, "taobao", 1, "init"),
              derive_seed(1, "beibei", 0, "init"), derive_seed(2, "taobao", 0, "init")}
    assert a not in others and len(others) == 4
