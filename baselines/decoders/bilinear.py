"""``bilinear``: the GHCF-style multi-task predictor on decoupled per-behavior inputs (spec §8.4).

Also the home of the parameters every TF-family multi-task decoder shares (task weights, ``mult``,
the contrastive switches), so that decoders composed with any encoder agree on their meaning.
"""
from __future__ import annotations

import torch

from bench.models.base import Batch, BehaviorReps, Decoder, bpr_softplus, rows, xavier_table
from bench.models.registry import register_decoder
from bench.params import DIM, Param

# ---- parameters shared by the TF-family multi-task decoders (DFME, Bilinear, SB/MMOE/PLE...) ---
LOSS_WEIGHTS = Param("loss_weights", [1 / 3, 1 / 3, 1 / 3],
                     "task weights lambda_k, one per behavior: loss = sum_k lambda_k * 3 * BPR_k "
                     "(a task with weight 0 has no BPR term)", list, low=0.0, length="behaviors",
                     batchable=True)
MULT = Param("mult", 300.0, "TF-family score multiplier, applied before BPR and at test time",
             float, low=0.0, low_open=True)
CL_WEIGHT = Param("cl_weight", 1.0, "gamma: weight of the COPF contrastive loss (0 = off)",
                  float, low=0.0, batchable=True)
CL_TEMPERATURE = Param("cl_temperature", 0.1, "tau: temperature of the COPF contrastive loss",
                       float, low=0.0, low_open=True, batchable=True,
                       structure=lambda tau: 1.0 / tau <= 40.0)   # copf.contrastive's fast path
# The reference code multiplies every task's BPR mean by 3, whatever the number of behaviors.
TASK_SCALE = 3.0


def weighted_task_bpr(weights, values: torch.Tensor, scores_of, batch: Batch
                      ) -> torch.Tensor | None:
    """sum_k lambda_k * 3 * BPR_k over the behaviors with a positive weight that the batch has
    pairs for; ``weights`` (the configuration's floats) decide which tasks exist, ``values`` (the
    ``loss_weights`` tensor, see ``Component.hp``) are the lambda_k used; ``scores_of(k, pairs)``
    returns (pos, neg) scores. None when no task is trained."""
    total = None
    for k, weight in enumerate(weights):
        pairs = batch.pairs.get(k)
        if weight == 0 or pairs is None:
            continue
        pos, neg = scores_of(k, pairs)
        term = (values[k] * TASK_SCALE) * bpr_softplus(pos, neg, pairs.weight)
        total = term if total is None else total + term
    return total


@register_decoder("bilinear")
class BilinearDecoder(Decoder):
    """y^k(u, v) = mult * sum_d Z_u^k[u] * Z_v^k[v] * r_k, with r_k = behEmbeds[k] (Xavier, not
    regularized, not propagated). Loss: sum_k lambda_k * 3 * BPR_k; the decoder has no regularized
    weight of its own (the encoder regularizes its tables). ``cl=true`` adds the COPF contrastive
    loss on the encoder's per-behavior tables (spec §5.1 "w/o DFME": off by default, [I])."""

    params = (DIM, LOSS_WEIGHTS, MULT,
              Param("cl", False, "add the COPF contrastive loss (weight cl_weight, temperature "
                    "cl_temperature) to the Bilinear decoder", bool),
              CL_WEIGHT, CL_TEMPERATURE)

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        self.beh_embeds = xavier_table(self.n_behaviors, cfg["dim"], generator, device)
        self.weights = [float(w) for w in cfg["loss_weights"]]
        self.item_anchors = None
        if cfg["cl"]:
            # imported here: the copf package registers models that use this decoder
            from copf.contrastive import ItemAnchors, contrastive_loss, fast_path_allowed
            self._contrastive, self._fast = contrastive_loss, fast_path_allowed
            self.item_anchors = ItemAnchors(self.target, self.n_items)

    def plan_epoch(self, sampler, epoch: int) -> bool:
        """Size the contrastive loss's item rows for this epoch's batches (True: they grew)."""
        return self.item_anchors.plan_epoch(sampler, epoch) if self.item_anchors else False

    def plan_state(self) -> dict:
        return self.item_anchors.state() if self.item_anchors else {}

    def restore_plan(self, state: dict) -> None:
        if self.item_anchors:
            self.item_anchors.restore(state)

    def pair_scores(self, reps: BehaviorReps, k: int, users: torch.Tensor,
                    items: torch.Tensor) -> torch.Tensor:
        x = rows(reps.users[k], users)
        y = rows(reps.items[k], items)
        return self.cfg["mult"] * (x * y * self.beh_embeds[k]).sum(-1)

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        def scores_of(k, pairs):
            n = len(pairs)
            s = self.pair_scores(reps, k, torch.cat([pairs.users, pairs.users]),
                                 torch.cat([pairs.pos, pairs.neg]))
            return s[:n], s[n:]

        parts = {}
        bpr = weighted_task_bpr(self.weights, self.hp("loss_weights"), scores_of, batch)
        if bpr is not None:
            parts["bpr"] = bpr
        if self.cfg["cl"] and self.cfg["cl_weight"] > 0:
            cl = self._contrastive(reps, batch, self.hp("cl_temperature"), self.hp("cl_weight"),
                                   self._fast(self.cfg["cl_temperature"]),
                                   item_rows=self.item_anchors.rows)
            if cl is not None:
                parts["cl"] = cl
        return parts

    @torch.no_grad()
    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        k = self.target
        x = rows(reps.users[k], users) * self.beh_embeds[k]
        return self.cfg["mult"] * (x @ reps.items[k].T)
