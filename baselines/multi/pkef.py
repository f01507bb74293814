"""``pkef``: the PKEF encoder, parallel + cascade branches (spec §7.7; reference
``MC-CV/PKEF/PKEF_final.py``, TF1), and the model ``pkef`` = this encoder + PME (``baselines.decoders.pme``).

Graphs ``A_k = left(A(B_k))`` (single behavior); E0 = [users; items], Xavier. For each behavior k
with L_k = ``pkef_layers[k]``:

- parallel branch (one TF-family LightGCN per behavior, from E0):
  ``P^{k,0} = E0``, ``P^{k,l+1} = A_k P^{k,l} + P^{k,l}``, ``Y^k = sum_l P^{k,l}``;
- cascade branch, ``X_1 = E0``:
  ``H^{k,0} = X_k``, ``S = A_k H^{k,l}``,
  ``H^{k,l+1} = S + H^{k,l} + w * proj_S(P^{k,l+1})`` with w = ``proj_weight`` = 0.3 and the row-wise
  ``proj_a(b) = (<b, a> / (|a|^2 + 1e-12)) a`` (the parallel layer projected onto the cascade's
  propagated direction), ``Z^k = sum_l H^{k,l}``, ``X_{k+1} = H^{k,L_k} + X_k``.

The decoder gets Z^k (``reps.users[k]``, ``reps.items[k]``); Y^k is in ``reps.extra``
(``parallel_users``, ``parallel_items``). The encoder adds two loss parts:

- ``l2``: ``reg * (|E0_u|^2 + |E0_i|^2)`` every step;
- ``parallel``: PKEF's parallel-branch BPR, ``sum_k lambda_k * 3 * BPR(mult * <Y_u^k[u], Y_v^k[v]>)``
  on the same pairs as the main scores (``parallel_loss=false`` drops it). It trains the encoder,
  so it stays under any decoder (PKEF+DFME keeps it, spec §5.4 [I]).

Model ``pkef``: PME with its uni losses, the harness of spec §2 with PKEF's settings (10,000 random
users per epoch, 100 epochs, lr decay every 39 steps, test every 3 epochs), layers [4, 1, 1] and
lambda = [0, 4/6, 2/6] (Beibei, Taobao), [4, 1, 1, 1] and [0, 4/6, 0, 2/6] with the cart pairs
excluded from the uni losses (Tmall), spec §6.
"""
from __future__ import annotations

import torch

from baselines.decoders.bilinear import LOSS_WEIGHTS, MULT, weighted_task_bpr
from baselines.decoders.pme import UNI_SAMPLER, PMEDecoder, project  # noqa: F401  (registers "pme")
from baselines.decoders.shared_bottom import rows_split
from bench.data.graphs import propagate, torch_graph
from bench.errors import ConfigError
from bench.models.base import BehaviorReps, Encoder, tf_l2, xavier_table
from bench.models.registry import register_encoder, register_model
from bench.params import DIM, TF_REG, Param


