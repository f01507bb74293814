"""COPF's contrastive loss between the target table and every auxiliary table (spec §4.5, Eq. 8 as
the code computes it: ``cal_cl_loss`` with ``ssl_mode = both_side``).

For every auxiliary behavior k < K (the target is K):

- anchors: the target rows n(Z^K[a]) of the batch's sampled target-positive pairs: their users on
  the user side, their positive items on the item side, repeats included (a user appears once per
  sampled pair, up to ``n_pairs`` times; items are drawn with replacement);
- positive: the same user (item) in the auxiliary table, n(Z^k[a]);
- negatives: every user (item) of the auxiliary table, the positive included;
- similarity: cosine over temperature tau (rows l2-normalized with eps 1e-12; the code has none);
- each side is summed over its anchors and divided by the number of USERS (both sides, as the code);
- L_cl = gamma * sum_{k<K} (l_U + l_V) / U. Gradients reach both tables.

Saving: an anchor that repeats c times contributes c times the same term, so each distinct anchor is
computed once and weighted by its count. This is the same loss with the same gradients, at a cost
that grows with the number of distinct anchors instead of the number of pairs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.kernels import plain
from bench.models.base import Batch, BehaviorReps, rows

NORM_EPS = 1e-12


# Above this 1/tau the shifted exponentials of the fast path could underflow; use logsumexp there.
FAST_MAX_INV_TAU = 40.0


class _WeightedLogSumExp(torch.autograd.Function):
    """sum_i w_i log sum_j exp(<a_i, t_j> / tau) for rows of norm <= 1. Since |<a, t>| <= 1 the
    logits are shifted by the constant 1/tau instead of their row maximum, and the shift rides in
    the GEMM as one extra column ([a / tau, -1/tau] . [t, 1]); the exponentials are taken in place
    and reused by the backward (which may therefore run once: a second backward raises)."""

    @staticmethod
    def forward(ctx, anchor, table, weight, inv_tau):
        left = torch.cat([anchor * inv_tau, anchor.new_full((anchor.shape[0], 1), -inv_tau)], 1)
        right = torch.cat([table, table.new_ones((table.shape[0], 1))], 1)
        expd = (left @ right.T).exp_()
        total = expd.sum(1)
        ctx.save_for_backward(anchor, table, weight, expd, total)
        ctx.inv_tau = inv_tau
        return (weight * (total.log() + inv_tau)).sum()

    @staticmethod
    def backward(ctx, grad):
        anchor, table, weight, expd, total = ctx.saved_tensors
        prob = expd.mul_(((grad * ctx.inv_tau) * weight / total)[:, None])
        grad_anchor = prob @ table if ctx.needs_input_grad[0] else None
        grad_table = prob.T @ anchor if ctx.needs_input_grad[1] else None
        return grad_anchor, grad_table, None, None


def side_loss(anchor_table: torch.Tensor, aux_table: torch.Tensor, anchors: torch.Tensor,
              temperature: float, unique: bool = True) -> torch.Tensor:
    """sum over ``anchors`` (with repeats) of -log softmax_{a'}(cos(Z^K[a], Z^k[a']) / tau)[a].

    ``unique=True`` computes each distinct anchor once, weighted by its count; ``False`` is the
    direct form, one row per anchor."""
    fast = not plain()
    if unique and fast:
        ids, counts = torch.unique(anchors, sorted=True, return_counts=True)
        weight = counts.to(anchor_table.dtype)
    else:
        ids = anchors
        weight = torch.ones(len(ids), dtype=anchor_table.dtype, device=anchor_table.device)
    anchor = F.normalize(rows(anchor_table, ids), dim=1, eps=NORM_EPS)
    aux = F.normalize(aux_table, dim=1, eps=NORM_EPS)
    inv_tau = 1.0 / temperature
    positive = (weight * (anchor * rows(aux, ids)).sum(-1)).sum() * inv_tau
    if fast and inv_tau <= FAST_MAX_INV_TAU:
        normalizer = _WeightedLogSumExp.apply(anchor, aux, weight, inv_tau)
    else:
        normalizer = (weight * torch.logsumexp(anchor @ aux.T * inv_tau, dim=1)).sum()
    return normalizer - positive


def contrastive_loss(reps: BehaviorReps, batch: Batch, temperature: float, weight: float,
                     unique: bool = True, target: int | None = None) -> torch.Tensor | None:
    """gamma * sum_{k<K} (l_U + l_V) / U on ``reps``' per-behavior tables and the batch's target
    pairs; None when the batch has no target pair (nothing to contrast) or there is no auxiliary
    behavior."""
    target = len(reps.users) - 1 if target is None else target
    pairs = batch.pairs.get(target)
    if pairs is None or len(pairs) == 0 or target == 0:
        return None
    n_users = reps.users[target].shape[0]
    total = None
    for k in range(target):
        term = (side_loss(reps.users[target], reps.users[k], pairs.users, temperature, unique)
                + side_loss(reps.items[target], reps.items[k], pairs.pos, temperature, unique))
        total = term if total is None else total + term
    return weight * total / n_users
