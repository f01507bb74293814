"""``crgcn``: Cascading Residual Graph Convolutional Network (model-specs §7.4; reference code
``MingshiYan/CRGCN``).

Encoder ``crgcn`` (usable under other decoders, e.g. DFME for the paper's Table 6):
- one LightGCN-like encoder per behavior, upstream -> target: ``L_k`` layers of
  ``x <- D^-1/2 A_k D^-1/2 x + b_{k,l}`` (PyG GCNConv without weight matrix or self-loops, a
  trainable zero-initialized bias per layer); the encoder keeps only its last layer;
- residual cascade ``T_0 = E0``, ``T_k = T_{k-1} + normalize_row(Enc_k(T_{k-1}))``; ``Z^k = T_k``.

Decoder ``crgcn``: ``y^k(u, v) = <Z^k_u, Z^k_v>``; loss = sum over behaviors of the batch mean of
``-log(1e-10 + sigmoid(y_pos - y_neg))`` + ``reg * (|E_u|_F + |E_v|_F) / (I + 1)`` (Frobenius
norms, not squared, of the whole tables, divided by the reference's item-table row count, padding
row included). Prediction uses Z^K.

Sampler ``crgcn``: each epoch visits every user once (shuffled, ``batch_size`` users per step); per
user and behavior one positive of that behavior and one negative outside the user's all-behavior
set. A user without the behavior is a (0, 0, 0) padding row in the reference: zero gradient, but it
counts in the batch mean, so the mean divides by all the step's users (and the constant -log(0.5)
of those rows is added so the logged loss matches the reference's).

Differences from the reference, none affecting the model: ids are 0-based without a padding row,
and Xavier limits use the table sizes without that row.
"""
from __future__ import annotations

import math
import torch
from torch import nn
from torch.nn import functional as F

from bench.data.graphs import propagate, torch_graph
from bench.models.base import Batch, BehaviorReps, Decoder, Encoder, Pairs, rows, xavier_table
from bench.models.registry import register_decoder, register_encoder, register_model
from bench.params import DIM, Param
from bench.train import streams
from bench.train.samplers import CounterLayout, EpochOrder, InteractionIndex, register_sampler

CASCADE_LAYERS = Param("cascade_layers", [1, 1, 1],
                       "CRGCN: GCN layers of each behavior's encoder in the cascade (upstream -> "
                       "target)", list, low=1, length="behaviors")


