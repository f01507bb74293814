"""``mmoe``: Multi-gate Mixture-of-Experts on the shared input (spec §8.2), and the gated-experts
machinery PLE reuses (``baselines.decoders.ple``).

On the shared input ``q = [m_u; m_v]`` (2d wide, see ``baselines.decoders.shared_bottom``):

- experts ``x_i = LeakyReLU_{0.1}(W_i^T q + b_i)``, 2d wide (the TF code's "latdim" = 2d),
  i = 1..``mmoe_experts`` (3, the code's ``num_exps``), shared by every task;
- a gate per task ``pi^k = softmax(V_k^T q + c_k)`` over the experts;
- a linear tower per task ``y^k = mult * (t_k^T sum_i pi^k_i x_i + t0_k)``.

Every W, V and t is Xavier and L2-regularized; the biases are zeros and not regularized. Loss:
``sum_k lambda_k * 3 * BPR_k`` + L2 (no contrastive loss).

Full ranking: the experts' pre-activations and the gate logits split into a user part and an item
part (``q W = m_u W[:d] + m_v W[d:]``), so a block of users against every item costs one
users x items x 2d tensor per expert, never a concatenated input per pair.
"""
from __future__ import annotations

import torch
from torch import nn

from baselines.decoders.shared_bottom import Dense, SharedInputDecoder, leaky_relu, users_per_block
from bench.models.base import BehaviorReps, rows
from bench.models.registry import register_decoder
from bench.params import Param


class GatedExpertsDecoder(SharedInputDecoder):
    """Experts on the shared input, a softmax gate and a linear tower per task. Subclasses set
    ``self.experts`` (a ModuleList of 2d -> 2d ``Dense``) and ``self.task_experts[k]`` (the indices
    of task k's experts, in its gate's order) before calling ``build_tasks``."""

    experts: nn.ModuleList
    task_experts: list[list[int]]

    def build_tasks(self, generator: torch.Generator) -> None:
        q_width = 2 * self.width
        self.gates = nn.ModuleList([Dense(q_width, len(self.task_experts[k]), generator, self.device)
                                    for k in range(self.n_behaviors)])
        self.towers = nn.ModuleList([Dense(q_width, 1, generator, self.device)
                                     for _ in range(self.n_behaviors)])

    def regularized(self) -> list[torch.Tensor]:
        return ([e.weight for e in self.experts] + [g.weight for g in self.gates]
                + [t.weight for t in self.towers])

    # ---- pairs (training) ----------------------------------------------------------------------
    def gate_weights(self, q: torch.Tensor, k: int) -> torch.Tensor:
        """pi^k for rows of q: [n, number of task k's experts], each row summing to one."""
        return torch.softmax(self.gates[k](q), dim=-1)

    def expert_outputs(self, q: torch.Tensor, k: int) -> torch.Tensor:
        """Task k's expert outputs for rows of q: [n, experts, 2d]."""
        return torch.stack([leaky_relu(self.experts[i](q)) for i in self.task_experts[k]], dim=1)

    def row_scores(self, k: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        q = torch.cat([x, y], dim=1)
        mixed = (self.gate_weights(q, k).unsqueeze(-1) * self.expert_outputs(q, k)).sum(1)
        return self.towers[k](mixed).squeeze(1)

    # ---- blocks (full ranking) -----------------------------------------------------------------
    def _item_parts(self, reps: BehaviorReps):
        k = self.target
        m_u, m_v = self.merged(reps)
        experts = [self.experts[i].right(m_v) for i in self.task_experts[k]]
        gate_v = self.gates[k].right(m_v)
        return m_u, experts, gate_v

    def block_scores(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        k = self.target
        m_u, expert_v, gate_v = self.cached(reps, "item-parts", lambda: self._item_parts(reps))
        tower = self.towers[k]
        step = users_per_block(self.n_items * 2 * self.width)
        out = []
        for start in range(0, len(users), step):
            x_u = rows(m_u, users[start:start + step])
            gate = torch.softmax(self.gates[k].left(x_u)[:, None, :] + gate_v[None], dim=-1)
            total = tower.bias.expand(len(x_u), self.n_items).clone()
            for slot, i in enumerate(self.task_experts[k]):
                pre = self.experts[i].left(x_u)[:, None, :] + expert_v[slot][None]
                total += gate[..., slot] * (leaky_relu(pre) @ tower.weight).squeeze(-1)
            out.append(total)
        return torch.cat(out, dim=0)


@register_decoder("mmoe")
class MMOEDecoder(GatedExpertsDecoder):
    """MMOE (spec §8.2): ``mmoe_experts`` experts shared by all tasks, one gate and one linear tower
    per task, on the shared input [m_u; m_v]."""

    params = SharedInputDecoder.params + (
        Param("mmoe_experts", 3, "MMOE: experts shared by all tasks (the TF code's num_exps)", int,
              low=1),)

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        q_width = 2 * self.width
        self.experts = nn.ModuleList([Dense(q_width, q_width, generator, device)
                                      for _ in range(cfg["mmoe_experts"])])
        self.task_experts = [list(range(cfg["mmoe_experts"]))] * self.n_behaviors
        self.build_tasks(generator)
