"""COPF's contrastive loss (spec §4.5): hand-computed values in every batch layout the samplers make
(one user row per pair, one row per batch user weighted by its pairs, padding slots), weighted
distinct anchors against the direct form (loss and gradients), and the fused fast path against
plain autograd, alone and under vmap."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.kernels import plain_kernels
from bench.models.base import Batch, BehaviorReps, Pairs
from copf.contrastive import contrastive_loss, distinct_items, fast_path_allowed, side_loss

t = torch.tensor


def _reps():
    """K = 2 (behavior 0 auxiliary, 1 target), 2 users, 2 items, d = 2."""
    aux_u = t([[3.0, 0.0], [1.0, 1.0]])
    tgt_u = t([[1.0, 0.0], [0.0, 2.0]])
    aux_i = t([[0.0, 1.0], [1.0, 0.0]])
    tgt_i = t([[1.0, 1.0], [0.0, -1.0]])
    return BehaviorReps([aux_u, tgt_u], [aux_i, tgt_i])


# The same three target pairs (u0, v1), (u0, v1), (u1, v0) in the layouts a batch may have.
LAYOUTS = {
    # one user row per pair (no owner: hand-made batches, the BPR samplers)
    "direct": Batch(users=t([0, 1]), pairs={1: Pairs(t([0, 0, 1]), t([1, 1, 0]), t([0, 0, 1]))}),
    # grouped by the batch's users (the multi-behavior sampler): owner = position in users
    "grouped": Batch(users=t([0, 1]), pairs={1: Pairs(t([0, 0, 1]), t([1, 1, 0]), t([0, 0, 1]),
                                                     owner=t([0, 0, 1]))}),
    # fixed shapes: a padding user (position 2) and two padding slots of weight 0, arbitrary ids
    "padded": Batch(users=t([0, 1, 1]), user_weight=t([1.0, 1.0, 0.0]),
                    pairs={1: Pairs(t([0, 0, 1, 1, 1]), t([1, 1, 0, 0, 1]), t([0, 0, 1, 1, 0]),
                                    weight=t([1.0, 1.0, 1.0, 0.0, 0.0]),
                                    owner=t([0, 0, 1, 2, 2]))}),
}


def _hand_value(tau, gamma):
    r = 1 / math.sqrt(2)
    # users: anchor u0 (twice) = (1,0): cos 1 with its positive, r with aux u1;
    #        anchor u1 = (0,1): cos r with its positive, 0 with aux u0
    users = 2 * math.log(1 + math.exp((r - 1) / tau)) + math.log(1 + math.exp(-r / tau))
    # items: anchor v1 (twice) = (0,-1): cos 0 with its positive (1,0), -1 with aux v0 = (0,1);
    #        anchor v0 = (r, r): cos r with both aux items
    items = 2 * math.log(1 + math.exp(-1 / tau)) + math.log(2)
    return gamma * (users + items) / 2, users, items      # divided by U = 2 on both sides


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_hand_computed_value(layout, fast):
    reps, batch = _reps(), LAYOUTS[layout]
    expected, users, items = _hand_value(0.5, 0.7)
    got = contrastive_loss(reps, batch, temperature=t(0.5), weight=t(0.7), fast=fast)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # the plain kernels (no owner grouping, no fused log-sum-exp) give the same value
    with plain_kernels():
        assert contrastive_loss(reps, batch, t(0.5), t(0.7), fast).item() == \
            pytest.approx(expected, rel=1e-6)
    # the item side alone: summed over the anchors, not averaged (the 1/U comes after)
    pairs = batch.pairs[1]
    side_items = side_loss(reps.items[1], reps.items[0], pairs.pos, pairs.weight, t(2.0), fast)
    assert side_items.item() == pytest.approx(items, rel=1e-6)
    side_users = side_loss(reps.users[1], reps.users[0], t([0, 1]), t([2.0, 1.0]), t(2.0), fast)
    assert side_users.item() == pytest.approx(users, rel=1e-6)


def test_sums_over_auxiliary_behaviors_only():
    reps, batch = _reps(), LAYOUTS["grouped"]
    three = BehaviorReps([reps.users[0], reps.users[0] * 2 + 1, reps.users[1]],
                         [reps.items[0], reps.items[0] - 1, reps.items[1]])
    batch3 = Batch(batch.users, {2: batch.pairs[1]})
    total = contrastive_loss(three, batch3, t(0.3), t(1.0))
    parts = [contrastive_loss(BehaviorReps([three.users[k], three.users[2]],
                                           [three.items[k], three.items[2]]), batch, t(0.3),
                              t(1.0))
             for k in (0, 1)]
    assert total.item() == pytest.approx(sum(p.item() for p in parts), rel=1e-6)
    # no target pairs, or no auxiliary behavior: nothing to contrast
    assert contrastive_loss(three, Batch(batch.users, {}), t(0.3), t(1.0)) is None
    single = BehaviorReps([reps.users[1]], [reps.items[1]])
    assert contrastive_loss(single, Batch(batch.users, {0: batch.pairs[1]}), t(0.3), t(1.0)) is None
    # target pairs that are all padding contribute nothing
    pairs = batch.pairs[1]
    empty = Batch(batch.users, {1: Pairs(pairs.users, pairs.pos, pairs.neg,
                                         torch.zeros(len(pairs)), pairs.owner)})
    assert contrastive_loss(reps, empty, t(0.3), t(1.0)).item() == 0.0


def _plain(anchor_table, aux_table, anchors, tau):
    """The direct formula with autograd's logsumexp: one row per (repeated) anchor."""
    a = F.normalize(anchor_table[anchors], dim=1, eps=1e-12)
    t_ = F.normalize(aux_table, dim=1, eps=1e-12)
    logits = a @ t_.T / tau
    return (torch.logsumexp(logits, 1) - logits[torch.arange(len(anchors)), anchors]).sum()


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.01])
def test_weighted_distinct_anchors_equal_direct_form(tau):
    """An anchor repeated c times is one row of weight c, padding rows of weight 0 add nothing:
    loss and gradients equal the direct form, on the fused path (where its temperature allows
    it) and on the plain one."""
    anchors = t([4, 1, 4, 4, 0, 6, 1, 4, 2])
    ids, counts = t([0, 1, 2, 4, 6]), t([1.0, 2.0, 1.0, 4.0, 1.0], dtype=torch.float64)
    padded_ids = torch.cat([ids, t([3, 5])])
    padded_counts = torch.cat([counts, torch.zeros(2, dtype=torch.float64)])
    inv_tau = torch.tensor(1.0 / tau, dtype=torch.float64)
    forms = [lambda a, b: _plain(a, b, anchors, tau)]
    for fast in sorted({fast_path_allowed(tau), False}):
        forms += [lambda a, b, f=fast: side_loss(a, b, anchors, torch.ones(9, dtype=torch.float64),
                                                 inv_tau, f),
                  lambda a, b, f=fast: side_loss(a, b, ids, counts, inv_tau, f),
                  lambda a, b, f=fast: side_loss(a, b, padded_ids, padded_counts, inv_tau, f)]
    results = []
    for form in forms:
        g = torch.Generator().manual_seed(3)    # the same tables for every form
        target = torch.randn(7, 5, generator=g, dtype=torch.float64).requires_grad_()
        aux = torch.randn(7, 5, generator=g, dtype=torch.float64).requires_grad_()
        loss = form(target, aux)
        loss.backward()
        results.append((loss.detach(), target.grad, aux.grad))
    assert len(results) == (7 if fast_path_allowed(tau) else 4)
    for loss, g_target, g_aux in results[1:]:
        assert torch.allclose(loss, results[0][0], rtol=1e-12, atol=0)
        assert torch.allclose(g_target, results[0][1], rtol=1e-10, atol=1e-12)
        assert torch.allclose(g_aux, results[0][2], rtol=1e-10, atol=1e-12)


