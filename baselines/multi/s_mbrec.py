"""``s-mbrec``: S-MBRec, self-supervised multi-behavior recommendation (model-specs-table2.md
Part 3, section "S-MBRec"; release ``GuShuyun/MBRec`` @ bf4519a, ``main.py`` +
``modules/LightGCN.py``, whose class ``LightGCN`` is S-MBRec).

Encoder ``s-mbrec``: one pair of tables E_u, E_i (Xavier-uniform) shared by K behavior GCNs. Per
behavior k, LightGCN hops on D^-1/2 A_k D^-1/2 (binary bipartite graph, no self-loops, no weights,
no activation): H_k^0 = [E_u; E_i], H_k^l = Â_k H_k^(l-1); ``users[k]``/``items[k]`` are the
mean over hops 0..L of H_k (z̄_k). ``extra`` holds the hop-0 tables (for the L2 term).

Decoder ``s-mbrec``, on a batch of buy records (u, i+) with ``n_negatives`` (5) negatives each:
- alpha_k(u) = softmax_k(w_k r_k(u)) with r_k(u) = n_k(u) / sum_k' n_k'(u), u's share of its
  training interactions (the release reads these shares from ``type_num.txt``, whose script is not
  released; spec [I]); w trainable, one entry per behavior;
- u = (sum_k alpha_k(u) z̄_k[u]) W_u; i+ = [z̄_1 ‖ ... ‖ z̄_K][i+] W+; each negative the same with
  its own W- (not tied to W+); s = <u, i>;
- ``rec`` = mean over the batch of log(1 + sum_j exp(s-_j - s+)) (computed as a logsumexp with a 0
  entry: the same value without the overflow of the release's exp);
- ``l2`` = reg * ½(|E_u[u]|² + K|E_i[i+]|² + K sum_j |E_i[i-_j]|²) / B: the hop-0 rows (the
  release's K copies of the item row in the concatenation give the factor K);
- star contrastive terms around the target behavior on z̄ (no alpha, no W), batch users and
  positive items: C_tau(a, b) = ½[CE(M) + CE(M^T)], M_xy = exp(cos(a_x, b_y) / tau),
  CE(M) = -mean_x log(M_xx / (sum_y M_xy + 1e-8)); the positive of a row is the same batch row (a
  row holding the same user or item elsewhere counts as a negative, as the release's ``eye(B)``).
  One user term and one item term per auxiliary behavior, each a loss part ``cl_users_<name>`` /
  ``cl_items_<name>`` already multiplied by ``cl_weight`` (lambda 0.2): J = rec + l2 + lambda L_cl.

K behaviors (the release hard-codes buy, cart, pv; spec "Adaptation" [I]): alpha runs over all K,
W+- are [K d, d] with the behaviors concatenated upstream -> target (a row permutation of the
release's buy, cart, pv blocks), and each auxiliary behavior contributes C_tau_u(k)(ū_buy, ū_k) +
C_tau_i(ī_buy, ī_k), tau_u = ``tau_user_view`` (1.0) for the view-like behaviors (pv, view, click)
and ``tau_user_other`` (0.5) for the others (cart, Tmall's collect, JD's favourite), tau_i 0.2;
w starts at 0.4 for buy and 0.6 / (K - 1) for each auxiliary (the release's (0.4, 0.3, 0.3)).

Scores (``score``): ``release-eval`` (default) is what the release's ``generate()`` ranks with,
[ū_1 ‖ ... ‖ ū_K] [ī_1 ‖ ... ‖ ī_K]^T = sum_k <ū_k, ī_k>, without alpha and without W;
``training`` ranks with the training score <u W_u, i W+> (every item as a positive).

Projections (``projection_init``): the release makes W_u, W+, W- with ``torch.FloatTensor(shape)``,
i.e. uninitialized memory: zeros where fresh pages back them, garbage otherwise (after loading
Beibei at d 256 it held a non-finite entry and the release's first loss was NaN; see
results/notes/s-mbrec-release.md). ``xavier`` (default, spec [I]) draws them Xavier-uniform;
``zeros`` is the fresh-page case, under which every training score is 0 and ``rec`` gives no
gradient (only the contrastive and L2 terms train what the evaluation score reads).

Sampler ``s-mbrec``: each epoch every buy training record once, reshuffled, ``batch_size`` (4096)
per step, the tail a smaller last batch (padding slots weigh 0 in every mean and are left out of
the contrastive denominators; with fewer records than a batch, one step of all of them, where
the release's loop takes none); per record ``n_negatives`` uniform items outside the user's buy
training set (the release draws 320 and uses the first 5).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.data.graphs import propagate, torch_graph
from bench.errors import ConfigError
from bench.models.base import (Batch, BehaviorReps, Decoder, Encoder, Pairs, rows, weighted_mean,
                               xavier_table)
from bench.models.registry import register_decoder, register_encoder, register_model
from bench.params import DIM, Param
from bench.train import streams
from bench.train.samplers import CounterLayout, EpochOrder, InteractionIndex, register_sampler

VIEW_LIKE = ("pv", "view", "click")
SCORES = ("release-eval", "training")
PROJECTION_INITS = ("xavier", "zeros")
TARGET_WEIGHT_INIT = 0.4


@register_encoder("s-mbrec")
class SMBRecEncoder(Encoder):
    """K LightGCN propagations sharing one pair of tables; per behavior the mean over hops."""

    params = (DIM,
              Param("layers", 3, "S-MBRec: LightGCN hops per behavior graph (context_hops)", int,
                    low=0),)

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        self.graphs = [torch_graph(dataset, "behavior", "symmetric", k=k, device=device)
                       for k in range(self.n_behaviors)]
        self.users = xavier_table(self.n_users, cfg["dim"], generator, device)
        self.items = xavier_table(self.n_items, cfg["dim"], generator, device)

    def forward(self) -> BehaviorReps:
        ego = torch.cat([self.users, self.items], dim=0)
        hops = self.cfg["layers"]
        users, items = [], []
        for graph in self.graphs:
            layer, total = ego, ego
            for _ in range(hops):
                layer = propagate(graph, layer)
                total = total + layer
            mean = total / (hops + 1)
            users.append(mean[:self.n_users])
            items.append(mean[self.n_users:])
        return BehaviorReps(users, items, {"ego_users": self.users, "ego_items": self.items})


def behavior_shares(dataset) -> torch.Tensor:
    """[U, K]: r_k(u) = n_k(u) / sum_k' n_k'(u), u's share of its training interactions per
    behavior (0 for a user without any)."""
    counts = np.stack([np.diff(m.indptr) for m in dataset.matrices()], axis=1).astype(np.float64)
    total = counts.sum(axis=1, keepdims=True)
    return torch.from_numpy(np.where(total > 0, counts / np.maximum(total, 1.0), 0.0)
                            .astype(np.float32))


def initial_behavior_weights(names: tuple[str, ...], given: list) -> list[float]:
    """w's start: ``given`` (one per behavior, upstream -> target), or 0.4 for the target and
    0.6 / (K - 1) for each auxiliary behavior (the release's (0.4, 0.3, 0.3) for buy, cart, pv)."""
    k = len(names)
    if given:
        if len(given) != k:
            raise ConfigError(f"s-mbrec: parameter 'behavior_weights_init' needs one entry per "
                              f"behavior ({k}: {', '.join(names)}), got {given!r}; or [] for "
                              "the default")
        return [float(v) for v in given]
    if k == 1:
        return [TARGET_WEIGHT_INIT]
    return [(1.0 - TARGET_WEIGHT_INIT) / (k - 1)] * (k - 1) + [TARGET_WEIGHT_INIT]


def contrast(a: torch.Tensor, b: torch.Tensor, tau: float, weight: torch.Tensor) -> torch.Tensor:
    """C_tau(a, b) = ½[CE(M) + CE(M^T)] with M_xy = exp(cos(a_x, b_y) / tau) and identity positives;
    rows and columns of weight 0 (padding) take no part (their rows are computed but weigh 0)."""
    norms = torch.mm(a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True).t())
    sim = torch.exp(torch.mm(a, b.t()) / norms / tau)
    positive = torch.diagonal(sim)
    kept = sim * weight[None, :]          # padding columns out of every denominator
    forward = -torch.log(positive / (kept.sum(dim=1) + 1e-8))
    kept_t = sim.t() * weight[None, :]
    backward = -torch.log(positive / (kept_t.sum(dim=1) + 1e-8))
    return (weighted_mean(forward, weight) + weighted_mean(backward, weight)) / 2


