"""``dot``: single-behavior dot-product decoder with BPR on the target behavior (MF, LightGCN)."""
from __future__ import annotations

import torch

from bench.models.base import Batch, BehaviorReps, Decoder, bpr_softplus, rows
from bench.models.registry import register_decoder
from bench.params import Param


@register_decoder("dot")
class DotDecoder(Decoder):
    """Score e_u . e_v on the target table; loss = mean softplus(neg - pos)
    + reg * 1/2 (|e0_u|^2 + |e0_pos|^2 + |e0_neg|^2) / batch on the batch's ego (layer-0) rows,
    as official LightGCN regularizes. The encoder exposes its ego tables in ``reps.extra``."""

    params = (Param("reg", 1e-4, "weight of the batch L2 on ego embeddings (official LightGCN form)",
                    float, low=0.0, batchable=True),)

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        self.trained_behaviors = [self.target]

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        pairs = batch.pairs.get(self.target)
        if pairs is None:
            return {}
        zu, zv = reps.users[self.target], reps.items[self.target]
        eu = rows(zu, pairs.users)
        pos = (eu * rows(zv, pairs.pos)).sum(-1)
        neg = (eu * rows(zv, pairs.neg)).sum(-1)
        ego_u = reps.extra.get("ego_users", zu)
        ego_v = reps.extra.get("ego_items", zv)
        squares = (rows(ego_u, pairs.users).pow(2).sum(-1) + rows(ego_v, pairs.pos).pow(2).sum(-1)
                   + rows(ego_v, pairs.neg).pow(2).sum(-1))
        l2 = 0.5 * (squares * pairs.weight).sum() / pairs.count().clamp_min(1.0)
        return {"bpr": bpr_softplus(pos, neg, pairs.weight), "l2": self.hp("reg") * l2}

    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        return rows(reps.users[self.target], users) @ reps.items[self.target].T
