"""``gnmr``: Graph Neural Multi-Behavior Enhanced Recommendation (model-specs-table2.md, Part 2,
"GNMR"; release ``akaxlh/GNMR`` @ 2edb18f, ``labcode.py`` with ``Utils/NNLayers.py``).

Encoder ``gnmr``. K behavior graphs R_k (users x items, binary, **not normalized**) and R_k^T.
E_u, E_i are Xavier tables; ``h^0 = E``, then for l = 1..L (no activation or normalization
between layers)::

    h_u^l = Agg_{2l-2}(h_i^{l-1}, {R_k}),   h_i^l = Agg_{2l-1}(h_u^{l-1}, {R_k^T})

Each of the 2L aggregations has its own parameters (per behavior W1_k [d, M] + b1_k; shared over
behaviors W2 [M, d^2], Q, K, V [d, d], gate G1 [d, d//2] + g1, G2 [d//2, 1] + g2):

- memory: t_k = A_k x; a_k = relu(t_k W1_k + b1_k); m_k = sum_j t_k[:, j] T_k[:, j, :] with
  T_k = reshape(a_k W2, [n, d, d]), computed as sum_m a_k[:, m] (t_k W2_m) (W2 viewed as
  [M, d, d]; the same value without the [n, d, d] tensor, spec "Cost");
- attention over the behaviors, H heads of d/H: softmax over k' of <q_k, kappa_k'> / (d/H) (the
  release divides by d/H, not its square root); no residual, no FFN;
- gate: beta = softmax_k(relu(s_k G1 + g1) G2 + g2); output sum_k beta_k s_k.

``BehaviorReps``: every behavior gets the same tables [h^0 | h^1 | ... | h^L] with each block
row-normalized as the release does (h / (1e-6 + sqrt(1e-6 + |h|^2))), so that any decoder can use
them; ``extra["gnmr_users"]``/``["gnmr_items"]`` hold the normalized h^1..h^L the GNMR decoder
reads. R_k and R_k^T act as one product with the bipartite lift [[0, R_k], [R_k^T, 0]] of each
behavior (values 1). The encoder's L2 part: ``reg * (|E_u|^2 + |E_i|^2 + every W1, W2, Q, K, V,
G1, G2)``, biases excluded, no 1/2.

Decoder ``gnmr`` (``predictor``):
- ``concat-fc`` (default; HEAD, the ``ablation_trans`` of commit 1bd1fdd): slot 0 is a separate
  table P (``UEmbedPred``/``IEmbedPred``, not regularized), f = relu([P | h^1 | ... | h^L] W_c +
  b_c) with W_c shared by users and items; z = mult (f_u * f_i); z' = relu(z W_r + b_r) + z;
  score = z' w_o + b_o. Not a dot product: full ranking runs the MLP on all (user, item) pairs in
  chunks of users (``score``).
- ``attentive`` (the paper's multi-order predictor, commit 4d0aef3): the L+1 vectors [P, h^1, ...]
  of u and of i; keys x W_key (one FC, no bias, regularized) in H heads, att_{l,l',h} =
  relu(<key_u^{l,h}, key_i^{l',h}>); z = mult concat_h sum_{l,l'} att (u^{l,h} * i^{l',h}) with
  the raw vectors as values (what the release does for the ECommerce and ML10M buy targets); then
  the same residual FC and output.
Loss: ``hinge`` = sum over pairs of max(0, 1 - (y_pos - y_neg)) / ``batch_size`` (the release
divides by users per batch, also for its short last batch), plus the L2 of W_c (or W_key), W_r
and w_o (part ``l2``, added to the encoder's).

Sampler ``gnmr`` (release ``trainEpoch``/``sampleTrainBatch``/``negSamp``): per epoch
``users_per_epoch`` (10,000) users of a random permutation, ``batch_size`` (32) per step; per
user ``n_pairs`` (40) positives drawn with replacement from its target (buy) training items; for
negatives, one random permutation of all items per step, of which each user keeps the first
``neg_pool`` (1000) items it did not buy, then draws ``n_pairs`` of those with replacement
(``neg_pool = 0``: uniform over all its non-bought items instead). The release crashes on a user
without target training items; [I] ``epoch_users = all`` keeps the release's permutation of all
users and gives such a user's slots weight 0 (the alternative ``with-target`` permutes only the
users with target items, as if such users were redrawn). Draws are hashes of the step's keys
(``bench.train.streams``); GNMR has no dropout, so nothing in the model draws.

Optimizer and schedule: TF1 Adam (``adam-tf1``), lr 2e-4 * 0.99^floor(step / 312) (the release's
decay_step = trnNum // batch = 10000 // 32), 120 epochs; the release tests every 3 epochs.

One training step (both predictors) equals the release's at float32 precision on a Taobao slice:
results/notes/gnmr-release.md, tests/release/test_gnmr_release.py.
"""
from __future__ import annotations

