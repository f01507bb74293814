"""COPF's contrastive loss (spec §4.5): hand-computed values, the unique-anchor saving against the
direct form (loss and gradients), and the fused fast path against plain autograd."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.models.base import Batch, BehaviorReps, Pairs
from copf.contrastive import contrastive_loss, side_loss


def _two_behaviors():
    """K = 2 (behavior 0 auxiliary, 1 target), 2 users, 2 items, d = 2."""
    aux_u = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    tgt_u = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    aux_i = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    tgt_i = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    reps = BehaviorReps([aux_u, tgt_u], [aux_i, tgt_i])
    t = lambda x: torch.tensor(x)  # noqa: E731
    batch = Batch(users=t([0, 1]), pairs={1: Pairs(t([0, 0, 1]), t([1, 1, 0]), t([0, 0, 1]))})
    return reps, batch


def test_hand_computed_value():
    reps, batch = _two_behaviors()
    tau = 0.5
    r = 1 / math.sqrt(2)
    # users: anchor u0 (twice) = (1,0): cos 1 with its positive, r with aux u1;
    #        anchor u1 = (0,1): cos r with its positive, 0 with aux u0
    users = 2 * math.log(1 + math.exp((r - 1) / tau)) + math.log(1 + math.exp(-r / tau))
    # items: anchor v1 (twice) = (0,-1): cos 0 with its positive (1,0), -1 with aux v0 = (0,1);
    #        anchor v0 = (r, r): cos r with both aux items
    items = 2 * math.log(1 + math.exp(-1 / tau)) + math.log(2)
    expected = 0.7 * (users + items) / 2          # gamma = 0.7, divided by U = 2 on both sides
    got = contrastive_loss(reps, batch, temperature=tau, weight=0.7)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # the item side is divided by the number of users, not of items or pairs
    side_items = side_loss(reps.items[1], reps.items[0], batch.pairs[1].pos, tau)
    assert side_items.item() == pytest.approx(items, rel=1e-6)


def test_sums_over_auxiliary_behaviors_only():
    reps, batch = _two_behaviors()
    three = BehaviorReps([reps.users[0], reps.users[0] * 2 + 1, reps.users[1]],
                         [reps.items[0], reps.items[0] - 1, reps.items[1]])
    batch3 = Batch(batch.users, {2: batch.pairs[1]})
    total = contrastive_loss(three, batch3, 0.3, 1.0)
    parts = [contrastive_loss(BehaviorReps([three.users[k], three.users[2]],
                                           [three.items[k], three.items[2]]), batch, 0.3, 1.0)
             for k in (0, 1)]
    assert total.item() == pytest.approx(sum(p.item() for p in parts), rel=1e-6)
    # no target pair, or no auxiliary behavior: nothing to contrast
    assert contrastive_loss(three, Batch(batch.users, {}), 0.3, 1.0) is None
    single = BehaviorReps([reps.users[1]], [reps.items[1]])
    assert contrastive_loss(single, Batch(batch.users, {0: batch.pairs[1]}), 0.3, 1.0) is None


def _plain(anchor_table, aux_table, anchors, tau):
    """The direct formula with autograd's logsumexp: one row per (repeated) anchor."""
    a = F.normalize(anchor_table[anchors], dim=1, eps=1e-12)
    t = F.normalize(aux_table, dim=1, eps=1e-12)
    logits = a @ t.T / tau
    return (torch.logsumexp(logits, 1) - logits[torch.arange(len(anchors)), anchors]).sum()


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.01])
def test_unique_saving_equals_direct_form(tau):
    g = torch.Generator().manual_seed(3)
    anchors = torch.tensor([4, 1, 4, 4, 0, 6, 1, 4, 2])
    grads = []
    for unique, fn in ((True, side_loss), (False, side_loss), (None, _plain)):
        g.manual_seed(3)   # the same tables for every form
        target = torch.randn(7, 5, generator=g, dtype=torch.float64).requires_grad_()
        aux = torch.randn(7, 5, generator=g, dtype=torch.float64).requires_grad_()
        loss = fn(target, aux, anchors, tau) if unique is None else fn(target, aux, anchors, tau,
                                                                         unique=unique)
        loss.backward()
        grads.append((loss.detach(), target.grad, aux.grad))
    for loss, g_target, g_aux in grads[1:]:
        assert torch.allclose(loss, grads[0][0], rtol=1e-12, atol=0)
        assert torch.allclose(g_target, grads[0][1], rtol=1e-10, atol=1e-12)
        assert torch.allclose(g_aux, grads[0][2], rtol=1e-10, atol=1e-12)


def test_gradients_reach_both_tables():
    reps, batch = _two_behaviors()
    tables = [t.clone().requires_grad_() for t in (*reps.users, *reps.items)]
    loss = contrastive_loss(BehaviorReps(tables[:2], tables[2:]), batch, 0.5, 1.0)
    loss.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in tables)
