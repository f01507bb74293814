"""The ``cml`` sampler (``../shared/docs/model-specs-table2.md`` Part 2, "CML", epoch data and
round 2), on fixed shapes.

Per epoch every target (buy) record once, shuffled, ``batch_size`` per step (the release's
``RecDataset_beh`` through a shuffling DataLoader). Per record and behavior k: the negative is
uniform outside the user's behavior-k items (the release's rejection loop draws exactly that);
the positive is the record's item for the target, else uniform among the user's behavior-k items
(the release's draw-then-fall-back is uniform too), or no pair (weight 0) when the user has none.

Round 2 of a step (the meta step) reads ``meta_batch`` users of a fixed per-run list, cut by the
release's cursor (reset every epoch) and, per behavior slot, min(samp_num, degree) pairs per user
drawn with replacement from the target matrix (``cml_round2='release'``: the release's leftover
loop index makes every slot read the buy matrix) or from the slot's own behavior (``'fixed'``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError
from bench.models.base import Batch, Pairs
from bench.train import streams
from bench.train.samplers import (CounterLayout, EpochOrder, InteractionIndex, expand,
                                  register_sampler)

TAG_META_LIST = 0x6D657461   # the stream of the meta-user list's shuffle
META_USER_RULES = ("all-or-view-only", "buyers")


def meta_candidates(matrices: list[sp.csr_matrix], rule: str) -> np.ndarray:
    """The users the meta list is a shuffle of. 'all-or-view-only' [I]: buyers who have every
    behavior, or the first (view) behavior and no other auxiliary one (the release's unreleased
    list holds its Tmall users with all behaviors and those whose only non-view behavior is buy);
    'buyers': every user with a buy."""
    if rule not in META_USER_RULES:
        raise ConfigError(f"cml_meta_users must be one of {META_USER_RULES}, got '{rule}'")
    has = [np.diff(sp.csr_matrix(m).indptr) > 0 for m in matrices]
    buyers = has[-1]
    if rule == "buyers" or len(matrices) == 1:
        return np.flatnonzero(buyers)
    middle = has[1:-1]
    every = np.logical_and.reduce(has)
    view_only = has[0] & buyers & ~np.logical_or.reduce(middle) if middle else has[0] & buyers
    return np.flatnonzero(every | view_only)


def meta_windows(n_list: int, steps: int, meta_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions in the meta list read by each step of an epoch and their 0/1 weights,
    [steps, meta_batch]: the release's cursor (``main.py trainEpoch``), reset every epoch."""
    positions = np.zeros((steps, meta_batch), dtype=np.int64)
    weights = np.zeros((steps, meta_batch), dtype=np.float32)
    start, end = 0, min(meta_batch, n_list)
    for step in range(steps):
        width = end - start
        positions[step, :width] = np.arange(start, end)
        weights[step, :width] = 1.0
        if end == n_list:
            start = 0
        else:
            start = (start + meta_batch) % max(n_list - 1, 1)
        end = min(start + meta_batch, n_list)
    return positions, weights


