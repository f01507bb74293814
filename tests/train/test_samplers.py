"""The training samplers keep their invariants: fixed shapes with 0/1 weights on padding, per-user
pair counts, negatives drawn uniformly from the complement of a user's positives and positives
uniformly among them, every user (record) once per epoch, a run's draws the same alone and inside a
batch of runs, equal keys giving equal batches."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.stats import chi2
from torch.utils import _pytree as pytree

from bench.data.demo import make_demo
from bench.errors import ConfigError
from bench.models.registry import build_model, get_model, load_builtin
from bench.train import streams
from bench.train.samplers import (SAMPLERS, SLOT_QUANTUM, BPRSampler, InteractionBPRSampler,
                                  InteractionIndex, MultiBehaviorSampler, endless_batches, grown,
                                  make_sampler, member_batch)
from bench.train.seeds import derive_seed, generator
from tests.train.helpers import CPU, batches, keys, one_epoch

load_builtin()

# user 0: positives {0, 2, 5}; user 1: {3}; user 2: all but item 5; user 3: none
TINY = np.array([[1, 0, 1, 0, 0, 1],
                 [0, 0, 0, 1, 0, 0],
                 [1, 1, 1, 1, 1, 0],
                 [0, 0, 0, 0, 0, 0]])
# a statistic this far in the chi-square tail has probability 1e-6 under uniform draws
TAIL = 1e-6


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_users=200, n_items=300, seed=3)


def _chi_square_ok(counts: np.ndarray) -> bool:
    """Whether ``counts`` (>= 2 cells) are consistent with uniform draws over their cells."""
    expected = counts.sum() / len(counts)
    statistic = ((counts - expected) ** 2 / expected).sum()
    return statistic < chi2.ppf(1 - TAIL, len(counts) - 1)


def _hashes(n: int, seed: int = 0, offset: int = 0) -> torch.Tensor:
    return streams.hashes(keys(seed), torch.arange(offset, offset + n))[0]


# ---- InteractionIndex ---------------------------------------------------------------------------
def test_interaction_index_membership():
    index = InteractionIndex(sp.csr_matrix(TINY.astype(float)), CPU)
    users = torch.tensor([0, 0, 1, 2, 2, 3])
    items = torch.tensor([0, 1, 3, 5, 2, 0])
    assert index.contains(users, items).tolist() == [True, False, True, False, True, False]
    assert index.degree.tolist() == [3, 1, 5, 0]


def test_draws_are_the_ranked_item_of_the_positives_or_the_complement():
    """A draw with hash h is the r-th positive (r = floor(h * deg / 2^32)) or the r-th item outside
    the positives (r = floor(h * (I - deg) / 2^32)), in increasing item order, for any shape."""
    index = InteractionIndex(sp.csr_matrix(TINY.astype(float)), CPU)
    positives = [sorted(np.flatnonzero(row).tolist()) for row in TINY]
    complement = [sorted(np.flatnonzero(row == 0).tolist()) for row in TINY]
    users = torch.tensor([0, 1, 2, 3, 3, 2, 0, 0] * 50).view(2, 200)     # [S, n] like a batch
    h_pos = streams.hashes(keys(1, 2), torch.arange(200))
    h_neg = streams.hashes(keys(1, 2), torch.arange(200, 400))
    pos, neg = index.positives(users, h_pos), index.negatives(users, h_neg)
    assert pos.shape == neg.shape == users.shape
    for u, hp, hn, p, n in zip(users.flatten().tolist(), h_pos.flatten().tolist(),
                               h_neg.flatten().tolist(), pos.flatten().tolist(),
                               neg.flatten().tolist()):
        assert n == complement[u][(hn * len(complement[u])) >> 32]
        if positives[u]:
            assert p == positives[u][(hp * len(positives[u])) >> 32]
        else:
            assert 0 <= p < TINY.shape[1]           # no positive: an arbitrary valid item


def test_negatives_uniform_over_the_complement_and_positives_uniform():
    index = InteractionIndex(sp.csr_matrix(TINY.astype(float)), CPU)
    n = 30000
    for u in range(len(TINY)):
        users = torch.full((n,), u)
        neg = index.negatives(users, _hashes(n, seed=u)).numpy()
        complement = np.flatnonzero(TINY[u] == 0)
        assert set(neg.tolist()) == set(complement.tolist())    # never a positive; all reached
        if len(complement) > 1:
            assert _chi_square_ok(np.bincount(neg, minlength=6)[complement]), (u, neg)
        if TINY[u].any():
            pos = index.positives(users, _hashes(n, seed=u, offset=n)).numpy()
            items = np.flatnonzero(TINY[u])
            assert set(pos.tolist()) == set(items.tolist())
            if len(items) > 1:
                assert _chi_square_ok(np.bincount(pos, minlength=6)[items]), (u, pos)


def test_the_uniformity_check_rejects_a_biased_draw():
    """The check above can fail: the first item of the complement drawn twice as often."""
    counts = np.array([2000, 1000, 1000])
    assert not _chi_square_ok(counts)
    assert _chi_square_ok(np.array([1010, 990, 1000]))


def test_a_user_with_every_item_has_no_negative():
    full = TINY.copy()
    full[1] = 1
    index = InteractionIndex(sp.csr_matrix(full.astype(float)), CPU)
    with pytest.raises(ConfigError, match="every item"):
        index.negatives(torch.tensor([0]), _hashes(1))


# ---- the multi-behavior sampler -----------------------------------------------------------------
def test_multi_behavior_sampler_shapes_counts_and_alignment(demo):
    mats = demo.matrices()
    sampler = MultiBehaviorSampler(mats, [0, 1, 2], 64, 40, 0, CPU, keys(1, 2))
    assert sampler.steps_per_epoch == 4                 # 200 users in batches of 64
    degree = [np.diff(m.indptr) for m in mats]
    dense = [m.toarray().astype(bool) for m in mats]
    epoch = batches(sampler, 4)
    for batch in epoch:
        assert batch.users.shape == batch.user_weight.shape == (2, 64)
        assert batch.noise.shape == (2, 2)
        for k, pairs in batch.pairs.items():
            slots = sampler.slots[k]
            assert slots % SLOT_QUANTUM == 0
            for field in (pairs.users, pairs.pos, pairs.neg, pairs.weight, pairs.owner):
                assert field.shape == (2, slots)        # the same in every step of the epoch
    seen = {0: [], 1: []}
    for batch in epoch:
        for s in (0, 1):
            one = member_batch(batch, s)
            users, user_weight = one.users.numpy(), one.user_weight.numpy()
            assert set(user_weight.tolist()) <= {0.0, 1.0}
            seen[s] += users[user_weight == 1].tolist()
            for k, pairs in one.pairs.items():
                w = pairs.weight.numpy()
                n_real = int(w.sum())
                assert w.tolist() == [1.0] * n_real + [0.0] * (len(w) - n_real)   # real first
                owner = pairs.owner.numpy()
                assert (np.diff(owner[:n_real]) >= 0).all()       # laid out user after user
                assert (users[owner] == pairs.users.numpy()).all()
                # min(n_pairs, #positives) pairs per real user, none for a padding user
                counts = np.bincount(owner[:n_real], minlength=64)
                assert (counts == np.minimum(degree[k][users], 40) * user_weight).all()
                u, pos, neg = pairs.users.numpy(), pairs.pos.numpy(), pairs.neg.numpy()
                assert dense[k][u[:n_real], pos[:n_real]].all()
                assert not dense[k][u, neg].any()                 # padding slots too
                assert ((0 <= pos) & (pos < demo.n_items)).all()
    for s in (0, 1):
        assert sorted(seen[s]) == list(range(demo.n_users))      # every user once
    assert seen[0] != seen[1]                                    # each run its own order
    last = member_batch(epoch[-1], 0).user_weight.tolist()
    assert last == [1.0] * 8 + [0.0] * 56                        # 200 = 3 * 64 + 8
    # the next epoch is another permutation of every user
    following = [u for b in batches(sampler, 8)[4:] for u in
                 member_batch(b, 0).users[member_batch(b, 0).user_weight == 1].tolist()]
    assert sorted(following) == list(range(demo.n_users)) and following != seen[0]


def test_slot_counts_grow_by_an_eighth_in_multiples_of_256(demo):
    assert grown(0, 0) == 0 and grown(0, 10) == 256 and grown(300, 200) == 300
    assert grown(256, 300) == 512            # 300 + 37 = 337, rounded up
    assert grown(1000, 1001) == 1280         # 1001 + 125 = 1126, rounded up
    assert grown(512, 456) == 512 and grown(256, 257) == 512
    sampler = MultiBehaviorSampler(demo.matrices(), [0, 2], 64, 40, 0, CPU, keys(3))
    assert sampler.start_epoch(0) is True          # shapes set for the first time
    for k in (0, 2):
        degree = np.diff(demo.matrices()[k].indptr)
        order = sampler.users.order[0].numpy().reshape(4, 64)
        valid = sampler.users.valid[0].numpy().reshape(4, 64)
        need = int((np.minimum(degree[order], 40) * valid).sum(1).max())
        assert sampler.slots[k] == grown(0, need)
    assert sampler.start_epoch(0) is False         # the same epoch again fits
    # a sampler restored from the state resumes to the same pairs
    resumed = MultiBehaviorSampler(demo.matrices(), [0, 2], 64, 40, 0, CPU, keys(3))
    resumed.restore(sampler.state())
    assert all(resumed.slots[k] >= sampler.slots[k] for k in (0, 2))
    assert resumed.start_epoch(0) is False
    step, global_step = torch.tensor(2), torch.tensor(6)
    _assert_same(sampler.batch(step, global_step), resumed.batch(step, global_step), prefix=True)


def test_restore_gives_the_saved_slot_counts(demo):
    sampler = MultiBehaviorSampler(demo.matrices(), [0, 2], 64, 40, 0, CPU, keys(3))
    sampler.start_epoch(0)
    resumed = MultiBehaviorSampler(demo.matrices(), [0, 2], 64, 40, 0, CPU, keys(3))
    resumed.restore(sampler.state())
    assert resumed.slots == sampler.slots


def test_users_per_epoch_limits_the_epoch(demo):
    sampler = MultiBehaviorSampler(demo.matrices(), [2], 32, 40, 100, CPU, keys(1))
    assert sampler.steps_per_epoch == 4
    epoch = one_epoch(sampler)
    users = torch.cat([b.users[b.user_weight == 1] for b in epoch])
    assert len(users) == 100 and len(set(users.tolist())) == 100
    assert sum(len(b.users) for b in epoch) - 100 == 28          # padding of the last step


def test_pairs_through_the_sampler_are_uniform():
    """Many steps of the sampler on a tiny matrix: each user's negatives are uniform over the
    items outside its positives, and its positives uniform over them."""
    sampler = MultiBehaviorSampler([sp.csr_matrix(TINY.astype(float))], [0], 4, 3, 0, CPU,
                                   keys(7))
    drawn = {(u, kind): [] for u in range(4) for kind in ("pos", "neg")}
    for batch, _ in itertools.islice(endless_batches(sampler), 1500):
        pairs = member_batch(batch, 0).pairs[0]
        real = pairs.weight == 1
        for u in range(4):
            mine = real & (pairs.users == u)
            drawn[(u, "pos")] += pairs.pos[mine].tolist()
            drawn[(u, "neg")] += pairs.neg[mine].tolist()
    for u, count in enumerate((3, 1, 3, 0)):            # min(n_pairs = 3, #positives)
        assert len(drawn[(u, "pos")]) == len(drawn[(u, "neg")]) == 1500 * count
    for u in range(3):
        cells_of = {"pos": np.flatnonzero(TINY[u]), "neg": np.flatnonzero(TINY[u] == 0)}
        for kind, cells in cells_of.items():
            values = np.array(drawn[(u, kind)])
            assert set(values.tolist()) == set(cells.tolist()), (u, kind)
            if len(cells) > 1:
                assert _chi_square_ok(np.bincount(values, minlength=6)[cells]), (u, kind)


def test_a_behavior_without_pairs_gets_padding_only():
    empty = sp.csr_matrix((4, 6))
    sampler = MultiBehaviorSampler([sp.csr_matrix(TINY.astype(float)), empty], [0, 1], 4, 3, 0,
                                   CPU, keys(1))
    batch = member_batch(batches(sampler, 1)[0], 0)
    assert float(batch.pairs[1].count()) == 0.0
    assert batch.pairs[0].count() == 7.0


# ---- the BPR samplers ---------------------------------------------------------------------------
def test_bpr_sampler_draws_interaction_count_per_epoch_from_active_users(demo):
    target = demo.matrices()[-1]
    sampler = BPRSampler(target, 2, 100, CPU, keys(0, 1))
    assert sampler.steps_per_epoch == -(-target.nnz // 100)
    dense = target.toarray().astype(bool)
    active = np.flatnonzero(dense.any(1))
    epochs = 20
    drawn = batches(sampler, epochs * sampler.steps_per_epoch)
    users = []
    for step, batch in enumerate(drawn):
        pairs = batch.pairs[2]
        assert pairs.users.shape == pairs.weight.shape == (2, 100)
        assert torch.equal(batch.users, pairs.users) and torch.equal(batch.user_weight,
                                                                     pairs.weight)
        u, pos, neg = pairs.users.numpy(), pairs.pos.numpy(), pairs.neg.numpy()
        assert dense[u, pos].all() and not dense[u, neg].any()
        users += u[pairs.weight.numpy() == 1].tolist()
    per_epoch = [sum(float(b.pairs[2].weight[s].sum()) for b in drawn[:sampler.steps_per_epoch])
                 for s in (0, 1)]
    assert per_epoch == [target.nnz] * 2
    last = drawn[sampler.steps_per_epoch - 1].pairs[2].weight[0].tolist()
    assert last == [1.0] * (target.nnz % 100) + [0.0] * (100 - target.nnz % 100)
    # users uniform among those with a positive
    counts = np.bincount(users, minlength=demo.n_users)
    assert set(np.flatnonzero(counts).tolist()) == set(active.tolist())
    assert _chi_square_ok(counts[active])


def test_interaction_sampler_visits_every_interaction_once_per_epoch(demo):
    target = demo.matrices()[-1].tocsr()
    sampler = InteractionBPRSampler(target, 2, 64, CPU, keys(0))
    rows, cols = target.nonzero()
    records = sorted(zip(rows.tolist(), cols.tolist()))
    dense = target.toarray().astype(bool)
    orders = []
    drawn = [member_batch(b, 0) for b in batches(sampler, 2 * sampler.steps_per_epoch)]
    assert sampler.steps_per_epoch == -(-target.nnz // 64)
    for epoch in range(2):
        pairs = [b.pairs[2] for b in drawn[epoch * sampler.steps_per_epoch:
                                           (epoch + 1) * sampler.steps_per_epoch]]
        real = torch.cat([p.weight for p in pairs]) == 1
        assert int((~real).sum()) == sampler.steps_per_epoch * 64 - target.nnz
        users = torch.cat([p.users for p in pairs])
        pos = torch.cat([p.pos for p in pairs])
        neg = torch.cat([p.neg for p in pairs])
        assert all(len(p) == 64 for p in pairs)
        order = list(zip(users[real].tolist(), pos[real].tolist()))
        assert sorted(order) == records
        assert not dense[users.numpy(), neg.numpy()].any()
        orders.append(order)
    assert orders[0] != orders[1]                      # shuffled anew each epoch


# ---- every sampler ------------------------------------------------------------------------------
# a model using each registered sampler (and its overrides)
SAMPLER_MODELS = {
    "multi-behavior": ("copf", {"batch_size": 16}),
    "multi-behavior+uni": ("pkef", {"batch_size": 16}),
    "bpr": ("lightgcn", {"batch_size": 256}),
    "bpr-interactions": ("lightgcn", {"sampler": "bpr-interactions", "batch_size": 256}),
    "crgcn": ("crgcn", {"batch_size": 64}),
    "mb-cgcn": ("mb-cgcn", {"batch_size": 64}),
    "mbgcn": ("mbgcn", {"batch_size": 256}),
    "bcipm": ("bcipm", {"batch_size": 512}),
    "nmtr": ("nmtr", {"batch_size": 512}),
    "gnmr": ("gnmr", {"batch_size": 16}),
    "neumf": ("neumf", {"batch_size": 256}),
    "s-mbrec": ("s-mbrec", {"batch_size": 128}),
    "kmclr": ("kmclr-nokg", {"batch_size": 256}),
    "cml": ("cml", {"batch_size": 256}),
}


def test_every_registered_sampler_is_covered():
    assert set(SAMPLER_MODELS) == set(SAMPLERS)


def _sampler(name, dataset, seeds):
    model_name, overrides = SAMPLER_MODELS[name]
    spec = get_model(model_name)
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, overrides)
    assert cfg["sampler"] == name
    model = build_model(spec, dataset, cfg, "cpu", generator(0))
    return make_sampler(model, dataset, cfg, CPU, keys(*seeds))


def _assert_same(a, b, prefix: bool = False) -> bool:
    """Two batches are equal leaf by leaf; with ``prefix``, a slot axis (the last) may be longer in
    one of them and the common slots are compared. Returns whether some shape differed."""
    leaves_a, spec_a = pytree.tree_flatten(a)
    leaves_b, spec_b = pytree.tree_flatten(b)
    assert spec_a == spec_b
    differed = False
    for x, y in zip(leaves_a, leaves_b):
        if x is None or y is None:                  # an absent field (Pairs.owner)
            assert x is None and y is None
            continue
        if prefix and x.shape != y.shape:
            assert x.shape[:-1] == y.shape[:-1]
            n = min(x.shape[-1], y.shape[-1])
            x, y = x[..., :n], y[..., :n]
            differed = True
        assert torch.equal(x, y)
    return differed


def _draws_differ(a, b) -> bool:
    """Some sampled leaf of equal shape differs (the last behavior's positives, or the rows of a
    sampler that puts its samples in ``Batch.extra``)."""
    if a.pairs:
        return not torch.equal(a.pairs[max(a.pairs)].pos, b.pairs[max(b.pairs)].pos)
    leaves_a, leaves_b = pytree.tree_leaves(a.extra), pytree.tree_leaves(b.extra)
    return any(x.shape == y.shape and not torch.equal(x, y) for x, y in zip(leaves_a, leaves_b))


@pytest.fixture(scope="module")
def small():
    return make_demo(n_users=120, n_items=150, seed=5)


@pytest.mark.parametrize("name", sorted(SAMPLER_MODELS))
def test_a_runs_batches_are_the_same_alone_and_in_a_batch(name, small):
    """Run s of a batch draws what it draws alone (its key alone decides), across an epoch's end;
    slot counts follow the batch's largest need, so only the common slots are compared (real
    slots come first, so they are all among them)."""
    together = _sampler(name, small, (5, 9))
    steps = together.steps_per_epoch + 2
    pairs_of = [(0, _sampler(name, small, (5,))), (1, _sampler(name, small, (9,)))]
    differed = False
    for s, alone in pairs_of:
        for joint, single in zip(batches(together, steps), batches(alone, steps)):
            mine, own = member_batch(joint, s), member_batch(single, 0)
            for k in mine.pairs:
                assert torch.equal(mine.pairs[k].count(), own.pairs[k].count())
            differed |= _assert_same(mine, own, prefix=True)
    if name == "multi-behavior":
        assert differed      # run 5 alone needs more view slots than run 9: other shapes


@pytest.mark.parametrize("name", sorted(SAMPLER_MODELS))
def test_equal_keys_equal_batches_other_keys_other_batches(name, small):
    a, b, c = (_sampler(name, small, seeds) for seeds in ((3, 4), (3, 4), (4, 3)))
    steps = a.steps_per_epoch + 1
    first, second, swapped = batches(a, steps), batches(b, steps), batches(c, steps)
    for x, y, z in zip(first, second, swapped):
        _assert_same(x, y)
        assert _draws_differ(x, z)
        _assert_same(member_batch(x, 0), member_batch(z, 1), prefix=True)


def test_endless_batches_report_shape_changes_at_epoch_starts(demo):
    sampler = MultiBehaviorSampler(demo.matrices(), [0, 1, 2], 64, 40, 0, CPU, keys(1))
    changed = [c for _, c in itertools.islice(endless_batches(sampler), 8)]
    assert changed[0] is True and not any(changed[1:4])
    assert not any(c for i, c in enumerate(changed) if i % 4)     # never inside an epoch


def test_seeds_depend_on_purpose_dataset_and_run_not_model():
    a = derive_seed(1, "taobao", 0, "init")
    assert a == derive_seed(1, "taobao", 0, "init")
    others = {derive_seed(1, "taobao", 0, "sampling"), derive_seed(1, "taobao", 1, "init"),
              derive_seed(1, "beibei", 0, "init"), derive_seed(2, "taobao", 0, "init")}
    assert a not in others and len(others) == 4
