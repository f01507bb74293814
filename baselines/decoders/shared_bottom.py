"""``shared-bottom``: the Shared Bottom multi-task decoder on a shared input (spec §8.1), and the
pieces every TF-family multi-task decoder of this package shares (spec §0, §8).

Shared input. SB, MMOE and PLE need one input for all tasks; from the encoder's per-behavior
tables Z^k they build ``m_u = sum_k c_k Z_u^k[u]``, ``m_v = sum_k c_k Z_v^k[v]`` and
``q = [m_u; m_v]`` (2d wide). ``shared_input=sum`` (default, [I] spec §5.3: the code hook
``ulat_merge``) takes c_k = 1; ``shared_input=weighted`` takes c_k = lambda_k (the task weights;
the paper's "we weight the K separate representations").

Shared Bottom: ``y^k = mult * (w_k^T q + b_k)``, one linear tower per task, no hidden layer (so the
score is additive in user and item: there is no interaction term, which is why SB is weak in
Table 5).

TF-family conventions kept by every decoder here:

- an FC layer is ``y = x W + b`` with W [in, out] Xavier-uniform and L2-regularized, b zeros and
  not regularized (``NNLayers.FC``); LeakyReLU has slope 0.1;
- loss = ``sum_k lambda_k * 3 * BPR_k`` (``baselines.decoders.bilinear.weighted_task_bpr``: a task with
  lambda_k = 0 has no BPR) + ``reg * sum |W|^2`` over the decoder's regularized weights, every step;
  the encoder adds its own L2 (its embedding tables);
- every score is multiplied by ``mult`` before BPR and at test time;
- no contrastive loss (spec §5.3).

At build time the decoder runs the encoder once (no gradient) and refuses, with a ConfigError naming
what is missing, an encoder whose outputs do not fit: one user and one item table per behavior, all
of one width.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from baselines.decoders.bilinear import LOSS_WEIGHTS, MULT, weighted_task_bpr
from bench.errors import ConfigError
from bench.models.base import (Batch, BehaviorReps, Decoder, Encoder, Pairs, rows, tf_l2,
                               xavier_table)
from bench.models.registry import register_decoder
from bench.params import DIM, TF_REG, Param

LEAKY_SLOPE = 0.1
SHARED_INPUTS = ("sum", "weighted")
# Largest block (elements of one users x items x width tensor) full-ranking scoring builds at once.
SCORE_BLOCK_ELEMENTS = 1 << 23

SHARED_INPUT = Param("shared_input", "sum", "shared-input decoders (SB, MMOE, PLE): q = [m_u; m_v] "
                     "with m = sum_k Z^k (sum) or sum_k lambda_k Z^k (weighted)", str,
                     choices=SHARED_INPUTS)


def probe_encoder(encoder: Encoder, n_behaviors: int, who: str) -> tuple[int, BehaviorReps]:
    """Run ``encoder`` once without gradient and check that it gives one [U, d] user table and one
    [I, d] item table per behavior, all of one width d. Returns (d, the representations)."""
    name = getattr(encoder, "registered_name", type(encoder).__name__)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            reps = encoder()
    finally:
        encoder.train(was_training)
    n_u, n_i = len(reps.users), len(reps.items)
    if n_u != n_behaviors or n_i != n_behaviors:
        raise ConfigError(
            f"decoder '{who}' needs per-behavior tables: one user and one item table for each of "
            f"the {n_behaviors} behaviors, but encoder '{name}' gives {n_u} user and {n_i} item "
            f"table(s); pick an encoder with per-behavior (or repeated) outputs")
    widths = set()
    for k in range(n_behaviors):
        zu, zv = reps.users[k], reps.items[k]
        if zu.dim() != 2 or zv.dim() != 2 or zu.shape[0] != encoder.n_users \
                or zv.shape[0] != encoder.n_items:
            raise ConfigError(
                f"decoder '{who}': encoder '{name}' gives behavior {k} tables of shapes "
                f"{tuple(zu.shape)} and {tuple(zv.shape)}; needed [{encoder.n_users}, d] users and "
                f"[{encoder.n_items}, d] items")
        widths.update((zu.shape[1], zv.shape[1]))
    if len(widths) != 1:
        raise ConfigError(f"decoder '{who}': encoder '{name}' gives tables of different widths "
                          f"{sorted(widths)}; every user and item table needs the same width d")
    return widths.pop(), reps


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """The TF family's ``leakyRelu``: max(0.1 x, x)."""
    return nn.functional.leaky_relu(x, LEAKY_SLOPE)


