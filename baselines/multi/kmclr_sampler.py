"""KMCLR's sampler (model-specs-table2.md Part 3, "KMCLR"; see ``baselines.multi.kmclr`` for how it
differs from the release's loaders): the MB rows, the InfoNCE rows and, with a KG, the KG-BPR rows
and the TransR / TATEC samples of each step, drawn from the runs' counter-based streams."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from bench.models.base import Batch, Pairs
from bench.train import streams
from bench.train.samplers import CounterLayout, EpochOrder, InteractionIndex, register_sampler

NEGATIVE_TRIES = 8          # candidate false tails per TransR/TATEC sample (fixed shapes)
TAG_VIEWS = 0x6A09E667      # the epoch key of the KG views
TAG_HEADS = 0xBB67AE85      # the TransR / TATEC head orders


class KMCLRSampler:
    """Per epoch the buy records in a random order, ``batch_size`` per step (the last step
    partial). Per record and behavior k: the record's item (buy) or a uniform item of the user's
    A_k row (none: weight 0), and a uniform negative outside that row; the InfoNCE's
    floor(rows / ssl_fraction) rows without replacement. With a KG: KG-BPR rows (the users of the
    step's first ``kg_batch_size`` records, a uniform buy item of the user, a uniform negative
    outside the user's buys) and TransR / TATEC samples (``trans_batch_size`` heads of an epoch
    order of the heads; a uniform (r, t+) of the head; t- the tail of a uniform pair of a uniform
    head, the first of ``NEGATIVE_TRIES`` candidates with (r, t-) not among the head's pairs,
    weight 0 if none is)."""

    def __init__(self, dataset, cfg: dict, device: torch.device, model, keys: torch.Tensor
                 ) -> None:
        matrices = dataset.matrices()
        self.target = len(matrices) - 1
        self.index = [InteractionIndex(m, device, f"matrix of behavior {k}")
                      for k, m in enumerate(matrices)]
        buy = self.index[-1]
        self.buy = buy
        self.keys, self.device = keys, device
        self.batch_size = cfg["batch_size"]
        self.records = EpochOrder(keys, int(buy.keys.numel()), int(buy.keys.numel()),
                                  self.batch_size)
        self.steps_per_epoch = self.records.steps
        self.ssl_fraction = cfg["ssl_fraction"]
        chunk = cfg["ssl_chunk"]
        most = max(self.batch_size // self.ssl_fraction, 1)
        self.ssl_slots = -(-most // chunk) * chunk
        self.layout = CounterLayout(device)
        for k in range(len(matrices)):
            self.layout.set(f"{k}/pos", self.batch_size, 2 * k)
            self.layout.set(f"{k}/neg", self.batch_size, 2 * k + 1)
        self.layout.set("ssl", self.batch_size, 40)
        self.kg = getattr(model.encoder, "kg", None)
        self.view_keys = streams.derive(keys, TAG_VIEWS, 0).clone()
        if self.kg is not None:
            self._init_kg(cfg, device, keys)

    def _init_kg(self, cfg: dict, device: torch.device, keys: torch.Tensor) -> None:
        kg = self.kg
        self.kg_rows = min(cfg["kg_batch_size"], self.batch_size)
        self.layout.set("kg/pos", self.kg_rows, 41)
        self.layout.set("kg/neg", self.kg_rows, 42)
        n_heads = len(kg.heads)
        self.heads = torch.as_tensor(kg.heads, device=device)
        self.n_codes = kg.entity_count + 1
        codes = kg.pair_relations * self.n_codes + kg.pair_tails
        pairs = sp.csr_matrix((np.ones(len(codes), dtype=np.float32), codes, kg.pair_indptr),
                              shape=(n_heads, (kg.relation_count + 1) * self.n_codes))
        self.pairs = InteractionIndex(pairs, device, "KG pairs")
        take = min(cfg["trans_batch_size"], n_heads)
        self.head_orders = {}
        for segment, name in ((43, "transr"), (47, "tatec")):
            order_keys = streams.derive(keys, TAG_HEADS, segment)
            self.head_orders[name] = EpochOrder(order_keys, n_heads, n_heads, take)
            self.layout.set(f"{name}/pos", take, segment)
            self.layout.set(f"{name}/neg_head", take * NEGATIVE_TRIES, segment + 1)
            self.layout.set(f"{name}/neg_pair", take * NEGATIVE_TRIES, segment + 2)

    def start_epoch(self, epoch: int) -> bool:
        self.records.shuffle(epoch)
        if self.kg is not None:
            for order in self.head_orders.values():
                order.shuffle(epoch)
        self.view_keys.copy_(streams.derive(self.keys, TAG_VIEWS, epoch))
        return False

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass

    def _trans_samples(self, name: str, step: torch.Tensor, draws: dict) -> dict:
        positions, weight = self.head_orders[name].slots(step)
        codes = self.pairs.positives(positions, draws[f"{name}/pos"])
        rels = torch.div(codes, self.n_codes, rounding_mode="floor")
        tails = codes - rels * self.n_codes
        n = positions.shape[-1]
        lead = positions.shape[:-1]
        other = streams.below(draws[f"{name}/neg_head"], len(self.heads))
        other_codes = self.pairs.positives(other, draws[f"{name}/neg_pair"])
        other_tails = (other_codes % self.n_codes).view(*lead, NEGATIVE_TRIES, n)
        candidates = rels.unsqueeze(-2) * self.n_codes + other_tails
        clash = self.pairs.contains(positions.unsqueeze(-2).expand_as(candidates), candidates)
        ok = ~clash
        first = ok.to(torch.int64).argmax(-2, keepdim=True)
        neg = other_tails.gather(-2, first).squeeze(-2)
        weight = weight * ok.any(-2).to(weight.dtype)
        return {f"{name}_heads": self.heads[positions], f"{name}_rels": rels,
                f"{name}_pos": tails, f"{name}_neg": neg, f"{name}_weight": weight}

    def batch(self, step: torch.Tensor, global_step: torch.Tensor) -> Batch:
        keys = streams.derive(self.keys, streams.TAG_STEP, global_step)
        draws = self.layout.draw(keys)
        records, valid = self.records.slots(step)
        codes = self.buy.keys[records]
        users = torch.div(codes, self.buy.n_items, rounding_mode="floor")
        items = codes - users * self.buy.n_items
        pairs = {}
        for k, index in enumerate(self.index):
            if k == self.target:
                pos, weight = items, valid
            else:
                pos = index.positives(users, draws[f"{k}/pos"])
                weight = valid * (index.degree[users] > 0).to(valid.dtype)
            pairs[k] = Pairs(users, pos, index.negatives(users, draws[f"{k}/neg"]), weight)
        # the InfoNCE rows: a random order of the real rows, the first floor(rows / fraction)
        order_keys = torch.where(valid > 0, draws["ssl"], draws["ssl"] + (1 << 32))
        picked = order_keys.argsort(-1)[..., :self.ssl_slots]
        count = torch.div(valid.sum(-1, keepdim=True), self.ssl_fraction, rounding_mode="floor")
        slots = torch.arange(self.ssl_slots, device=self.device)
        extra = {"ssl_users": users.gather(-1, picked),
                 "ssl_weight": (slots < count).to(valid.dtype),
                 "view_keys": self.view_keys}
        if self.kg is not None:
            kg_users = users[..., :self.kg_rows]
            extra.update(kg_users=kg_users,
                         kg_pos=self.buy.positives(kg_users, draws["kg/pos"]),
                         kg_neg=self.buy.negatives(kg_users, draws["kg/neg"]),
                         kg_weight=valid[..., :self.kg_rows])
            for name in self.head_orders:
                extra.update(self._trans_samples(name, step, draws))
        return Batch(users, pairs, extra=extra, user_weight=valid, noise=keys)


@register_sampler("kmclr")
def _kmclr_sampler(dataset, cfg: dict, device: torch.device, model, keys) -> KMCLRSampler:
    return KMCLRSampler(dataset, cfg, device, model, keys)
