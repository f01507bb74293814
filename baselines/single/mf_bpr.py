"""``mf-bpr``: matrix factorization with BPR on the target behavior (model-specs §7.1)."""
from __future__ import annotations

from bench.models.base import BehaviorReps, Encoder, xavier_table
from bench.models.registry import register_encoder, register_model
from bench.params import DIM


@register_encoder("embedding")
class EmbeddingEncoder(Encoder):
    """Plain Xavier-uniform user and item tables, the same for every behavior."""

    params = (DIM,)

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        self.users = xavier_table(self.n_users, cfg["dim"], generator, device)
        self.items = xavier_table(self.n_items, cfg["dim"], generator, device)

    def forward(self) -> BehaviorReps:
        k = self.n_behaviors
        return BehaviorReps([self.users] * k, [self.items] * k,
                            {"ego_users": self.users, "ego_items": self.items})


# [I] spec §7.1: trained in the TF harness on the target behavior (40 pairs per user, lr decay);
# the L2 grid of MBGCN's MF search is {1e-2..1e-6}; 1e-4 is its middle.
register_model("mf-bpr", "embedding", "dot",
               "matrix factorization with BPR on the target behavior, TF-family harness",
               defaults={"reg": 1e-4, "sampler": "multi-behavior", "epochs": 100,
                         "eval_schedule": "every", "eval_every": 5},
               inferred=("reg", "epochs"))
