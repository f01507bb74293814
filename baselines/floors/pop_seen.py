"""``pop-seen``: a floor with no training: the user's own items under auxiliary behaviors first.

Each user's items fall into tiers: the items the user has under the first listed behavior, then
those under the second (not already in a tier), and so on, then every other item. Tiers are ranked
in that order; within a tier items go by their number of training target interactions (the ``pop``
floor), ties by ascending item id (the evaluator's rule). Training target items are masked by the
evaluator as for every model.

Why it is here: on Taobao 81.9% of the test buys are items the user viewed (57 views per user on
average), so "what you viewed, most bought first" is a strong ranking no paper in this family
reports (HR@10 0.2728 with views alone, above every learned model of Table 2). ``bench data stats``
prints that share for any dataset.

``seen_behaviors`` names the tiers, first tier first, separated by commas; ``+`` joins behaviors
into one tier: ``pv`` (views only), ``cart,pv`` (carts, then the other views), ``pv+cart`` (items
the user viewed or carted, one tier). ``auxiliary`` (default) is one tier of every behavior but the
target: the user's items under any auxiliary behavior first, as issue 15 defines this floor.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

import baselines.floors.pop  # noqa: F401  (the encoder "none")
from bench.errors import ConfigError
from bench.models.base import BehaviorReps, Decoder
from bench.models.registry import register_decoder, register_model
from bench.params import Param
from baselines.floors.user_rows import UserRows

ALL_AUXILIARY = "auxiliary"


def seen_tiers(behaviors: tuple[str, ...], text: str) -> list[list[int]]:
    """Behavior indices of each tier, first tier first, from ``seen_behaviors``'s text."""
    if text.strip() == ALL_AUXILIARY:
        return [list(range(len(behaviors) - 1))]
    where = f"parameter 'seen_behaviors' ('{text}')"
    tiers: list[list[int]] = []
    listed: set[int] = set()
    for part in text.split(","):
        tier = []
        for name in (n.strip() for n in part.split("+")):
            if not name:
                continue
            if name not in behaviors:
                raise ConfigError(f"{where}: unknown behavior '{name}'; this dataset's behaviors "
                                  f"are {', '.join(behaviors)}")
            k = behaviors.index(name)
            if k == len(behaviors) - 1:
                raise ConfigError(f"{where}: '{name}' is the target behavior, whose training items "
                                  "are excluded from the ranking; name auxiliary behaviors only")
            if k in listed:
                raise ConfigError(f"{where}: '{name}' is listed twice; name each behavior once")
            listed.add(k)
            tier.append(k)
        if tier:
            tiers.append(tier)
    if not tiers:
        raise ConfigError(f"{where} names no behavior; give auxiliary behaviors such as "
                          f"--set seen_behaviors={behaviors[0]}, or use the model 'pop'")
    return tiers


def tier_matrix(matrices: list[sp.csr_matrix], tiers: list[list[int]]) -> sp.csr_matrix:
    """User x item tier values: len(tiers) for the first tier down to 1 for the last; an item in
    several tiers takes its best; 0 (absent) for unseen items."""
    out = sp.csr_matrix(matrices[0].shape, dtype=np.float32)
    for rank, tier in enumerate(tiers):
        for k in tier:
            level = sp.csr_matrix(matrices[k], dtype=np.float32, copy=True)
            level.data[:] = len(tiers) - rank
            out = out.maximum(level)
    return out.tocsr()


@register_decoder("pop-seen")
class PopSeenDecoder(Decoder):
    """Tier of the user's item (by behavior), then target popularity; no parameters to learn."""

    params = (Param("seen_behaviors", ALL_AUXILIARY, "pop-seen: behaviors whose items a user sees "
                    "ranked first: tiers first to last, separated by ',', behaviors of one tier joined "
                    "by '+' (e.g. 'pv', 'cart,pv', 'pv+cart'); 'auxiliary' = one tier of all but "
                    "the target", str),)

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        matrices = dataset.matrices()
        self.tiers = seen_tiers(dataset.behaviors, cfg["seen_behaviors"])
        counts = np.asarray(matrices[-1].sum(axis=0)).ravel().astype(np.float32)
        self.register_buffer("popularity", torch.from_numpy(counts).to(device), persistent=False)
        # one tier step outweighs any popularity difference
        self.tier_step = float(counts.max()) + 1.0
        self.seen = UserRows(tier_matrix(matrices, self.tiers), device)

    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        return self.seen.dense(users) * self.tier_step + self.popularity.unsqueeze(0)


register_model("pop-seen", "none", "pop-seen",
               "floor: the user's items under auxiliary behaviors first (by tier), each tier by "
               "target popularity (no training)",
               defaults={"sampler": "none", "epochs": 0})