import hashlib
import inspect

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from bench.data.graphs import propagate, torch_graph
from bench.errors import ConfigError
from bench.models.base import (Batch, BehaviorReps, Decoder, Encoder, Pairs, rows, tf_l2,
                               xavier_table)
from bench.models.registry import register_decoder, register_encoder, register_model
from bench.params import DIM, Param
from bench.train import streams
from bench.train.samplers import CounterLayout, EpochOrder, InteractionIndex, register_sampler

PREDICTORS = ("concat-fc", "attentive")
EPOCH_USERS = ("all", "with-target")
# the release's normalization constants (labcode.py ``ours``)
NORM_EPS = 1e-6
# at most this many floats in one chunk's [users, items, ...] intermediate when scoring
SCORE_BUDGET = 1 << 24

REG = Param("reg", 1.0, "GNMR: L2 weight on E_u, E_i and every weight matrix (not biases, not "
            "P), whole tensors, every step (README Taobao: 1; Params.py default: 5e-2)", float,
            low=0.0, batchable=True)


def row_normalized(h: torch.Tensor) -> torch.Tensor:
    """The release's h / (1e-6 + sqrt(1e-6 + |h|^2)), row by row."""
    return h / (NORM_EPS + torch.sqrt(NORM_EPS + (h * h).sum(-1, keepdim=True)))


