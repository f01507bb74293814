"""``pop``: item popularity on the target behavior, the floor every model must beat."""
from __future__ import annotations

import numpy as np
import torch

from bench.models.base import BehaviorReps, Decoder, Encoder
from bench.models.registry import register_decoder, register_encoder, register_model


@register_encoder("none")
class NoEncoder(Encoder):
    """No representations; for decoders that need none."""

    def forward(self) -> BehaviorReps:
        return BehaviorReps(users=[], items=[])


@register_decoder("popularity")
class PopularityDecoder(Decoder):
    """Every user gets the items ordered by their number of training target interactions."""

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        counts = np.asarray(dataset.matrices()[-1].sum(axis=0)).ravel().astype(np.float32)
        self.register_buffer("counts", torch.from_numpy(counts).to(device))

    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(len(users), -1).clone()


register_model("pop", "none", "popularity", "item popularity on the target behavior (no training)",
               defaults={"sampler": "none", "epochs": 0})