@register_encoder("pkef")
class PKEFEncoder(Encoder):
    """PKEF's parallel and cascade branches (see the module docstring)."""

    params = (DIM, TF_REG, LOSS_WEIGHTS, MULT,
              Param("pkef_layers", [4, 1, 1], "PKEF: propagation layers per behavior, both "
                    "branches (gnn_layer)", list, low=0, length="behaviors"),
              Param("proj_weight", 0.3, "PKEF: weight of the parallel layer's projection added "
                    "to each cascade layer", float, low=0.0),
              Param("parallel_loss", True, "PKEF: add the parallel branch's BPR loss (weighted "
                    "lambda_k * 3, on the main pairs)", bool))

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        self.layers = []
        for value in cfg["pkef_layers"]:
            if float(value) != int(value):
                raise ConfigError(f"parameter 'pkef_layers' expects integers, got "
                                  f"{cfg['pkef_layers']!r}")
            self.layers.append(int(value))
        if len(self.layers) != self.n_behaviors:
            raise ConfigError(f"parameter 'pkef_layers' needs one entry per behavior "
                              f"({self.n_behaviors}), got {cfg['pkef_layers']!r}")
        self.weights = [float(w) for w in cfg["loss_weights"]]
        self.graphs = [torch_graph(dataset, "behavior", "left", k=k, device=device)
                       for k in range(self.n_behaviors)]
        self.users = xavier_table(self.n_users, cfg["dim"], generator, device)
        self.items = xavier_table(self.n_items, cfg["dim"], generator, device)

    def branches(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(Z^k, Y^k) per behavior as N x d tables: cascade and parallel outputs."""
        e0 = torch.cat([self.users, self.items], dim=0)
        d, w = e0.shape[1], self.cfg["proj_weight"]
        x = e0
        cascade, parallel = [], []
        for k in range(self.n_behaviors):
            h, p = x, e0
            total_h, total_p = h, p
            for _ in range(self.layers[k]):
                # both branches propagate on A_k: one product, 2d columns wide
                both = propagate(self.graphs[k], torch.cat([h, p], dim=1))
                s = both[:, :d]
                p = both[:, d:] + p
                h = (s + h + project(p, s, w)) if w else (s + h)
                total_h = total_h + h
                total_p = total_p + p
            cascade.append(total_h)
            parallel.append(total_p)
            x = h + x
        return cascade, parallel

    def forward(self) -> BehaviorReps:
        cascade, parallel = self.branches()
        n_u = self.n_users
        return BehaviorReps([t[:n_u] for t in cascade], [t[n_u:] for t in cascade],
                            {"tables": cascade,
                             "parallel_users": [t[:n_u] for t in parallel],
                             "parallel_items": [t[n_u:] for t in parallel],
                             "ego_users": self.users, "ego_items": self.items})

    def losses(self, reps: BehaviorReps, batch) -> dict[str, torch.Tensor]:
        parts = {"l2": tf_l2([self.users, self.items], self.hp("reg"))}
        if not self.cfg["parallel_loss"]:
            return parts
        tasks = [(k, batch.pairs[k]) for k, w in enumerate(self.weights)
                 if w != 0 and k in batch.pairs]
        if not tasks:
            return parts
        # the trained behaviors' Y^k side by side: one gather per side for every task
        ks = [k for k, _ in tasks]
        wide_u = torch.cat([reps.extra["parallel_users"][k] for k in ks], dim=1)
        wide_v = torch.cat([reps.extra["parallel_items"][k] for k in ks], dim=1)
        xs = rows_split(wide_u, [p.users for _, p in tasks])
        ys = rows_split(wide_v, [torch.cat([p.pos, p.neg]) for _, p in tasks])
        d = self.cfg["dim"]
        scores = {}
        for slot, ((k, pairs), x, y) in enumerate(zip(tasks, xs, ys)):
            cols = slice(slot * d, (slot + 1) * d)
            s = self.cfg["mult"] * (torch.cat([x[:, cols], x[:, cols]]) * y[:, cols]).sum(-1)
            scores[k] = (s[:len(pairs)], s[len(pairs):])
        parts["parallel"] = weighted_task_bpr(self.weights, self.hp("loss_weights"),
                                              lambda k, p: scores[k], batch)
        return parts


# Spec §2 / §6 / §7.7: PKEF's harness and defaults.
PKEF_TRAINING = {"sampler": UNI_SAMPLER, "users_per_epoch": 10000, "epochs": 100,
                 "batch_size": 256, "n_pairs": 40, "lr": 1e-3, "lr_decay": 0.96, "decay_steps": 39,
                 "eval_schedule": "every", "eval_every": 3}

register_model(
    "pkef", "pkef", "pme",
    "PKEF: parallel + cascade branches (0.3 projection) + PME with 'k but not j' losses and the "
    "parallel-branch BPR",
    defaults={"dim": 64, "reg": 1e-2, "mult": 300.0, "loss_weights": [0.0, 4 / 6, 2 / 6],
              "pkef_layers": [4, 1, 1], "proj_weight": 0.3, "pme_scale": 0.01, "uni_weight": 1.0,
              "parallel_loss": True, **PKEF_TRAINING},
    dataset_defaults={"tmall": {"pkef_layers": [4, 1, 1, 1], "loss_weights": [0.0, 4 / 6, 0.0, 2 / 6],
                                "uni_exclude": [2]}})
