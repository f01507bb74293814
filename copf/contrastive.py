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

Saving: an anchor that repeats c times contributes c times the same term, so each distinct anchor
is one row weighted by its count: the same loss with the same gradients at the cost of the distinct
anchors instead of one row per pair. On the user side the sampler groups the pairs by the batch's
users (``Pairs.owner``): each batch user is one row weighted by its number of pairs. On the item
side the distinct positive items go into a fixed number of rows (``ItemAnchors``): before each
epoch the decoder draws the epoch's batches once more (the draws are hashes, so they are the very
batches training will see) and sizes the rows for the step with the most distinct items; a step
then sorts its positives and packs them, with no host synchronization. Without that plan (a lone
loss computation) item anchors are one row per pair slot, padding weighing 0.

gamma and tau are tensors (``Component.hp``), so members of one batch may differ in them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.kernels import plain
from bench.models.base import Batch, BehaviorReps, rows

NORM_EPS = 1e-12


# Above this 1/tau the shifted exponentials of the fast path could underflow; use logsumexp there.
FAST_MAX_INV_TAU = 40.0


def fast_path_allowed(temperature: float) -> bool:
    """Whether the fused log-sum-exp is exact at this temperature (no underflow)."""
    return 1.0 / temperature <= FAST_MAX_INV_TAU


class _WeightedLogSumExp(torch.autograd.Function):
    """sum_i w_i log sum_j exp(<a_i, t_j> / tau) for rows of norm <= 1. Since |<a, t>| <= 1 the
    logits are shifted by the constant 1/tau instead of their row maximum, and the shift rides in
    the GEMM as one extra column ([a / tau, -1/tau] . [t, 1]); the exponentials are taken in place
    and reused by the backward (which may therefore run once: a second backward raises).

    Tensors may carry leading batch axes (anchor [..., n, d], table [..., m, d], weight [..., n],
    inv_tau [...]): the vmap rule moves a seed batch's axis there."""

    @staticmethod
    def forward(anchor, table, weight, inv_tau):
        scale = inv_tau[..., None, None]
        left = torch.cat([anchor * scale, (-scale).expand(*anchor.shape[:-1], 1)], -1)
        right = torch.cat([table, table.new_ones((*table.shape[:-1], 1))], -1)
        expd = (left @ right.transpose(-1, -2)).exp_()
        total = expd.sum(-1)
        value = (weight * (total.log() + inv_tau[..., None])).sum(-1)
        return value, expd, total

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        anchor, table, weight, inv_tau = inputs
        _, expd, total = output
        ctx.save_for_backward(anchor, table, weight, inv_tau, expd, total)
        ctx.mark_non_differentiable(expd, total)
        # no zero gradients built for the non-differentiable outputs (users x items each step)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad, _expd_grad, _total_grad):
        if grad is None:
            return None, None, None, None
        anchor, table, weight, inv_tau, expd, total = ctx.saved_tensors
        factor = (grad * inv_tau)[..., None] * weight / total
        prob = expd.mul_(factor[..., None])
        grad_anchor = prob @ table if ctx.needs_input_grad[0] else None
        grad_table = prob.transpose(-1, -2) @ anchor if ctx.needs_input_grad[1] else None
        return grad_anchor, grad_table, None, None

    @staticmethod
    def vmap(info, in_dims, anchor, table, weight, inv_tau):
        size = info.batch_size

        def front(x, dim):
            if dim is None:
                return x.expand(size, *x.shape)
            return x.movedim(dim, 0)
        args = [front(x, d).contiguous() for x, d in zip((anchor, table, weight, inv_tau), in_dims)]
        return _WeightedLogSumExp.apply(*args), (0, 0, 0)


def side_loss(anchor_table: torch.Tensor, aux_table: torch.Tensor, anchors: torch.Tensor,
              weight: torch.Tensor, inv_tau: torch.Tensor, fast: bool = True) -> torch.Tensor:
    """sum over ``anchors`` of weight * -log softmax_{a'}(cos(Z^K[a], Z^k[a']) / tau)[a]: each
    anchor row counts ``weight`` times (0 for padding)."""
    anchor = F.normalize(rows(anchor_table, anchors), dim=1, eps=NORM_EPS)
    aux = F.normalize(aux_table, dim=1, eps=NORM_EPS)
    positive = (weight * (anchor * rows(aux, anchors)).sum(-1)).sum() * inv_tau
    if fast and not plain():
        normalizer = _WeightedLogSumExp.apply(anchor, aux, weight, inv_tau)[0]
    else:
        normalizer = (weight * torch.logsumexp(anchor @ aux.T * inv_tau, dim=1)).sum()
    return normalizer - positive


