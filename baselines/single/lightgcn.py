"""``lightgcn`` (target behavior graph) and ``lightgcn-m`` (merged behavior graph), spec §7.2."""
from __future__ import annotations

import torch

from bench.data.graphs import propagate, torch_graph
from bench.models.base import BehaviorReps, Encoder, normal_table
from bench.models.registry import register_encoder, register_model
from bench.params import DIM, Param

GRAPHS = ("target", "union")


@register_encoder("lightgcn")
class LightGCNEncoder(Encoder):
    """E^{l+1} = D^-1/2 A D^-1/2 E^l without self-loops; output = mean of layers 0..L.
    ``graph=target`` uses the target behavior only, ``graph=union`` the binary union of all
    behaviors (LightGCN_M, [I] spec §7.2). The one table is repeated for every behavior."""

    params = (DIM,
              Param("layers", 3, "LightGCN propagation layers", int, low=0),
              Param("graph", "target", "which interactions form the graph", str, choices=GRAPHS),
              Param("init_std", 0.1, "std of the normal initialization", float, low=0.0,
                    low_open=True))

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        view = "behavior" if cfg["graph"] == "target" else "union"
        self.graph = torch_graph(dataset, view, "symmetric", k=self.target if view == "behavior"
                                 else None, device=device)
        self.users = normal_table(self.n_users, cfg["dim"], cfg["init_std"], generator, device)
        self.items = normal_table(self.n_items, cfg["dim"], cfg["init_std"], generator, device)

    def forward(self) -> BehaviorReps:
        layer = torch.cat([self.users, self.items], dim=0)
        total = layer
        for _ in range(self.cfg["layers"]):
            layer = propagate(self.graph, layer)
            total = total + layer
        out = total / (self.cfg["layers"] + 1)
        zu, zv = out[:self.n_users], out[self.n_users:]
        k = self.n_behaviors
        return BehaviorReps([zu] * k, [zv] * k, {"ego_users": self.users, "ego_items": self.items})


LIGHTGCN_TRAINING = {"sampler": "bpr", "batch_size": 2048, "lr": 1e-3, "lr_decay": 1.0,
                     "reg": 1e-4, "epochs": 200, "eval_schedule": "every", "eval_every": 10}

register_model("lightgcn", "lightgcn", "dot", "LightGCN on the target behavior (official settings)",
               defaults=LIGHTGCN_TRAINING)
register_model("lightgcn-m", "lightgcn", "dot",
               "LightGCN on the merged (union) behavior graph, BPR on the target behavior",
               defaults={**LIGHTGCN_TRAINING, "graph": "union"}, inferred=("graph",))