@register_decoder("s-mbrec")
class SMBRecDecoder(Decoder):
    """Behavior-weighted user, projected items, K-negative softmax loss, L2, star contrast."""

    params = (Param("reg", 1e-4, "S-MBRec: L2 weight of ½(|E_u[u]|² + K|E_i[i+]|² + K sum_j "
                    "|E_i[i-_j]|²) / batch on the hop-0 rows", float, low=0.0, batchable=True),
              Param("cl_weight", 0.2, "S-MBRec: weight lambda of the contrastive terms", float,
                    low=0.0, batchable=True),
              Param("n_negatives", 5, "S-MBRec: negatives per buy record (K of the K-pair loss)",
                    int, low=1),
              Param("tau_user_view", 1.0, "S-MBRec: user contrast temperature against view-like "
                    "behaviors (pv, view, click)", float, low=0.0, low_open=True),
              Param("tau_user_other", 0.5, "S-MBRec: user contrast temperature against the other "
                    "auxiliary behaviors (cart, collect, favourite)", float, low=0.0,
                    low_open=True),
              Param("tau_item", 0.2, "S-MBRec: item contrast temperature", float, low=0.0,
                    low_open=True),
              Param("behavior_weights_init", [], "S-MBRec: initial w, one per behavior (upstream "
                    "-> target); [] = 0.4 for the target, 0.6/(K-1) for each auxiliary", list),
              Param("projection_init", "xavier", "S-MBRec: W_u, W+, W- start Xavier-uniform, or "
                    "zeros (the release leaves them uninitialized)", str,
                    choices=PROJECTION_INITS),
              Param("score", "release-eval", "S-MBRec: ranking score: release-eval (sum_k "
                    "<ū_k, ī_k>, the release's generate()) or training (<u W_u, i W+>)", str,
                    choices=SCORES))

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        self.trained_behaviors = [self.target]
        self.behavior_names = tuple(dataset.behaviors)
        d, k = cfg["dim"], self.n_behaviors
        self.behavior_weight = nn.Parameter(torch.tensor(
            initial_behavior_weights(self.behavior_names, cfg["behavior_weights_init"]),
            device=device))
        if cfg["projection_init"] == "xavier":
            self.user_projection = xavier_table(d, d, generator, device)
            self.pos_projection = xavier_table(k * d, d, generator, device)
            self.neg_projection = xavier_table(k * d, d, generator, device)
        else:
            self.user_projection = nn.Parameter(torch.zeros(d, d, device=device))
            self.pos_projection = nn.Parameter(torch.zeros(k * d, d, device=device))
            self.neg_projection = nn.Parameter(torch.zeros(k * d, d, device=device))
        self.register_buffer("shares", behavior_shares(dataset).to(device), persistent=False)
        self.user_taus = [cfg["tau_user_view"] if name.lower() in VIEW_LIKE
                          else cfg["tau_user_other"] for name in self.behavior_names]

    def users_projected(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        """u = (sum_k alpha_k(u) z̄_k[u]) W_u for ``users``."""
        alpha = torch.softmax(rows(self.shares, users) * self.behavior_weight, dim=-1)
        mixed = None
        for k in range(self.n_behaviors):
            term = alpha[:, k:k + 1] * rows(reps.users[k], users)
            mixed = term if mixed is None else mixed + term
        return mixed @ self.user_projection

    @staticmethod
    def items_concatenated(reps: BehaviorReps, items: torch.Tensor) -> torch.Tensor:
        """[z̄_1 ‖ ... ‖ z̄_K][items]: [len(items), K d]."""
        return torch.cat([rows(table, items) for table in reps.items], dim=-1)

    def contrastive_terms(self, reps: BehaviorReps, pairs: Pairs) -> dict[str, torch.Tensor]:
        """The unweighted star terms: per auxiliary behavior k, C_tau_u(k)(ū_buy, ū_k) and
        C_tau_i(ī_buy, ī_k) on the batch's users and positive items."""
        t, weight = self.target, pairs.weight
        u_t, i_t = rows(reps.users[t], pairs.users), rows(reps.items[t], pairs.pos)
        terms = {}
        for k, name in enumerate(self.behavior_names[:-1]):
            terms[f"cl_users_{name}"] = contrast(u_t, rows(reps.users[k], pairs.users),
                                                 self.user_taus[k], weight)
            terms[f"cl_items_{name}"] = contrast(i_t, rows(reps.items[k], pairs.pos),
                                                 self.cfg["tau_item"], weight)
        return terms

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        pairs = batch.pairs.get(self.target)
        if pairs is None:
            return {}
        negatives = batch.extra["negatives"]                      # [B, n]
        n_neg = negatives.shape[-1]
        u = self.users_projected(reps, pairs.users)               # [B, d]
        pos = self.items_concatenated(reps, pairs.pos) @ self.pos_projection
        neg = (self.items_concatenated(reps, negatives.reshape(-1)) @ self.neg_projection
               ).view(*negatives.shape, -1)                       # [B, n, d]
        s_pos = (u * pos).sum(-1)
        s_neg = (u.unsqueeze(1) * neg).sum(-1)
        margins = torch.cat([torch.zeros_like(s_pos).unsqueeze(1), s_neg - s_pos.unsqueeze(1)],
                            dim=1)
        rec = weighted_mean(torch.logsumexp(margins, dim=1), pairs.weight)
        ego_u, ego_i = reps.extra["ego_users"], reps.extra["ego_items"]
        k = self.n_behaviors
        squares = (rows(ego_u, pairs.users).pow(2).sum(-1)
                   + k * rows(ego_i, pairs.pos).pow(2).sum(-1)
                   + k * rows(ego_i, negatives.reshape(-1)).pow(2).sum(-1).view(-1, n_neg).sum(-1))
        l2 = self.hp("reg") * 0.5 * weighted_mean(squares, pairs.weight)
        parts = {"rec": rec, "l2": l2}
        for name, value in self.contrastive_terms(reps, pairs).items():
            parts[name] = self.hp("cl_weight") * value
        return parts

    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        if self.cfg["score"] == "training":
            items = torch.cat(reps.items, dim=-1) @ self.pos_projection
            return self.users_projected(reps, users) @ items.T
        user_side = torch.cat([rows(table, users) for table in reps.users], dim=-1)
        return user_side @ torch.cat(reps.items, dim=-1).T


class SMBRecSampler:
    """Every buy training record once per epoch, reshuffled, ``batch_size`` per step (the tail a
    padded last batch); ``n_negatives`` uniform items per record outside the user's buys, in
    ``Batch.extra["negatives"]`` ([..., B, n]; ``Pairs.neg`` holds the first)."""

    def __init__(self, dataset, batch_size: int, n_negatives: int, device: torch.device,
                 keys: torch.Tensor) -> None:
        buys = dataset.matrices()[-1]
        self.target = dataset.n_behaviors - 1
        self.index = InteractionIndex(buys, device, "target training matrix")
        self.n_negatives = n_negatives
        self.keys = keys
        n_records = int(buys.nnz)
        # fewer records than a batch: one step of exactly those (no padded B x B contrast)
        slots = max(1, min(batch_size, n_records))
        self.records = EpochOrder(keys, n_records, n_records, slots)
        self.steps_per_epoch = self.records.steps
        self.layout = CounterLayout(device)
        self.layout.set("negatives", slots * n_negatives, 0)

    def start_epoch(self, epoch: int) -> bool:
        self.records.shuffle(epoch)
        return False

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass

    def batch(self, step: torch.Tensor, global_step: torch.Tensor) -> Batch:
        records, weight = self.records.slots(step)
        codes = self.index.keys[records]
        users = torch.div(codes, self.index.n_items, rounding_mode="floor")
        pos = codes - users * self.index.n_items
        keys = streams.derive(self.keys, streams.TAG_STEP, global_step)
        draws = self.layout.draw(keys)
        owners = users[..., None].expand(*users.shape, self.n_negatives).reshape(
            *users.shape[:-1], -1)
        negatives = self.index.negatives(owners, draws["negatives"]).view(
            *users.shape, self.n_negatives)
        pairs = Pairs(users, pos, negatives[..., 0], weight)
        return Batch(users, {self.target: pairs}, {"negatives": negatives}, user_weight=weight,
                     noise=keys)


@register_sampler("s-mbrec")
def _s_mbrec_sampler(dataset, cfg: dict, device: torch.device, model, keys) -> SMBRecSampler:
    return SMBRecSampler(dataset, cfg["batch_size"], cfg["n_negatives"], device, keys)


# Release settings (utils/parser.py, main.py): d 256, 3 hops, Adam lr 1e-4 without decay, batch 4096
# buy records, l2 1e-4, 5 negatives, lambda 0.2, tau (1.0, 0.5, 0.2, 0.2), up to 200 epochs, tested
# after every epoch, stopping after 11 epochs without a new best (count > 10). [I] (spec
# "Adaptation"): Xavier projections, the K-behavior generalization, the shares r_k(u), and the
# selection on validation under the benchmark's protocol.
register_model(
    "s-mbrec", "s-mbrec", "s-mbrec",
    "S-MBRec: per-behavior LightGCNs on shared tables, behavior-weighted user, K-negative loss, "
    "star contrastive learning around buy (spec Table 2 Part 3)",
    defaults={"sampler": "s-mbrec", "batch_size": 4096, "dim": 256, "lr": 1e-4, "lr_decay": 1.0,
              "epochs": 200, "eval_schedule": "every", "eval_every": 1, "patience": 11},
    inferred=("projection_init", "behavior_weights_init", "tau_user_other"))