def _sorted_items(items: torch.Tensor, weight: torch.Tensor, n_items: int):
    """The real slots' items sorted (padding sorts last as ``n_items``), their weights in that order,
    and where a new distinct item starts."""
    key = torch.where(weight > 0, items, torch.full_like(items, n_items))
    ordered, order = torch.sort(key, dim=-1)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    return ordered, weight.gather(-1, order), starts & (ordered < n_items)


def distinct_items(items: torch.Tensor, weight: torch.Tensor, n_items: int,
                   rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct items among the real slots, packed into ``rows`` rows (enough for them), and
    each one's total slot weight: (ids [rows], counts [rows]); unused rows have count 0."""
    ordered, ordered_weight, starts = _sorted_items(items, weight, n_items)
    group = starts.cumsum(-1) - 1
    real = ordered < n_items
    # rows past the distinct items, and padding slots, land in a spill row that is dropped
    spill = torch.full_like(group, rows)
    into = torch.where(real, group, spill)
    counts = torch.zeros(rows + 1, dtype=weight.dtype, device=weight.device)
    counts = counts.index_add(0, into, ordered_weight)[:rows]
    ids = torch.zeros(rows + 1, dtype=items.dtype, device=items.device)
    ids = ids.scatter(0, torch.where(starts, group, spill), ordered.clamp(max=n_items - 1))
    return ids[:rows], counts


class ItemAnchors:
    """How many rows the item side's distinct anchors need: planned before each epoch from the
    epoch's own batches (see the module docstring); the count only grows, like the sampler's
    slots, so a captured CUDA graph is rarely rebuilt."""

    def __init__(self, target: int, n_items: int) -> None:
        self.target, self.n_items = target, n_items
        self.rows: int | None = None

    def plan_epoch(self, sampler, epoch: int) -> bool:
        from bench.train.samplers import grown
        steps = sampler.steps_per_epoch
        device = sampler.keys.device
        needs = []
        for step in range(steps):
            batch = sampler.batch(torch.tensor(step, device=device),
                                  torch.tensor(epoch * steps + step, device=device))
            pairs = batch.pairs[self.target]
            starts = _sorted_items(pairs.pos, pairs.weight, self.n_items)[2]
            needs.append(starts.sum(-1).amax())
        need = int(torch.stack(needs).amax()) if needs else 0
        rows = grown(self.rows or 0, need)
        changed = rows != self.rows
        self.rows = rows
        return changed

    def state(self) -> dict:
        return {"rows": self.rows}

    def restore(self, state: dict) -> None:
        """A checkpoint's row count: a resumed run keeps the shapes it had."""
        self.rows = state.get("rows")


def contrastive_loss(reps: BehaviorReps, batch: Batch, temperature: torch.Tensor,
                     weight: torch.Tensor, fast: bool = True, target: int | None = None,
                     item_rows: int | None = None) -> torch.Tensor | None:
    """gamma * sum_{k<K} (l_U + l_V) / U on ``reps``' per-behavior tables and the batch's target
    pairs; None when the batch has no target pairs to contrast or there is no auxiliary behavior.
    ``fast`` allows the fused log-sum-exp (see ``fast_path_allowed``); ``item_rows`` (from
    ``ItemAnchors``) packs the distinct positive items into that many rows."""
    target = len(reps.users) - 1 if target is None else target
    pairs = batch.pairs.get(target)
    if pairs is None or target == 0:
        return None
    n_users = reps.users[target].shape[0]
    if pairs.owner is not None and not plain():
        user_ids = batch.users
        user_weight = torch.zeros(user_ids.shape, dtype=pairs.weight.dtype,
                                  device=pairs.weight.device).index_add(0, pairs.owner, pairs.weight)
    else:
        user_ids, user_weight = pairs.users, pairs.weight
    if item_rows is not None and not plain():
        item_ids, item_weight = distinct_items(pairs.pos, pairs.weight,
                                               reps.items[target].shape[0], item_rows)
    else:
        item_ids, item_weight = pairs.pos, pairs.weight
    inv_tau = 1.0 / temperature
    total = None
    for k in range(target):
        term = (side_loss(reps.users[target], reps.users[k], user_ids, user_weight, inv_tau, fast)
                + side_loss(reps.items[target], reps.items[k], item_ids, item_weight, inv_tau,
                            fast))
        total = term if total is None else total + term
    return weight * total / n_users
