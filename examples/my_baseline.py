"""A complete baseline in one file: multi-task BPR on shared embeddings.

Run it without touching the suite:
    python -m bench run --plugin examples/my_baseline.py --models my-mtbpr --datasets demo
"""
import torch

from bench.models.base import Decoder, bpr_softplus, rows
from bench.models.registry import register_decoder, register_model
from bench.params import Param


@register_decoder("my-weighted-bpr")
class WeightedBPR(Decoder):
    """BPR on every behavior, auxiliary behaviors down-weighted; scores are dot products."""

    params = (Param("aux_weight", 0.3, "weight of each auxiliary behavior's BPR loss", float,
                    low=0.0),)

    def losses(self, reps, batch):
        terms = []
        for k, pairs in batch.pairs.items():
            user = rows(reps.users[k], pairs.users)
            pos = (user * rows(reps.items[k], pairs.pos)).sum(-1)
            neg = (user * rows(reps.items[k], pairs.neg)).sum(-1)
            weight = 1.0 if k == self.target else self.cfg["aux_weight"]
            # pairs come in fixed slots; pairs.weight is 0 on the padding ones
            terms.append(weight * bpr_softplus(pos, neg, pairs.weight))
        return {"bpr": torch.stack(terms).sum()}

    def score(self, reps, users):
        return rows(reps.users[self.target], users) @ reps.items[self.target].T


# The built-in "embedding" encoder gives plain Xavier user/item tables; the sampler is the
# reference multi-behavior harness. Defaults here override the suite's training defaults.
register_model("my-mtbpr", encoder="embedding", decoder="my-weighted-bpr",
               description="example: multi-task BPR on shared embeddings",
               defaults={"epochs": 20, "lr": 5e-3, "eval_schedule": "every", "eval_every": 5},
               dataset_defaults={"taobao": {"aux_weight": 0.2}})