class Aggregator(nn.Module):
    """One ``transMsg`` call: behavior-wise memory transforms, attention over behaviors, gate."""

    def __init__(self, n_behaviors: int, dim: int, memory: int, heads: int,
                 generator: torch.Generator, device: torch.device) -> None:
        super().__init__()
        self.dim, self.memory, self.heads = dim, memory, heads
        # W1_k, each its own Xavier draw (the release makes one FC per behavior)
        self.w1 = nn.Parameter(torch.stack(
            [xavier_table(dim, memory, generator).data for _ in range(n_behaviors)]).to(device))
        self.b1 = nn.Parameter(torch.zeros(n_behaviors, memory, device=device))
        self.w2 = xavier_table(memory, dim * dim, generator, device)
        self.query = xavier_table(dim, dim, generator, device)
        self.key = xavier_table(dim, dim, generator, device)
        self.value = xavier_table(dim, dim, generator, device)
        self.gate1 = xavier_table(dim, dim // 2, generator, device)
        self.gate1_bias = nn.Parameter(torch.zeros(dim // 2, device=device))
        self.gate2 = xavier_table(dim // 2, 1, generator, device)
        self.gate2_bias = nn.Parameter(torch.zeros(1, device=device))

    def regularized(self) -> list[torch.Tensor]:
        return [self.w1, self.w2, self.query, self.key, self.value, self.gate1, self.gate2]

    def memory_transform(self, t: torch.Tensor, k: int) -> torch.Tensor:
        """m_k[n, c] = sum_j t[n, j] T[n, j, c], T = reshape(relu(t W1_k + b1_k) W2, [n, d, d])."""
        d, m = self.dim, self.memory
        a = F.relu(t @ self.w1[k] + self.b1[k])                               # [n, M]
        # W2[m, j * d + c] as [j, (m, c)]: t W2_m for every m in one product
        w2 = self.w2.reshape(m, d, d).permute(1, 0, 2).reshape(d, m * d)
        per_slot = (t @ w2).reshape(t.shape[0], m, d)                        # [n, M, d]
        return (a.unsqueeze(-1) * per_slot).sum(1)

    def forward(self, messages: list[torch.Tensor]) -> torch.Tensor:
        """Aggregate the neighbour sums t_k = A_k x of every behavior k: [n, d] each."""
        memories = [self.memory_transform(t, k) for k, t in enumerate(messages)]
        stacked = torch.stack(memories, dim=1)                                # [n, K, d]
        n, n_beh = stacked.shape[0], stacked.shape[1]
        heads, width = self.heads, self.dim // self.heads
        q = (stacked @ self.query).reshape(n, n_beh, heads, width)
        k = (stacked @ self.key).reshape(n, n_beh, heads, width)
        v = (stacked @ self.value).reshape(n, n_beh, heads, width)
        logits = torch.einsum("nkhe,nlhe->nhkl", q, k) / (self.dim / self.heads)
        att = torch.softmax(logits, dim=-1)                                   # over keys k'
        s = torch.einsum("nhkl,nlhe->nkhe", att, v).reshape(n, n_beh, self.dim)
        w = F.relu(s @ self.gate1 + self.gate1_bias) @ self.gate2 + self.gate2_bias  # [n, K, 1]
        beta = torch.softmax(w, dim=1)
        return (beta * s).sum(1)


@register_encoder("gnmr")
class GNMREncoder(Encoder):
    """GNMR's multi-behavior message passing (see the module docstring)."""

    params = (DIM, REG,
              Param("gnmr_layers", 2, "GNMR: message-passing layers L (gnn_layer)", int, low=1),
              Param("memory_size", 8, "GNMR: memory slots M of the behavior transforms (memosize)",
                    int, low=1),
              Param("att_heads", 2, "GNMR: heads of the attention over behaviors (attHead); must "
                    "divide dim", int, low=1))

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        d, L = cfg["dim"], cfg["gnmr_layers"]
        if d % cfg["att_heads"]:
            raise ConfigError(f"gnmr: dim ({d}) must be a multiple of att_heads "
                              f"({cfg['att_heads']}); change one of them")
        if d < 2:
            raise ConfigError("gnmr: dim must be at least 2 (the gate's hidden width is dim // 2)")
        # [[0, R_k], [R_k^T, 0]] with values 1 (binary matrices, no normalization): one product
        # gives R_k h_i (users' sums) and R_k^T h_u (items' sums) of a layer at once; a square
        # graph is also what propagate's rule for seed batches (vmap) expects
        self.graphs = [torch_graph(dataset, "behavior", "none", k=k, device=device)
                       for k in range(self.n_behaviors)]
        self.users = xavier_table(self.n_users, d, generator, device)
        self.items = xavier_table(self.n_items, d, generator, device)
        # aggregation 2l: layer l's user side (from items), 2l + 1: its item side (from users)
        self.aggregators = nn.ModuleList(
            [Aggregator(self.n_behaviors, d, cfg["memory_size"], cfg["att_heads"], generator,
                        device) for _ in range(2 * L)])

    def layers(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """h^0..h^L of users and of items, before normalization."""
        hu, hi = [self.users], [self.items]
        n_users = self.n_users
        for layer in range(self.cfg["gnmr_layers"]):
            both = torch.cat([hu[-1], hi[-1]], dim=0)
            sums = [propagate(graph, both) for graph in self.graphs]
            user_side, item_side = self.aggregators[2 * layer], self.aggregators[2 * layer + 1]
            hu.append(user_side([t[:n_users] for t in sums]))
            hi.append(item_side([t[n_users:] for t in sums]))
        return hu, hi

    def forward(self) -> BehaviorReps:
        hu, hi = self.layers()
        nu = [row_normalized(h) for h in hu]
        ni = [row_normalized(h) for h in hi]
        users, items = torch.cat(nu, dim=1), torch.cat(ni, dim=1)
        return BehaviorReps([users] * self.n_behaviors, [items] * self.n_behaviors,
                            {"gnmr_users": nu[1:], "gnmr_items": ni[1:],
                             "ego_users": self.users, "ego_items": self.items})

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        tensors = [self.users, self.items]
        for agg in self.aggregators:
            tensors.extend(agg.regularized())
        return {"l2": tf_l2(tensors, self.hp("reg"))}


@register_decoder("gnmr")
class GNMRDecoder(Decoder):
    """GNMR's predictor MLP with the hinge loss (see the module docstring)."""

    params = (REG,
              Param("predictor", "concat-fc", "GNMR: concat-fc (release HEAD, ablation_trans) or "
                    "attentive (the paper's multi-order attentive predictor, commit 4d0aef3)", str,
                    choices=PREDICTORS),
              Param("mult", 100.0, "GNMR: factor on f_u * f_i inside the MLP, before the "
                    "residual FC (mult)", float),
              Param("neg_pool", 1000, "GNMR sampler: each user draws its negatives from the first "
                    "neg_pool items of a per-step item permutation that it did not buy (negSamp's "
                    "sampSize); 0 = uniform over all its non-bought items", int, low=0),
              Param("epoch_users", "all", "GNMR sampler: all = a permutation of all users, those "
                    "without target training items contributing nothing; with-target = a "
                    "permutation of the users with target items only", str, choices=EPOCH_USERS))

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        if not isinstance(encoder, GNMREncoder):
            raise ConfigError("decoder 'gnmr' needs encoder 'gnmr' (it reads GNMR's layer "
                              "outputs); use model 'gnmr'")
        self.trained_behaviors = [self.target]
        d, L = cfg["dim"], cfg["gnmr_layers"]
        self.heads = cfg["att_heads"]
        self.predictor = cfg["predictor"]
        self.user_pred = xavier_table(self.n_users, d, generator, device)
        self.item_pred = xavier_table(self.n_items, d, generator, device)
        if self.predictor == "concat-fc":
            self.combine = xavier_table((L + 1) * d, d, generator, device)
            self.combine_bias = nn.Parameter(torch.zeros(d, device=device))
        else:
            self.att_key = xavier_table(d, d, generator, device)
        self.residual = xavier_table(d, d, generator, device)
        self.residual_bias = nn.Parameter(torch.zeros(d, device=device))
        self.out = xavier_table(d, 1, generator, device)
        self.out_bias = nn.Parameter(torch.zeros(1, device=device))

    # ---- features ----------------------------------------------------------------------------
    def slots(self, reps: BehaviorReps, side: str, ids: torch.Tensor | None) -> list[torch.Tensor]:
        """[P, h^1, ..., h^L] rows of ``ids`` (all rows when None) of ``side`` (users / items)."""
        table = self.user_pred if side == "users" else self.item_pred
        layers = reps.extra[f"gnmr_{side}"]
        if ids is None:
            return [table] + list(layers)
        return [rows(table, ids)] + [rows(h, ids) for h in layers]

    def features(self, reps: BehaviorReps, side: str, ids: torch.Tensor | None) -> torch.Tensor:
        """concat-fc: f = relu([P | h^1 | ... | h^L] W_c + b_c); attentive: the stacked slots
        [n, L+1, d]."""
        slots = self.slots(reps, side, ids)
        if self.predictor == "concat-fc":
            return F.relu(torch.cat(slots, dim=1) @ self.combine + self.combine_bias)
        return torch.stack(slots, dim=1)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """z' = relu(z W_r + b_r) + z; score = z' w_o + b_o (over the last axis)."""
        z = F.relu(z @ self.residual + self.residual_bias) + z
        return (z @ self.out + self.out_bias).squeeze(-1)

    def attentive_product(self, fu: torch.Tensor, fi: torch.Tensor) -> torch.Tensor:
        """mult * concat_h sum_{l,l'} relu(<key_u^{l,h}, key_i^{l',h}>) u^{l,h} * i^{l',h} for
        aligned rows fu, fi [n, L+1, d]."""
        n, slots, d = fu.shape
        heads, width = self.heads, d // self.heads
        ku = (fu @ self.att_key).reshape(n, slots, heads, width)
        ki = (fi @ self.att_key).reshape(n, slots, heads, width)
        att = F.relu(torch.einsum("nlhe,nmhe->nlmh", ku, ki))
        u = fu.reshape(n, slots, heads, width)
        i = fi.reshape(n, slots, heads, width)
        z = torch.einsum("nlmh,nlhe,nmhe->nhe", att, u, i).reshape(n, d)
        return self.cfg["mult"] * z

    def pair_scores(self, fu: torch.Tensor, fi: torch.Tensor) -> torch.Tensor:
        """Scores of aligned rows of user and item features."""
        if self.predictor == "concat-fc":
            return self.head(self.cfg["mult"] * fu * fi)
        return self.head(self.attentive_product(fu, fi))

    # ---- training ----------------------------------------------------------------------------
    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        pairs = batch.pairs.get(self.target)
        if pairs is None:
            return {}
        fu = self.features(reps, "users", pairs.users)
        pos = self.pair_scores(fu, self.features(reps, "items", pairs.pos))
        neg = self.pair_scores(fu, self.features(reps, "items", pairs.neg))
        hinge = (F.relu(1.0 - (pos - neg)) * pairs.weight).sum() / self.cfg["batch_size"]
        first = self.combine if self.predictor == "concat-fc" else self.att_key
        l2 = tf_l2([first, self.residual, self.out], self.hp("reg"))
        return {"hinge": hinge, "l2": l2}

    # ---- full ranking ------------------------------------------------------------------------
    @torch.no_grad()        # ranking only: the MLP's parameters would otherwise record a graph
    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        fu = self.features(reps, "users", users)
        fi = self.features(reps, "items", None)
        n_items = fi.shape[0]
        width = fi.shape[-1] * (fi.shape[1] ** 2 if fi.dim() == 3 else 1)
        chunk = max(1, SCORE_BUDGET // max(n_items * width, 1))
        parts = [self._score_chunk(fu[start:start + chunk], fi)
                 for start in range(0, fu.shape[0], chunk)]
        return torch.cat(parts, dim=0) if parts else fi.new_zeros(0, n_items)

    def _score_chunk(self, fu: torch.Tensor, fi: torch.Tensor) -> torch.Tensor:
        """[len(fu), n_items] scores of a chunk of users against every item."""
        mult = self.cfg["mult"]
        if self.predictor == "concat-fc":
            # z W_r = f_i (mult diag(f_u) W_r) for each user: no [users, items, d] copy of z; the
            # residual's share z w_o is mult (f_u * w_o) f_i^T
            per_user = mult * fu.unsqueeze(-1) * self.residual                 # [c, d, d]
            hidden = F.relu(torch.matmul(fi, per_user) + self.residual_bias)   # [c, I, d]
            direct = (mult * fu * self.out[:, 0]) @ fi.T                       # [c, I]
            return (hidden @ self.out).squeeze(-1) + direct + self.out_bias
        c, n_items = fu.shape[0], fi.shape[0]
        fu_rows = fu.unsqueeze(1).expand(c, n_items, *fu.shape[1:]).reshape(-1, *fu.shape[1:])
        fi_rows = fi.unsqueeze(0).expand(c, n_items, *fi.shape[1:]).reshape(-1, *fi.shape[1:])
        return self.head(self.attentive_product(fu_rows, fi_rows)).reshape(c, n_items)


class GNMRSampler:
    """The release's batches (see the module docstring): fixed shapes, ``n_pairs`` slots per
    user of the step, owner after owner."""

    def __init__(self, matrix: sp.csr_matrix, behavior: int, batch_size: int, n_pairs: int,
                 users_per_epoch: int, neg_pool: int, epoch_users: str, device: torch.device,
                 keys: torch.Tensor) -> None:
        self.index = InteractionIndex(matrix, device, "target training matrix")
        if self.index.full_users:
            raise ConfigError(f"{self.index.full_users} user(s) bought every item, so no negative "
                              "can be drawn for them; remove those users")
        degree = np.diff(sp.csr_matrix(matrix).indptr)
        ids = np.arange(matrix.shape[0]) if epoch_users == "all" else np.flatnonzero(degree > 0)
        if len(ids) == 0:
            raise ConfigError("gnmr sampler: no user has target training items")
        self.ids = torch.as_tensor(ids.astype(np.int64), device=device)
        self.behavior = behavior
        self.n_items = matrix.shape[1]
        self.n_pairs = n_pairs
        self.neg_pool = neg_pool
        self.keys = keys
        self.users = EpochOrder(keys, len(ids), users_per_epoch or len(ids), batch_size)
        self.steps_per_epoch = self.users.steps
        slots = batch_size * n_pairs
        self.owner = torch.arange(slots, device=device) // n_pairs
        self.layout = CounterLayout(device)
        self.layout.set("pos", slots, 0)
        self.layout.set("neg", slots, 1)
        if neg_pool:
            self.layout.set("item-order", self.n_items, 2)

    def start_epoch(self, epoch: int) -> bool:
        self.users.shuffle(epoch)
        return False

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass

    def pooled_negatives(self, users: torch.Tensor, owner: torch.Tensor,
                         draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """``negSamp`` + ``np.random.choice``: per user, uniform with replacement among the first
        ``neg_pool`` items of the step's item permutation that it did not buy. users [S, B]."""
        order = torch.argsort(draws["item-order"], dim=-1)                  # [S, I]
        S, B = users.shape
        bought = self.index.contains(users.unsqueeze(-1).expand(S, B, self.n_items),
                                     order.unsqueeze(1).expand(S, B, self.n_items))
        free_before = torch.cumsum((~bought).to(torch.int64), dim=-1)       # [S, B, I]
        pool = (self.n_items - self.index.degree[users]).clamp(max=self.neg_pool)   # [S, B]
        rank = streams.below(draws["neg"], pool.gather(-1, owner))         # [S, B * P]
        # the (rank + 1)-th non-bought item in the permutation's order
        where = torch.searchsorted(free_before, (rank + 1).reshape(S, B, self.n_pairs))
        where = where.reshape(S, -1).clamp_(max=self.n_items - 1)
        return order.gather(-1, where)

    def batch(self, step: torch.Tensor, global_step: torch.Tensor) -> Batch:
        slot, valid = self.users.slots(step)
        users = self.ids[slot]                                              # [S, B]
        keys = streams.derive(self.keys, streams.TAG_STEP, global_step)
        draws = self.layout.draw(keys)
        has = (self.index.degree[users] > 0).to(valid.dtype) * valid
        owner = self.owner.expand(users.shape[0], -1)
        pair_users = users.gather(-1, owner)
        pos = self.index.positives(pair_users, draws["pos"])
        if self.neg_pool:
            neg = self.pooled_negatives(users, owner, draws)
        else:
            neg = self.index.negatives(pair_users, draws["neg"])
        pairs = Pairs(pair_users, pos, neg, has.gather(-1, owner), owner)
        return Batch(users, {self.behavior: pairs}, user_weight=valid, noise=keys)


@register_sampler("gnmr")
def _gnmr_sampler(dataset, cfg: dict, device: torch.device, model, keys) -> GNMRSampler:
    missing = [k for k in ("neg_pool", "epoch_users") if k not in cfg]
    if missing:
        raise ConfigError(f"sampler 'gnmr' needs parameters {missing} (decoder 'gnmr' declares "
                          "them); use model 'gnmr' or another sampler")
    return GNMRSampler(dataset.matrices()[-1], dataset.n_behaviors - 1, cfg["batch_size"],
                       cfg["n_pairs"], cfg["users_per_epoch"], cfg["neg_pool"],
                       cfg["epoch_users"], device, keys)


def sampler_digest() -> str:
    """The sampler's code, part of the model version (the registry hashes only the encoder and
    decoder classes)."""
    source = inspect.getsource(GNMRSampler) + inspect.getsource(_gnmr_sampler)
    return hashlib.sha256(source.encode()).hexdigest()[:10]


# Release defaults (labcode.py, Params.py, README's Taobao command): d 16, M 8, H 2, L 2, mult 100,
# batch 32 users, 40 pairs per user, 10,000 users per epoch, TF1 Adam, lr 2e-4 decayed 0.99 every
# 312 steps, 120 epochs, tested every 3 epochs. [I] reg 1 (README Taobao, assumed to carry over to
# COPF's Taobao), users without buys skipped, patience of the honest protocol.
register_model(
    "gnmr", "gnmr", "gnmr",
    "GNMR: memory-transformed multi-behavior message passing with behavior attention and gate, "
    "MLP predictor, hinge loss (model-specs-table2 Part 2)",
    defaults={"dim": 16, "sampler": "gnmr", "batch_size": 32, "n_pairs": 40,
              "users_per_epoch": 10000, "lr": 2e-4, "lr_decay": 0.99, "decay_steps": 312,
              "optimizer": "adam-tf1", "epochs": 120, "eval_schedule": "every", "eval_every": 3,
              "reg": 1.0},
    version=f"1+sampler-{sampler_digest()}",
    inferred=("reg", "epoch_users", "patience"))