class CMLSampler:
    """See the module docstring. Segments of the step's counters: 2k/2k+1 record pairs of
    behavior k, 64 + 2k/2k+1 round-2 pairs of slot k."""

    def __init__(self, dataset: MultiBehaviorDataset, cfg: dict, device: torch.device,
                 keys: torch.Tensor) -> None:
        matrices = dataset.matrices()
        self.K = len(matrices)
        self.keys, self.device = keys, device
        self.batch_size = cfg["batch_size"]
        self.indexes = [InteractionIndex(m, device, f"matrix of behavior {k}")
                        for k, m in enumerate(matrices)]
        target = self.indexes[-1]
        self.n_records = int(target.keys.numel())
        if self.n_records == 0:
            raise ConfigError("cml: the target behavior has no training record to sample")
        self.records = EpochOrder(keys, self.n_records, self.n_records, self.batch_size)
        self.steps_per_epoch = self.records.steps
        self.meta_batch, self.samp_num = cfg["cml_meta_batch"], cfg["cml_samp_num"]
        self.round2 = cfg["cml_round2"]
        candidates = meta_candidates(matrices, cfg["cml_meta_users"])
        if len(candidates) == 0:
            raise ConfigError("cml: no user qualifies for the meta list (cml_meta_users="
                              f"'{cfg['cml_meta_users']}'); try cml_meta_users=buyers")
        ids = torch.as_tensor(candidates, dtype=torch.int64, device=device)
        order = streams.permutation(streams.derive(keys, TAG_META_LIST, 0), len(candidates))
        self.meta_list = ids[order]                                   # [S, n_meta]
        positions, weights = meta_windows(len(candidates), self.steps_per_epoch, self.meta_batch)
        self.meta_positions = torch.as_tensor(positions, device=device)
        self.meta_weights = torch.as_tensor(weights, device=device)
        self.meta_slots = self.meta_batch * self.samp_num
        self.layout = CounterLayout(device)
        for k in range(self.K):
            self.layout.set(f"rec{k}/pos", self.batch_size, 2 * k)
            self.layout.set(f"rec{k}/neg", self.batch_size, 2 * k + 1)
            self.layout.set(f"meta{k}/pos", self.meta_slots, 64 + 2 * k)
            self.layout.set(f"meta{k}/neg", self.meta_slots, 64 + 2 * k + 1)

    def start_epoch(self, epoch: int) -> bool:
        self.records.shuffle(epoch)
        return False

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def _meta(self, step: torch.Tensor, draws: dict[str, torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor, dict[int, Pairs]]:
        index = step % self.steps_per_epoch
        positions = self.meta_positions.index_select(0, index.reshape(1))[0]
        weight = self.meta_weights.index_select(0, index.reshape(1))[0]
        users = self.meta_list.index_select(1, positions)             # [S, meta_batch]
        weight = weight.expand_as(users).contiguous()
        pairs = {}
        for k in range(self.K):
            source = self.indexes[-1] if self.round2 == "release" else self.indexes[k]
            counts = (source.degree.index_select(0, users.reshape(-1)).view(users.shape)
                      .clamp(max=self.samp_num) * weight.to(torch.int64))
            owner, _, slot_weight = expand(counts, self.meta_slots)
            pair_users = users.gather(-1, owner)
            pairs[k] = Pairs(pair_users, source.positives(pair_users, draws[f"meta{k}/pos"]),
                             source.negatives(pair_users, draws[f"meta{k}/neg"]), slot_weight,
                             owner)
        return users, weight, pairs

    def batch(self, step: torch.Tensor, global_step: torch.Tensor) -> Batch:
        keys = streams.derive(self.keys, streams.TAG_STEP, global_step)
        draws = self.layout.draw(keys)
        records, valid = self.records.slots(step)
        target = self.indexes[-1]
        codes = target.keys.index_select(0, records.reshape(-1)).view(records.shape)
        users = torch.div(codes, target.n_items, rounding_mode="floor")
        items = codes - users * target.n_items
        pairs = {}
        for k, index in enumerate(self.indexes):
            neg = index.negatives(users, draws[f"rec{k}/neg"])
            if k == self.K - 1:
                pos, weight = items, valid
            else:
                pos = index.positives(users, draws[f"rec{k}/pos"])
                has = index.degree.index_select(0, users.reshape(-1)).view(users.shape) > 0
                weight = valid * has.to(torch.float32)
            pairs[k] = Pairs(users, pos, neg, weight)
        meta_users, meta_weight, meta_pairs = self._meta(step, draws)
        extra = {"meta_users": meta_users, "meta_weight": meta_weight, "meta_pairs": meta_pairs}
        return Batch(users, pairs, extra=extra, user_weight=valid, noise=keys)


@register_sampler("cml")
def _cml_sampler(dataset: MultiBehaviorDataset, cfg: dict, device: torch.device, model,
                 keys: torch.Tensor) -> CMLSampler:
    return CMLSampler(dataset, cfg, device, keys)