def test_grouped_user_side_equals_one_row_per_pair():
    """contrastive_loss with ``owner`` (each batch user once, weighted by its pairs) gives the
    loss and gradients of one user row per pair."""
    g = torch.Generator().manual_seed(8)
    users = t([2, 0, 5, 3, 0])                  # position 4 is a padding user
    owner = t([0, 0, 0, 1, 2, 2, 3, 4, 4])      # user 2 three times, ..., two padding slots
    weight = t([1.0, 1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.float64)
    pos = torch.randint(0, 6, (9,), generator=g)
    grads = []
    for grouped in (True, False):
        g.manual_seed(9)
        tables = [torch.randn(n, 4, generator=g, dtype=torch.float64).requires_grad_()
                  for n in (6, 6, 6, 6)]
        reps = BehaviorReps(tables[:2], tables[2:])
        pairs = Pairs(users[owner], pos, pos, weight, owner if grouped else None)
        loss = contrastive_loss(reps, Batch(users, {1: pairs}), t(0.2, dtype=torch.float64),
                                t(0.5, dtype=torch.float64))
        loss.backward()
        grads.append((loss.detach(), *[x.grad for x in tables]))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


def test_fused_path_under_vmap_equals_each_run_alone():
    """S runs' side losses under vmap (the seed batch's rule of the fused log-sum-exp) equal each
    run's own loss and gradients, with a temperature per run."""
    g = torch.Generator().manual_seed(4)
    target = torch.randn(3, 7, 5, generator=g).requires_grad_()
    aux = torch.randn(3, 7, 5, generator=g).requires_grad_()
    anchors = t([[4, 1, 0], [6, 6, 2], [3, 0, 1]])
    weight = t([[1.0, 2.0, 0.0], [1.0, 1.0, 1.0], [3.0, 0.0, 1.0]])
    inv_tau = t([10.0, 2.0, 35.0])
    batched = torch.func.vmap(side_loss)(target, aux, anchors, weight, inv_tau)
    (batched * t([1.0, 2.0, 3.0])).sum().backward()
    for s in range(3):
        a, b = target.detach()[s].requires_grad_(), aux.detach()[s].requires_grad_()
        alone = side_loss(a, b, anchors[s], weight[s], inv_tau[s])
        ((s + 1) * alone).backward()
        torch.testing.assert_close(batched[s].detach(), alone.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(target.grad[s], a.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(aux.grad[s], b.grad, rtol=1e-5, atol=1e-6)


def test_gradients_reach_both_tables():
    reps = _reps()
    tables = [x.clone().requires_grad_() for x in (*reps.users, *reps.items)]
    loss = contrastive_loss(BehaviorReps(tables[:2], tables[2:]), LAYOUTS["padded"], t(0.5),
                            t(1.0))
    loss.backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in tables)


def test_distinct_items_are_packed_with_their_counts():
    """Positives 4, 2, 4, 7, 2, 4 and two padding slots: three distinct items, counted by weight,
    packed into the first rows (ascending ids); the spare rows weigh 0."""
    items = t([4, 2, 4, 7, 2, 4, 0, 3])
    weight = t([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    ids, counts = distinct_items(items, weight, n_items=10, rows=5)
    assert ids[:3].tolist() == [2, 4, 7]
    assert counts.tolist() == [2.0, 3.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_packed_item_rows_give_the_hand_computed_value(layout):
    for rows in (2, 4):                           # two distinct positive items, spare rows too
        value = contrastive_loss(_reps(), LAYOUTS[layout], t(0.5), t(0.3), item_rows=rows)
        torch.testing.assert_close(value, t(_hand_value(0.5, 0.3)[0]), rtol=1e-5, atol=1e-6)


def test_item_rows_are_planned_from_the_epochs_own_batches(demo_copf):
    """Before an epoch the plan draws the epoch's batches and sizes the rows for the step with
    the most distinct positive items: every step's items fit, none is dropped."""
    trainer, anchors = demo_copf
    sampler = trainer.sampler
    trainer.start_epoch(0)
    assert anchors.rows is not None
    steps = sampler.steps_per_epoch
    most = 0
    for step in range(steps):
        pairs = sampler.batch(torch.tensor(step), torch.tensor(step)).pairs[anchors.target]
        for s in range(pairs.pos.shape[0]):
            real = pairs.pos[s][pairs.weight[s] > 0]
            most = max(most, len(set(real.tolist())))
            ids, counts = distinct_items(pairs.pos[s], pairs.weight[s], anchors.n_items,
                                         anchors.rows)
            assert float(counts.sum()) == len(real)           # every real slot counted once
            assert set(ids[counts > 0].tolist()) == set(real.tolist())
    assert most <= anchors.rows < most + most // 8 + 512


@pytest.fixture
def demo_copf():
    from bench.data.demo import make_demo
    from bench.models.registry import build_model, get_model
    from bench.train import streams
    from bench.train.samplers import make_sampler
    from bench.train.seeds import generator
    from bench.train.trainer import BatchTrainer, Member
    data = make_demo(n_users=300, n_items=400, seed=7)
    spec = get_model("copf")
    cfg = spec.resolve(data.name, data.n_behaviors, {})
    members = [Member(build_model(spec, data, cfg, "cpu", generator(run)), cfg, 10 + run)
               for run in (0, 1)]
    keys = streams.run_keys([m.sampling_seed for m in members])
    sampler = make_sampler(members[0].model, data, cfg, torch.device("cpu"), keys)
    trainer = BatchTrainer(members, data, sampler, torch.device("cpu"), "off", "copf")
    return trainer, members[0].model.decoder.item_anchors
