"""``neumf``: Neural Matrix Factorization (NCF), single-behavior on the target behavior
(``shared/docs/model-specs-table2.md`` Part 1, "NeuMF" and "How to fit into a multi-behavior
benchmark"; reference: hexiangnan/neural_collaborative_filtering ``NeuMF.py``, reproduced by the
PyTorch port guoyang9/NCF ``model.py``).

Encoder ``neumf``: one user table [U, d + m] and one item table [I, d + m], N(0, 0.01^2). Columns
``:d`` are the GMF tables P^G, Q^G, columns ``d:`` the MLP tables P^M, Q^M (m = mlp_layers[0] / 2).
The two parts share no embedding; they are kept in one table so that a step gathers a row once.

Decoder ``neumf``: logit(u, i) = h^T [p^G_u * q^G_i || MLP([p^M_u || q^M_i])] + b, the MLP being
Dense(mlp_layers[1]) ... Dense(mlp_layers[-1]) with ReLU (``mlp_layers[0]`` is the concatenation's
width, not a layer: Keras ``layers`` [64,32,16,8]). Dense layers Glorot-uniform, biases 0, the
prediction layer LeCun-uniform U(+-sqrt(3 / fan_in)) with bias 0. Loss: mean binary cross-entropy
over the batch's rows (the port's ``BCEWithLogitsLoss``; Keras clips probabilities at 1e-7, which
only matters for |logit| > 16). No L2 (the release's ``reg_mf``/``reg_layers`` default to 0).

Sampler ``neumf``: the release's ``get_train_instances``: per epoch every target training pair
(u, i) gives 1 positive row and ``num_neg`` negative rows (u, j), j uniform among the items u did
not buy (redrawn every epoch), shuffled together, ``batch_size`` rows per step, the last partial
step kept (its surplus slots are padding of weight 0).

Full ranking uses the split first layer: W1 [p || q] = W1a p + W1b q, so the user part and the item
part of the first Dense layer are computed once per user and per item; the rest of the MLP runs on
[users, items, width] blocks whose size is bounded by ``SCORE_BLOCK_ELEMENTS``.

Pretraining (``pretrain=true``, the release's NeuMF-pre): at build time GMF alone and MLP alone are
trained with the same sampling, loss and Adam(``pretrain_lr``) for ``pretrain_epochs`` epochs each;
their tables and Dense layers are copied, and the prediction layer becomes
[0.5 h^G || 0.5 h^M] with bias 0.5 (b^G + b^M). The release keeps each pretraining run's best test
epoch; here, as in ``baselines.pretrain``, one training buy per user (with at least two) is held
out and each run keeps its best holdout HR@10 epoch (the test split is not looked at). The
NeuMF stage then starts a fresh optimizer (no Adam state carried over): the suite's Adam at ``lr``,
as the Keras release does (``learner`` adam); the paper and the port use plain SGD there, which the
suite's optimizer does not offer.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from bench.errors import ConfigError
from bench.models.base import (Batch, BehaviorReps, Decoder, Encoder, normal_table, rows,
                               weighted_mean, xavier_table)
from bench.models.registry import register_decoder, register_encoder, register_model
from bench.params import DIM, Param
from bench.train import streams
from bench.train.samplers import CounterLayout, EpochOrder, InteractionIndex, register_sampler
from baselines.pretrain import HoldoutRecall
from baselines.pretrain_data import split_holdout

# elements of one [users, items, width] block of the MLP in full ranking (64 MB in float32)
SCORE_BLOCK_ELEMENTS = 1 << 24
TABLE_STD = 0.01
HOLDOUT_CUTOFF = 10     # the release selects its pretraining epochs by HR@10

MLP_LAYERS = Param("mlp_layers", [128, 64, 32, 16],
                   "NeuMF: MLP widths, Keras-style: the first is the width of [p^M || q^M] (each "
                   "MLP table has half of it), the others are the Dense layers", list, low=1)
NUM_NEG = Param("num_neg", 4, "NeuMF sampler: negative rows per positive row", int, low=0)


def mlp_table_width(layers: list) -> int:
    """m = mlp_layers[0] / 2, with a clear error for a layout the MLP cannot have."""
    if len(layers) < 2:
        raise ConfigError(f"parameter 'mlp_layers' needs the concatenation width and at least one "
                          f"Dense layer, e.g. [128, 64, 32, 16]; got {layers!r}")
    if any(int(w) != w for w in layers) or int(layers[0]) % 2:
        raise ConfigError(f"parameter 'mlp_layers' needs integers and an even first entry (the "
                          f"two MLP tables have half of it each); got {layers!r}")
    return int(layers[0]) // 2


@register_encoder("neumf")
class NeuMFEncoder(Encoder):
    """The GMF and MLP tables side by side: users [U, d + m], items [I, d + m], N(0, 0.01^2)."""

    params = (DIM, MLP_LAYERS)

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        width = cfg["dim"] + mlp_table_width(cfg["mlp_layers"])
        self.users = normal_table(self.n_users, width, TABLE_STD, generator, device)
        self.items = normal_table(self.n_items, width, TABLE_STD, generator, device)

    def forward(self) -> BehaviorReps:
        k = self.n_behaviors
        return BehaviorReps([self.users] * k, [self.items] * k)


def lecun_uniform(rows_: int, cols: int, generator: torch.Generator,
                  device: torch.device | str) -> nn.Parameter:
    """U(+-sqrt(3 / rows)) for a [fan_in, fan_out] kernel (Keras ``lecun_uniform``; the port's
    ``kaiming_uniform_(a=1, nonlinearity='sigmoid')`` is the same law)."""
    limit = math.sqrt(3.0 / rows_)
    return nn.Parameter(((torch.rand(rows_, cols, generator=generator) * 2 - 1) * limit).to(device))


class MLPTower(nn.Module):
    """Dense layers with ReLU on [p^M || q^M]: kernels [in, out] (x @ W + b), Glorot-uniform."""

    def __init__(self, layers: list, generator: torch.Generator, device: torch.device) -> None:
        super().__init__()
        widths = [int(w) for w in layers]
        self.weights = nn.ParameterList([xavier_table(a, b, generator, device)
                                         for a, b in zip(widths[:-1], widths[1:])])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(b, device=device))
                                        for b in widths[1:]])

    def forward(self, x: torch.Tensor, skip_first: bool = False) -> torch.Tensor:
        """The tower on x; with ``skip_first`` x already is layer 1's pre-activation."""
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if not (skip_first and layer == 0):
                x = x @ weight + bias
            x = F.relu(x)
        return x