@register_encoder("crgcn")
class CRGCNEncoder(Encoder):
    """Cascading residual blocks; ``users[k]``/``items[k]`` are T_k (spec §5.4: Z^k = T_k)."""

    params = (DIM, CASCADE_LAYERS)

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        d = cfg["dim"]
        self.layers = [int(n) for n in cfg["cascade_layers"]]
        self.graphs = [torch_graph(dataset, "behavior", "symmetric", k=k, device=device)
                       for k in range(self.n_behaviors)]
        self.users = xavier_table(self.n_users, d, generator, device)
        self.items = xavier_table(self.n_items, d, generator, device)
        # GCNConv's bias: zeros, one per layer and behavior
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.zeros(n, d, device=device)) for n in self.layers])

    def behavior_encoder(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Enc_k: L_k layers of A_k x + b, the last layer returned."""
        for layer in range(self.layers[k]):
            x = propagate(self.graphs[k], x) + self.biases[k][layer]
        return x

    def forward(self) -> BehaviorReps:
        total = torch.cat([self.users, self.items], dim=0)
        outputs = []
        for k in range(self.n_behaviors):
            total = total + F.normalize(self.behavior_encoder(k, total), dim=-1)
            outputs.append(total)
        u = self.n_users
        return BehaviorReps([t[:u] for t in outputs], [t[u:] for t in outputs],
                            {"ego_users": self.users, "ego_items": self.items})


@register_decoder("crgcn")
class CRGCNDecoder(Decoder):
    """Per-behavior dot products, multi-task BPR with equal weights, CRGCN's Frobenius-norm reg."""

    params = (Param("reg", 1e-3, "CRGCN: weight of (|E_u|_F + |E_v|_F) / (I + 1), norms not "
                    "squared", float, low=0.0, batchable=True),)

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        n_rows = batch.user_weight.sum().clamp_min(1.0)
        padding_loss = -math.log(1e-10 + 0.5)   # a (0, 0, 0) row: sigmoid(0)
        bpr = None
        for k, pairs in batch.pairs.items():
            zu, zv = reps.users[k], reps.items[k]
            eu = rows(zu, pairs.users)
            diff = (eu * rows(zv, pairs.pos)).sum(-1) - (eu * rows(zv, pairs.neg)).sum(-1)
            term = -torch.log(1e-10 + torch.sigmoid(diff))
            missing = n_rows - pairs.count()
            value = ((term * pairs.weight).sum() + missing * padding_loss) / n_rows
            bpr = value if bpr is None else bpr + value
        if bpr is None:
            bpr = torch.zeros((), device=self.device)
        ego_u = reps.extra.get("ego_users", reps.users[self.target])
        ego_v = reps.extra.get("ego_items", reps.items[self.target])
        reg = self.hp("reg") * (ego_u.norm() + ego_v.norm()) / (self.n_items + 1)
        return {"bpr": bpr, "reg": reg}

    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        return rows(reps.users[self.target], users) @ reps.items[self.target].T


class CRGCNSampler:
    """Every user once per epoch; per user and behavior 1 positive + 1 negative outside the user's
    all-behavior item set (a user lacking the behavior has a padding slot, weight 0, in that
    behavior's pairs: the reference's (0, 0, 0) row)."""

    def __init__(self, dataset, batch_size: int, device: torch.device,
                 keys: torch.Tensor) -> None:
        self.behaviors = [InteractionIndex(m, device, f"matrix of behavior {k}")
                          for k, m in enumerate(dataset.matrices())]
        self.union = InteractionIndex(dataset.union(), device, "union of all behaviors")
        self.keys = keys
        self.users = EpochOrder(keys, dataset.n_users, dataset.n_users, batch_size)
        self.steps_per_epoch = self.users.steps
        self.layout = CounterLayout(device)
        for k in range(len(self.behaviors)):
            self.layout.set(f"{k}/pos", batch_size, 2 * k)
            self.layout.set(f"{k}/neg", batch_size, 2 * k + 1)

    def start_epoch(self, epoch: int) -> bool:
        self.users.shuffle(epoch)
        return False

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass

    def batch(self, step: torch.Tensor, global_step: torch.Tensor) -> Batch:
        users, weight = self.users.slots(step)
        keys = streams.derive(self.keys, streams.TAG_STEP, global_step)
        draws = self.layout.draw(keys)
        pairs = {}
        for k, index in enumerate(self.behaviors):
            have = (index.degree[users] > 0).to(weight.dtype) * weight
            pairs[k] = Pairs(users, index.positives(users, draws[f"{k}/pos"]),
                             self.union.negatives(users, draws[f"{k}/neg"]), have)
        return Batch(users, pairs, user_weight=weight,
                     noise=keys)


@register_sampler("crgcn")
def _crgcn_sampler(dataset, cfg: dict, device: torch.device, model, keys) -> CRGCNSampler:
    return CRGCNSampler(dataset, cfg["batch_size"], device, keys)


# Reference defaults (CRGCN.sh / argparse): lr 0.01, reg 1e-3, d 64, batch 1024 users, 200 epochs,
# Adam without weight decay or lr decay; one layer per behavior (Tmall config: [1, 1, 1, 1]).
# [I] the evaluation cadence of the paper protocol (the reference early-stops on validation hit@20).
register_model(
    "crgcn", "crgcn", "crgcn",
    "CRGCN: cascading residual LightGCN blocks per behavior, multi-task BPR (spec §7.4)",
    defaults={"sampler": "crgcn", "batch_size": 1024, "lr": 1e-2, "lr_decay": 1.0, "reg": 1e-3,
              "epochs": 200, "eval_schedule": "every", "eval_every": 5},
    dataset_defaults={"tmall": {"cascade_layers": [1, 1, 1, 1]}},
    inferred=("eval_schedule", "eval_every"))
