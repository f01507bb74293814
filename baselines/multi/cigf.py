"""``cigf``: the CIGF encoder (spec §7.6; reference ``MC-CV/CIGF``, TF1, ``multi_graph = True``,
encoder lightgcn) and the model ``cigf`` = this encoder + the MESI decoder (``baselines.decoders.mesi``).

Graphs ``A_k = left(A(B_k))`` (single behavior). For every behavior b, with L = ``cigf_layers``:

    s_1 = A_b E0,  h_1 = E0 + s_1
    for l = 1..L-1:
        a^{(b,l)} = LeakyReLU_{0.1}(E0 W_{b,l} + c_{b,l})       [N x K], node-wise, unnormalized,
                                                                 always computed from E0
        s_{l+1} = sum_k a^{(b,l)}_{:,k} * (A_k s_l)             (propagates s_l, NOT h_l)
        h_{l+1} = h_l + s_{l+1}
    Z^b = sum_{l=0..L} h_l,  h_0 = E0

E0 (users then items) is Xavier; W_{b,l} (d x K) Xavier, c_{b,l} zeros. L2: ``reg * (|E0_u|^2 +
|E0_i|^2 + sum |W_{b,l}|^2)`` every step (loss part ``l2``; the decoder adds its gate's W).

Model ``cigf``: the TF harness of spec §2 with PKEF/CIGF's settings (10,000 random users per epoch,
100 epochs, lr decay every 39 steps, test every 3 epochs), equal task weights without the ×3
(``loss_weights`` 1/3 each: lambda_k * 3 = 1), d = 64 (the code's d = 16, spec §7.6),
layers 2 (Beibei; Taobao [I]: no published value) and 4 (Tmall, CIGF's README).
"""
from __future__ import annotations

import torch
from torch import nn

from baselines.decoders.mesi import MESIDecoder  # noqa: F401  (registers the "mesi" decoder)
from baselines.decoders.shared_bottom import leaky_relu
from bench.data.graphs import propagate, torch_graph
from bench.models.base import BehaviorReps, Encoder, tf_l2, xavier_table
from bench.models.registry import register_encoder, register_model
from bench.params import DIM, TF_REG, Param


@register_encoder("cigf")
class CIGFEncoder(Encoder):
    """CIGF's multi-graph encoder with node-wise behavior attention (see the module docstring)."""

    params = (DIM, TF_REG,
              Param("cigf_layers", 2, "CIGF: propagation layers L of every behavior's encoder "
                    "(gnn_layer)", int, low=1))

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        d, K, L = cfg["dim"], self.n_behaviors, cfg["cigf_layers"]
        self.graphs = [torch_graph(dataset, "behavior", "left", k=k, device=device)
                       for k in range(K)]
        self.users = xavier_table(self.n_users, d, generator, device)
        self.items = xavier_table(self.n_items, d, generator, device)
        # attention of behavior b at layer l (1..L-1): W [d, K], c [K]; flat index b * (L-1) + l-1
        self.att_weights = nn.ParameterList(
            [xavier_table(d, K, generator, device) for _ in range(K * (L - 1))])
        self.att_biases = nn.ParameterList(
            [nn.Parameter(torch.zeros(K, device=device)) for _ in range(K * (L - 1))])

    def attention(self, e0: torch.Tensor, b: int, layer: int) -> torch.Tensor:
        """a^{(b,l)} = LeakyReLU(E0 W_{b,l} + c_{b,l}): [N, K] for l = ``layer`` in 1..L-1."""
        i = b * (self.cfg["cigf_layers"] - 1) + layer - 1
        return leaky_relu(e0 @ self.att_weights[i] + self.att_biases[i])

    def propagations(self) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """E0 and, per behavior b, its propagation results [s_1, ..., s_L] (each N x d)."""
        e0 = torch.cat([self.users, self.items], dim=0)
        K, L, d = self.n_behaviors, self.cfg["cigf_layers"], e0.shape[1]
        s = [[propagate(self.graphs[b], e0)] for b in range(K)]
        for layer in range(1, L):
            # A_k applied to every behavior's s_l at once: one product per graph, K*d columns wide
            stacked = torch.cat([s[b][-1] for b in range(K)], dim=1)
            spread = [propagate(self.graphs[k], stacked) for k in range(K)]
            for b in range(K):
                att = self.attention(e0, b, layer)
                s[b].append(sum(att[:, k:k + 1] * spread[k][:, b * d:(b + 1) * d]
                                for k in range(K)))
        return e0, s

    def forward(self) -> BehaviorReps:
        e0, s = self.propagations()
        tables = []
        for b in range(self.n_behaviors):
            h = total = e0
            for s_l in s[b]:
                h = h + s_l
                total = total + h
            tables.append(total)
        n_u = self.n_users
        return BehaviorReps([t[:n_u] for t in tables], [t[n_u:] for t in tables],
                            {"tables": tables, "ego_users": self.users, "ego_items": self.items})

    def losses(self, reps: BehaviorReps, batch) -> dict[str, torch.Tensor]:
        return {"l2": tf_l2([self.users, self.items, *self.att_weights], self.hp("reg"))}


# Spec §2 / §6 / §7.6: the PKEF/CIGF harness. lambda_k = 1/3 makes lambda_k * 3 = 1 exactly, i.e.
# CIGF's plain sum of the K task BPR means (for any K).
CIGF_TRAINING = {"sampler": "multi-behavior", "users_per_epoch": 10000, "epochs": 100,
                 "batch_size": 256, "n_pairs": 40, "lr": 1e-3, "lr_decay": 0.96, "decay_steps": 39,
                 "eval_schedule": "every", "eval_every": 3}

register_model(
    "cigf", "cigf", "mesi",
    "CIGF: multi-graph encoder with node-wise behavior attention + MESI (shared gate, natural-order "
    "experts); equal task weights without x3; d=64 (code: 16)",
    defaults={"dim": 64, "reg": 1e-2, "mult": 300.0, "loss_weights": [1 / 3] * 3,
              "cigf_layers": 2, **CIGF_TRAINING},
    dataset_defaults={"beibei": {"cigf_layers": 2}, "taobao": {"cigf_layers": 2},
                      "tmall": {"cigf_layers": 4, "loss_weights": [1 / 3] * 4}},
    inferred=("cigf_layers", "dim"))
