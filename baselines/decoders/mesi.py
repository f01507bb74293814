"""``mesi``: CIGF's multi-expert decoder with decoupled inputs (spec §7.6, §8.5), and the gated
slot machinery PME reuses (``baselines.decoders.pme``).

Task k scores a pair (u, v) as

    g = softmax(W_g^T [Z_u^k[u]; Z_v^k[v]] + b_g)            (one gate shared by all tasks)
    y^k(u, v) = mult * sum_j g_j * sum_d Z_u^j[u] * Z_v^j[v]

with the experts ``e^j = Z_u^j[u] * Z_v^j[v]`` in NATURAL order, j = 1..K (slot j is behavior j, the
task's own expert included): expert j reads only behavior j's tables (decoupled inputs). W_g
(2d x K) is Xavier and L2-regularized, b_g zeros and not regularized. Loss
``sum_k lambda_k * 3 * BPR_k`` + ``reg * |W_g|^2`` (CIGF itself: equal weights without the 3, i.e.
lambda_k = 1/3 for every k; see ``baselines.multi.cigf``).

Training gathers every behavior's rows at once from the tables laid side by side ([U, K*d]); full
ranking factorizes the gate's softmax (``GatedSlotsDecoder.block_scores``) into two matrix products
per block of users, so no users x items x K tensor is built.
"""
from __future__ import annotations

import torch
from torch import nn

from baselines.decoders.bilinear import LOSS_WEIGHTS, MULT
from baselines.decoders.shared_bottom import TFMultiTaskDecoder, users_per_block
from bench.models.base import BehaviorReps, rows, xavier_table
from bench.models.registry import register_decoder
from bench.params import DIM, TF_REG

# Smallest softmax denominator the factorized full-ranking form accepts (float32 underflow guard).
UNDERFLOW = 1e-30


class SlotGate(nn.Module):
    """One gate for every task, ``softmax(W_g^T [x; y] + b_g)`` over the slots (the TF code's
    ``gate111``): W_g [2d, slots] Xavier, regularized; b_g zeros, not regularized."""

    def __init__(self, dim: int, n_slots: int, generator: torch.Generator,
                 device: torch.device) -> None:
        super().__init__()
        self.weight = xavier_table(2 * dim, n_slots, generator, device)
        self.bias = nn.Parameter(torch.zeros(n_slots, device=device))

    def pairs(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[n, slots] gate of aligned user and item rows."""
        return torch.softmax(torch.cat([x, y], dim=1) @ self.weight + self.bias, dim=-1)

    def block(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[b, I, slots] gate of every (user row, item row)."""
        d = x.shape[1]
        return torch.softmax((x @ self.weight[:d])[:, None, :]
                             + (y @ self.weight[d:] + self.bias)[None], dim=-1)


class GatedSlotsDecoder(TFMultiTaskDecoder):
    """A shared gate on the task's own tables weighting per-slot dot products.

    Subclasses give the slots of task k twice, with the same meaning: ``slot_rows(k, z)`` from
    gathered rows ``z`` [n, K, d] of the K behavior tables (one side: users or items), for training,
    and ``slot_tables(reps, k)``, the (user table, item table) of every slot on the full tables, for
    full ranking. The gate always reads the task's own rows ``Z^k``."""

    params = (DIM, TF_REG, LOSS_WEIGHTS, MULT)

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        self.gate = SlotGate(self.width, self.n_behaviors, generator, device)

    def slot_rows(self, k: int, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def slot_tables(self, reps: BehaviorReps, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError  # pragma: no cover - interface

    def regularized(self) -> list[torch.Tensor]:
        return [self.gate.weight]

    def pair_tables(self, reps):
        """All behaviors side by side, [U, K*d] and [I, K*d]: one gather serves every slot."""
        return self.cached(reps, "wide", lambda: (torch.cat(list(reps.users), dim=1),
                                                  torch.cat(list(reps.items), dim=1)))

    def experts(self, reps: BehaviorReps, k: int, users: torch.Tensor,
                items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Task k on aligned pairs: the gate [n, slots] and the experts' dot products [n, slots]."""
        table_u, table_v = self.pair_tables(reps)
        return self._gate_and_dots(k, rows(table_u, users), rows(table_v, items))

    def _gate_and_dots(self, k, x, y):
        K = self.n_behaviors
        x = x.reshape(x.shape[0], K, -1)
        y = y.reshape(y.shape[0], K, -1)
        gate = self.gate.pairs(x[:, k], y[:, k])
        dots = (self.slot_rows(k, x) * self.slot_rows(k, y)).sum(-1)
        return gate, dots

    def row_scores(self, k, x, y):
        gate, dots = self._gate_and_dots(k, x, y)
        return (gate * dots).sum(-1)

    def block_scores(self, reps, users):
        """Target scores against every item. The gate's softmax factorizes: with
        ``A_p[u] = exp(a_p[u] - max_p a_p[u])`` (a = x_K W_g[:d]) and ``C_p[v] = exp(c_p[v] - max_p
        c_p[v])`` (c = y_K W_g[d:] + b_g), ``sum_p g_p <x_p, y_p> = [A_p x_p]_p . [C_p y_p]_p /
        (A C^T)``: one matrix product of width slots x d and one of width slots. A block whose
        denominator could underflow (gate logits spread over ~70) is scored directly instead."""
        k = self.target
        slots, item_c, item_y = self.cached(reps, "factorized", lambda: self._item_side(reps))
        d = self.width
        step = users_per_block(2 * self.n_items)
        out = []
        for start in range(0, len(users), step):
            block = users[start:start + step]
            a = rows(reps.users[k], block) @ self.gate.weight[:d]
            user_a = torch.exp(a - a.max(dim=-1, keepdim=True).values)
            x = torch.cat([user_a[:, p:p + 1] * rows(zu, block) for p, (zu, _) in enumerate(slots)],
                          dim=1)
            den = user_a @ item_c.T
            if bool((den < UNDERFLOW).any()):
                out.append(self._block_direct(reps, slots, block))
            else:
                out.append((x @ item_y.T) / den)
        return torch.cat(out, dim=0)

    def _item_side(self, reps):
        k, d = self.target, self.width
        slots = self.slot_tables(reps, k)
        c = reps.items[k] @ self.gate.weight[d:] + self.gate.bias
        item_c = torch.exp(c - c.max(dim=-1, keepdim=True).values)
        item_y = torch.cat([item_c[:, p:p + 1] * zv for p, (_, zv) in enumerate(slots)], dim=1)
        return slots, item_c, item_y

    def _block_direct(self, reps, slots, block):
        """The same scores from the [users, items, slots] gate (small blocks)."""
        k = self.target
        step = users_per_block(self.n_items * len(slots))
        out = []
        for start in range(0, len(block), step):
            part = block[start:start + step]
            gate = self.gate.block(rows(reps.users[k], part), reps.items[k])
            dots = torch.stack([rows(zu, part) @ zv.T for zu, zv in slots], dim=-1)
            out.append((gate * dots).sum(-1))
        return torch.cat(out, dim=0)


@register_decoder("mesi")
class MESIDecoder(GatedSlotsDecoder):
    """MESI (CIGF, spec §7.6): shared gate on [Z_u^k; Z_v^k], raw experts Z_u^j * Z_v^j of every
    behavior j in natural order (own included), tower mult * sum_d."""

    def slot_rows(self, k, z):
        return z

    def slot_tables(self, reps, k):
        return [(reps.users[j], reps.items[j]) for j in range(self.n_behaviors)]