class Dense(nn.Module):
    """TF-family FC layer ``y = x W + b``: W [n_in, n_out] Xavier (regularized), b zeros (not).

    On a concatenated input ``[x_u; x_v]`` the layer splits into ``left(x_u) = x_u W[:d_u]`` and
    ``right(x_v) = x_v W[d_u:] + b``, whose (broadcast) sum is the layer: full ranking never
    builds the concatenation per (user, item)."""

    def __init__(self, n_in: int, n_out: int, generator: torch.Generator,
                 device: torch.device) -> None:
        super().__init__()
        self.weight = xavier_table(n_in, n_out, generator, device)
        self.bias = nn.Parameter(torch.zeros(n_out, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias

    def left(self, x_u: torch.Tensor) -> torch.Tensor:
        return x_u @ self.weight[:x_u.shape[-1]]

    def right(self, x_v: torch.Tensor) -> torch.Tensor:
        return x_v @ self.weight[self.weight.shape[0] - x_v.shape[-1]:] + self.bias


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products over the last dimension, keeping it (size 1): ``(a * b).sum(-1,
    keepdim=True)`` as one batched matrix product, without the elementwise temporary."""
    d = a.shape[-1]
    out = torch.bmm(a.reshape(-1, 1, d), b.reshape(-1, d, 1))
    return out.reshape(*a.shape[:-1], 1)


def rows_split(table: torch.Tensor, indices: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``[rows(table, i) for i in indices]`` with a single gather."""
    if not indices:
        return []
    gathered = rows(table, torch.cat(list(indices)))
    return list(gathered.split([len(i) for i in indices]))


def users_per_block(per_user: int) -> int:
    """Users per full-ranking block so that one block tensor (``per_user`` elements per user)
    stays under SCORE_BLOCK_ELEMENTS."""
    return max(1, SCORE_BLOCK_ELEMENTS // max(1, per_user))


class TFMultiTaskDecoder(Decoder):
    """Base of this package's TF-family multi-task decoders: checks the encoder, holds the task
    weights and ``mult``, and turns per-task pair scores into ``sum_k lambda_k * 3 * BPR_k`` + L2.

    Subclasses implement ``pair_tables(reps)`` (the user and item tables whose rows a pair score
    reads), ``row_scores(k, x, y)`` (task k's scores of aligned user rows x and item rows y of those
    tables, without ``mult``), ``block_scores(reps, users)`` (the target task against every item,
    without ``mult``) and ``regularized()``.

    Training gathers each side's rows for every task in ONE index_select (and each user row once for
    its positive and its negative): on CPU a gather's backward is a serial scatter over the whole
    table, so the number of gathers, not their size, dominates a step."""

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        who = getattr(type(self), "registered_name", type(self).__name__)
        self.width, _ = probe_encoder(encoder, self.n_behaviors, who)
        self.weights = [float(w) for w in cfg["loss_weights"]]
        if len(self.weights) != self.n_behaviors:
            raise ConfigError(f"decoder '{who}': parameter 'loss_weights' needs one entry per "
                              f"behavior ({self.n_behaviors}), got {cfg['loss_weights']!r}")

    def pair_tables(self, reps: BehaviorReps) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - interface

    def row_scores(self, k: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def block_scores(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def regularized(self) -> list[torch.Tensor]:
        return []

    def pair_scores(self, reps: BehaviorReps, k: int, users: torch.Tensor,
                    items: torch.Tensor) -> torch.Tensor:
        """Task k's scores of aligned (user, item) pairs, without ``mult``."""
        table_u, table_v = self.pair_tables(reps)
        return self.row_scores(k, rows(table_u, users), rows(table_v, items))

    def trained_tasks(self, batch: Batch) -> list[tuple[int, Pairs]]:
        """(k, pairs) of the tasks with a positive weight and pairs in this batch, ascending k."""
        out = []
        for k, weight in enumerate(self.weights):
            pairs = batch.pairs.get(k)
            if weight != 0 and pairs is not None:
                out.append((k, pairs))
        return out

    def task_scores(self, reps: BehaviorReps,
                    tasks: list[tuple[int, Pairs]]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """(pos, neg) scores, ``mult`` included, of every task's pairs."""
        if not tasks:
            return {}
        table_u, table_v = self.pair_tables(reps)
        xs = rows_split(table_u, [p.users for _, p in tasks])
        ys = rows_split(table_v, [torch.cat([p.pos, p.neg]) for _, p in tasks])
        out = {}
        for (k, pairs), x, y in zip(tasks, xs, ys):
            s = self.cfg["mult"] * self.row_scores(k, torch.cat([x, x]), y)
            out[k] = (s[:len(pairs)], s[len(pairs):])
        return out

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        parts = {}
        scores = self.task_scores(reps, self.trained_tasks(batch))
        bpr = weighted_task_bpr(self.weights, self.hp("loss_weights"), lambda k, p: scores[k],
                                batch)
        if bpr is not None:
            parts["bpr"] = bpr
        weights = self.regularized()
        if weights:
            parts["l2"] = tf_l2(weights, self.hp("reg"))
        return parts

    @torch.no_grad()
    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        return self.cfg["mult"] * self.block_scores(reps, users)

    def cached(self, reps: BehaviorReps, name: str, build):
        """A per-``reps`` value (full-ranking precomputations), built once per scorer."""
        cache = reps.extra.setdefault("_mtl_cache", {})
        key = (id(self), name)
        if key not in cache:
            cache[key] = build()
        return cache[key]


class SharedInputDecoder(TFMultiTaskDecoder):
    """Base of SB, MMOE and PLE: the shared input ``q = [m_u; m_v]`` (see the module docstring)."""

    params = (DIM, TF_REG, LOSS_WEIGHTS, MULT, SHARED_INPUT)

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        if cfg["shared_input"] == "weighted":
            self.mix = list(self.weights)
            if not any(self.mix):
                raise ConfigError("shared_input=weighted needs a positive task weight "
                                  "(loss_weights are all 0)")
        else:
            self.mix = [1.0] * self.n_behaviors

    def merged(self, reps: BehaviorReps) -> tuple[torch.Tensor, torch.Tensor]:
        """(m_u [U, d], m_v [I, d]): ``sum_k c_k Z^k`` over the behaviors with c_k != 0 (the
        weighted form reads the task weights as a tensor: members of a batch have their own)."""
        weighted = self.cfg["shared_input"] == "weighted"
        values = self.hp("loss_weights") if weighted else None
        m_u = m_v = None
        for k, c in enumerate(self.mix):
            if c == 0:
                continue
            zu = values[k] * reps.users[k] if weighted else reps.users[k]
            zv = values[k] * reps.items[k] if weighted else reps.items[k]
            m_u = zu if m_u is None else m_u + zu
            m_v = zv if m_v is None else m_v + zv
        return m_u, m_v

    def merged_rows(self, reps: BehaviorReps, users: torch.Tensor,
                    items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m_u, m_v = self.merged(reps)
        return rows(m_u, users), rows(m_v, items)

    def pair_tables(self, reps):
        return self.merged(reps)


@register_decoder("shared-bottom")
class SharedBottomDecoder(SharedInputDecoder):
    """Shared Bottom (spec §8.1): ``y^k = mult * (w_k^T [m_u; m_v] + b_k)``, one linear tower per
    task on the shared input; towers' W L2-regularized."""

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        self.towers = nn.ModuleList([Dense(2 * self.width, 1, generator, device)
                                     for _ in range(self.n_behaviors)])

    def regularized(self) -> list[torch.Tensor]:
        return [t.weight for t in self.towers]

    def row_scores(self, k, x, y):
        return self.towers[k](torch.cat([x, y], dim=1)).squeeze(1)

    def block_scores(self, reps, users):
        tower = self.towers[self.target]
        m_u, m_v = self.cached(reps, "merged", lambda: self.merged(reps))
        part_v = self.cached(reps, "tower-items", lambda: tower.right(m_v))
        return tower.left(rows(m_u, users)) + part_v.T