@register_decoder("neumf")
class NeuMFDecoder(Decoder):
    """GMF and MLP towers joined by one sigmoid prediction layer; BCE on the sampler's rows."""

    params = (NUM_NEG,
              Param("pretrain", False, "NeuMF: pretrain GMF and MLP alone first and start from "
                    "their weights (NeuMF-pre; prediction layer 0.5/0.5)", bool),
              Param("pretrain_epochs", 20, "NeuMF pretraining: epochs of GMF and of MLP each "
                    "(the release's README runs 20)", int, low=1),
              Param("pretrain_eval_every", 1, "NeuMF pretraining: epochs between holdout HR@10 "
                    "checks (the best check's weights are kept)", int, low=1),
              Param("pretrain_lr", 1e-3, "NeuMF pretraining: Adam learning rate", float, low=0.0,
                    low_open=True))

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        self.factors = int(cfg["dim"])
        mlp_table_width(cfg["mlp_layers"])      # a clear error for a bad layout
        self.mlp = MLPTower(cfg["mlp_layers"], generator, device)
        fan_in = self.factors + int(cfg["mlp_layers"][-1])
        self.predict = lecun_uniform(fan_in, 1, generator, device)
        self.predict_bias = nn.Parameter(torch.zeros(1, device=device))
        if cfg["pretrain"]:
            with torch.enable_grad():
                start_from_pretrained(encoder, self, dataset.matrices()[self.target], cfg,
                                      generator)

    def logits(self, user_rows: torch.Tensor, item_rows: torch.Tensor) -> torch.Tensor:
        """Logits of aligned rows of the user and item tables."""
        f = self.factors
        gmf = user_rows[..., :f] * item_rows[..., :f]
        mlp = self.mlp(torch.cat([user_rows[..., f:], item_rows[..., f:]], dim=-1))
        return (torch.cat([gmf, mlp], dim=-1) @ self.predict).squeeze(-1) + self.predict_bias

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        data = batch.extra.get("rows")
        if data is None:
            raise ConfigError("neumf trains on rows of (user, item, label): use sampler 'neumf'")
        t = self.target
        z = self.logits(rows(reps.users[t], data["users"]), rows(reps.items[t], data["items"]))
        bce = F.binary_cross_entropy_with_logits(z, data["labels"], reduction="none")
        return {"bce": weighted_mean(bce, data["weight"])}

    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        t, f = self.target, self.factors
        user_rows, items = rows(reps.users[t], users), reps.items[t]
        h_gmf, h_mlp = self.predict[:f, 0], self.predict[f:, 0]
        gmf = (user_rows[:, :f] * h_gmf) @ items[:, :f].T
        mlp = tower_scores(self.mlp, user_rows[:, f:], items[:, f:], h_mlp)
        return gmf + mlp + self.predict_bias


def tower_scores(tower: MLPTower, user_rows: torch.Tensor, item_rows: torch.Tensor,
                 head: torch.Tensor) -> torch.Tensor:
    """head . MLP([p_u || q_i]) for every user row against every item row, [n, I], with the split
    first layer (W1a p_u + b1 once per user, W1b q_i once per item) and the rest of the tower on
    blocks of users of at most ``SCORE_BLOCK_ELEMENTS`` [users, items, width] entries."""
    first, bias = tower.weights[0], tower.biases[0]
    m = user_rows.shape[1]
    user_part = user_rows @ first[:m] + bias
    item_part = item_rows @ first[m:]
    block = max(1, SCORE_BLOCK_ELEMENTS // (item_rows.shape[0] * first.shape[1]))
    return torch.cat([tower(user_part[s:s + block, None, :] + item_part[None], skip_first=True)
                      @ head for s in range(0, user_rows.shape[0], block)], dim=0)


# ---- sampler ------------------------------------------------------------------------------------
class NeuMFSampler:
    """``get_train_instances`` as fixed-shape batches: an epoch is (1 + num_neg) rows per target
    training pair in a shuffled order; row r belongs to pair r // (1 + num_neg) and is its positive
    when r % (1 + num_neg) == 0, else a negative drawn for this step."""

    def __init__(self, matrix: sp.csr_matrix, num_neg: int, batch_size: int,
                 device: torch.device, keys: torch.Tensor) -> None:
        self.index = InteractionIndex(matrix, device, "target training matrix")
        self.group = 1 + int(num_neg)
        self.n_rows = int(self.index.keys.numel()) * self.group
        if self.n_rows == 0:
            raise ConfigError("neumf: the target behavior has no training interaction")
        self.keys = keys
        self.records = EpochOrder(keys, self.n_rows, self.n_rows, batch_size)
        self.steps_per_epoch = self.records.steps
        self.layout = CounterLayout(device)
        self.layout.set("neg", batch_size, 0)

    def start_epoch(self, epoch: int) -> bool:
        self.records.shuffle(epoch)
        return False

    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        pass

    def batch(self, step: torch.Tensor, global_step: torch.Tensor) -> Batch:
        keys = streams.derive(self.keys, streams.TAG_STEP, global_step)
        draws = self.layout.draw(keys)
        records, weight = self.records.slots(step)
        pair = torch.div(records, self.group, rounding_mode="floor")
        positive = (records - pair * self.group) == 0
        codes = self.index.keys.index_select(0, pair.reshape(-1)).view(pair.shape)
        users = torch.div(codes, self.index.n_items, rounding_mode="floor")
        items = torch.where(positive, codes - users * self.index.n_items,
                            self.index.negatives(users, draws["neg"]))
        data = {"users": users, "items": items, "labels": positive.to(torch.float32),
                "weight": weight}
        return Batch(users, {}, extra={"rows": data}, user_weight=weight, noise=keys)


@register_sampler("neumf")
def _neumf_sampler(dataset, cfg: dict, device: torch.device, model, keys) -> NeuMFSampler:
    return NeuMFSampler(dataset.matrices()[-1], cfg["num_neg"], cfg["batch_size"], device, keys)


# ---- pretraining (NeuMF-pre) --------------------------------------------------------------------
def training_rows(matrix: sp.csr_matrix, num_neg: int, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One epoch of ``get_train_instances``: every pair, ``num_neg`` negatives each drawn uniformly
    with rejection of the user's training items, all rows shuffled (users, items, labels)."""
    coo = sp.csr_matrix(matrix).tocoo()
    n_items = matrix.shape[1]
    pos_users = torch.as_tensor(coo.row.astype(np.int64))
    pos_items = torch.as_tensor(coo.col.astype(np.int64))
    users = pos_users.repeat_interleave(num_neg)
    known = torch.sort(pos_users * n_items + pos_items).values
    negatives = torch.randint(n_items, users.shape, generator=generator)
    while len(known):   # redraw the negatives that hit a training item (the release's while loop)
        codes = users * n_items + negatives
        hit = known[torch.searchsorted(known, codes).clamp_(max=len(known) - 1)] == codes
        if not bool(hit.any()):
            break
        negatives[hit] = torch.randint(n_items, (int(hit.sum()),), generator=generator)
    all_users = torch.cat([pos_users, users])
    all_items = torch.cat([pos_items, negatives])
    labels = torch.cat([torch.ones(coo.nnz), torch.zeros(len(users))])
    order = torch.randperm(len(all_users), generator=generator)
    return all_users[order], all_items[order], labels[order]


class AloneModel(nn.Module):
    """GMF alone (``part='gmf'``) or MLP alone (``part='mlp'``) with its own prediction layer,
    as GMF.py / MLP.py build them (the same initializers as NeuMF's parts)."""

    def __init__(self, part: str, n_users: int, n_items: int, cfg: dict,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.part = part
        width = int(cfg["dim"]) if part == "gmf" else mlp_table_width(cfg["mlp_layers"])
        self.users = normal_table(n_users, width, TABLE_STD, generator)
        self.items = normal_table(n_items, width, TABLE_STD, generator)
        self.mlp = MLPTower(cfg["mlp_layers"], generator, torch.device("cpu")) \
            if part == "mlp" else None
        fan_in = width if part == "gmf" else int(cfg["mlp_layers"][-1])
        self.predict = lecun_uniform(fan_in, 1, generator, "cpu")
        self.predict_bias = nn.Parameter(torch.zeros(1))

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        p, q = rows(self.users, users), rows(self.items, items)
        h = p * q if self.mlp is None else self.mlp(torch.cat([p, q], dim=-1))
        return (h @ self.predict).squeeze(-1) + self.predict_bias

    def scorer(self):
        """Full-ranking logits, for the holdout evaluation."""
        @torch.no_grad()
        def score(users: torch.Tensor) -> torch.Tensor:
            p = rows(self.users, users)
            if self.mlp is None:
                return (p * self.predict[:, 0]) @ self.items.T + self.predict_bias
            return tower_scores(self.mlp, p, self.items, self.predict[:, 0]) + self.predict_bias
        return score


def fit_alone(model: AloneModel, matrix: sp.csr_matrix, cfg: dict, generator: torch.Generator,
              holdout: HoldoutRecall | None = None) -> list[tuple[int, float]]:
    """The release's GMF.py / MLP.py loop: fresh rows every epoch, Adam, mean BCE per batch; it
    keeps the weights of the best evaluation (the release: best test HR; here HR@10 on a
    holdout of the training buys, every ``pretrain_eval_every`` epochs and after the last).
    Returns the (epoch, holdout HR@10) curve."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["pretrain_lr"])
    size, epochs = int(cfg["batch_size"]), int(cfg["pretrain_epochs"])
    best, best_state, curve = -math.inf, None, []
    for epoch in range(1, epochs + 1):
        users, items, labels = training_rows(matrix, int(cfg["num_neg"]), generator)
        for s in range(0, len(users), size):
            optimizer.zero_grad()
            z = model.logits(users[s:s + size], items[s:s + size])
            F.binary_cross_entropy_with_logits(z, labels[s:s + size]).backward()
            optimizer.step()
        if holdout is None or (epoch % int(cfg["pretrain_eval_every"]) and epoch != epochs):
            continue
        hit_rate = holdout.recall(model)
        curve.append((epoch, hit_rate))
        if hit_rate > best:
            best, best_state = hit_rate, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return curve


def start_from_pretrained(encoder: NeuMFEncoder, decoder: NeuMFDecoder, matrix: sp.csr_matrix,
                          cfg: dict, generator: torch.Generator) -> None:
    """NeuMF-pre: train GMF alone, then MLP alone, on the training buys minus a holdout of one
    buy per user (``baselines.pretrain_data.split_holdout``), and load both into the model. Their
    random stream is a child generator seeded by one draw from ``generator``."""
    stream = torch.Generator()
    stream.manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=generator)))
    train, held = split_holdout(matrix, stream)
    holdout = HoldoutRecall(train, held, HOLDOUT_CUTOFF, torch.device("cpu")) if held.nnz else None
    n_users, n_items = matrix.shape
    gmf = AloneModel("gmf", n_users, n_items, cfg, stream)
    mlp = AloneModel("mlp", n_users, n_items, cfg, stream)
    fit_alone(gmf, train, cfg, stream, holdout)
    fit_alone(mlp, train, cfg, stream, holdout)
    load_pretrained(encoder, decoder, gmf, mlp)


@torch.no_grad()
def load_pretrained(encoder: NeuMFEncoder, decoder: NeuMFDecoder, gmf: AloneModel,
                    mlp: AloneModel) -> None:
    """``load_pretrain_model``: copy GMF's and MLP's tables and Dense layers, halve both halves of
    the prediction layer and average the two biases, so that the loaded NeuMF's logit is
    0.5 (GMF logit + MLP logit)."""
    f = decoder.factors
    encoder.users[:, :f].copy_(gmf.users)
    encoder.items[:, :f].copy_(gmf.items)
    encoder.users[:, f:].copy_(mlp.users)
    encoder.items[:, f:].copy_(mlp.items)
    for ours, theirs in zip(decoder.mlp.parameters(), mlp.mlp.parameters()):
        ours.copy_(theirs)
    decoder.predict.copy_(0.5 * torch.cat([gmf.predict, mlp.predict], dim=0))
    decoder.predict_bias.copy_(0.5 * (gmf.predict_bias + mlp.predict_bias))


# [I] spec "Benchmark fit": d = 64 for all four tables (the release's f is 8, its layers
# [64,32,16,8]), Keras-style tower [128,64,32,16]; from the release: 4 negatives, Adam 1e-3,
# batch 256, 100 epochs, no L2, no pretraining, no learning-rate decay. The evaluation cadence
# is ours (the release evaluates every epoch and keeps the best test epoch).
register_model(
    "neumf", "neumf", "neumf",
    "NeuMF (NCF): GMF + MLP towers, BCE with 4 sampled negatives, single-behavior on the target "
    "(model-specs-table2 NeuMF)",
    defaults={"dim": 64, "mlp_layers": [128, 64, 32, 16], "num_neg": 4, "sampler": "neumf",
              "batch_size": 256, "lr": 1e-3, "lr_decay": 1.0, "epochs": 100,
              "eval_schedule": "every", "eval_every": 5},
    inferred=("dim", "mlp_layers", "eval_schedule", "eval_every"))
