"""``nmtr``: Neural Multi-Task Recommendation (model-specs-table2.md Part 1, "NMTR" and "How to fit
into a multi-behavior benchmark"; reference ``tsinghua-fib-lab/NMTR`` @ 2feb863, ``Main_MTL.py
--model Multi_GMF``).

Every behavior is a task on shared embeddings, the behaviors taken in the dataset's chain order
(upstream -> target, any K):

- encoder ``nmtr``: user table P and item table Q (E = ``dim``), truncated normal std 0.01;
- decoder ``nmtr``: per behavior t a GMF tower with a hidden ReLU layer,
  ``g_t = relu((p_u * q_i) W_t) h_t`` (W_t E x E without bias, h_t E x 1, both U(+-sqrt(3/E))),
  and a shared item bias b (zeros). Logits cascade along the chain: the release's form
  (``cascade=halving``) ``o_1 = g_1 + b_i``, ``o_t = (g_t + o_{t-1}) / 2 + b_i``; the paper's
  plain sum (``cascade=sum``) ``o_t = sum_{t' <= t} g_t' + b_i``. The ranking score is o_K.
- loss: ``sum_t lambda_t * BCE_t`` with the release's BCE on probabilities
  ``-[y log(s + 1e-7) + (1 - y) log(1 - s + 1e-7)]``, s = sigmoid(o_t), the mean over the batch's
  rows; plus the release's L2 ``reg * (|P|^2 + sum_t |W_t|^2) + item_reg * |Q|^2`` on the whole
  tables (both 0 by default, as in the release).

Sampler ``nmtr``: the rows of an epoch are every pair (u, i) with some behavior (the union) once,
each with ``n_negatives`` negative rows (u, j), j uniform among the items u has no behavior with,
label 0 for every task; shuffled, ``batch_size`` rows per step, the remainder dropped as in the
release (an epoch smaller than one batch is one padded batch). A union pair's labels are the
behavior-chain closure ``y_t = max_{t' >= t} R_t'[u, i]`` (``labels=chain``: a buy counts as
cart and view; on nested data such as Beibei this is the release's count map) or the raw
``y_t = R_t[u, i]`` (``labels=raw``). The release's count map ``S = sum_t R_t -> label`` is not
offered: it mislabels non-nested data (Taobao, Tmall, spec "Labels").

Optimizer: the release's TF1 Adagrad (``optimizer=adagrad-tf1``, ``bench.train.adagrad``), lr
0.01, initial accumulator 1e-8, no decay; ``--set optimizer=adam`` trains with PyTorch's Adam.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError
from bench.models.base import Batch, BehaviorReps, Decoder, Encoder, rows, weighted_mean
from bench.models.registry import register_decoder, register_encoder, register_model
from bench.params import DIM, Param
from bench.train import streams
from bench.train.samplers import CounterLayout, EpochOrder, InteractionIndex, register_sampler

EPSILON = 1e-7          # tf.losses.log_loss's epsilon, inside both logarithms
INIT_STD = 0.01         # the release's truncated normal for P and Q
# Elements of one scoring chunk's largest intermediate ([users, items, K * E] floats).
SCORE_CHUNK_ELEMENTS = 1 << 25

CASCADES = ("halving", "sum")
LABEL_RULES = ("chain", "raw")

NMTR_LOSS_WEIGHTS = Param("loss_weights", [1 / 3, 1 / 3, 1 / 3],
                          "NMTR: task weights lambda_t, one per behavior in chain order: loss = "
                          "sum_t lambda_t * BCE_t", list, low=0.0, length="behaviors",
                          batchable=True)
CASCADE = Param("cascade", "halving", "NMTR: logit cascade along the chain: halving (release: "
                "o_t = (g_t + o_{t-1})/2 + b_i) or sum (paper: o_t = sum_{t'<=t} g_t' + b_i)",
                str, choices=CASCADES)
LABELS = Param("labels", "chain", "NMTR: task labels of a union pair: chain (y_t = max over "
               "t' >= t of R_t') or raw (y_t = R_t)", str, choices=LABEL_RULES)
N_NEGATIVES = Param("n_negatives", 4, "NMTR: negative rows per union pair and epoch, uniform "
                    "among the items the user has no behavior with", int, low=0)
REG = Param("reg", 0.0, "NMTR: L2 weight r0 on the whole P and every W_t, every step", float,
            low=0.0, batchable=True)
INITIAL_ACCUMULATOR = Param("initial_accumulator", 1e-8, "NMTR: the adagrad-tf1 optimizer's "
                            "starting squared-gradient sum (the release's 1e-8; TF1's default "
                            "0.1)", float, low=0.0, low_open=True)
ITEM_REG = Param("item_reg", 0.0, "NMTR: L2 weight r1 on the whole Q, every step", float,
                 low=0.0, batchable=True)


def uniform_weight(shape: tuple[int, ...], limit: float, generator: torch.Generator,
                   device: torch.device) -> nn.Parameter:
    """A U(-limit, limit) parameter (TF's random_uniform)."""
    return nn.Parameter(((torch.rand(*shape, generator=generator) * 2 - 1) * limit).to(device))


def truncated_normal_table(rows_: int, cols: int, generator: torch.Generator,
                           device: torch.device) -> nn.Parameter:
    """TF's truncated_normal(stddev=0.01): N(0, 0.01^2) restricted to two standard deviations."""
    data = torch.empty(rows_, cols)
    nn.init.trunc_normal_(data, 0.0, INIT_STD, -2 * INIT_STD, 2 * INIT_STD, generator=generator)
    return nn.Parameter(data.to(device))


def cascade_coefficients(n_behaviors: int, cascade: str) -> tuple[list[float], float]:
    """(c, beta) with o_K = sum_t c_t g_t + beta * b_i, unrolled from the cascade's recursion."""
    if cascade not in CASCADES:
        raise ConfigError(f"parameter 'cascade' must be one of {list(CASCADES)}, got {cascade!r}")
    if cascade == "sum":
        return [1.0] * n_behaviors, 1.0
    coefficients, beta = [1.0], 1.0
    for _ in range(1, n_behaviors):
        coefficients = [c / 2 for c in coefficients] + [0.5]
        beta = beta / 2 + 1.0
    return coefficients, beta


def chain_labels(matrices: list[sp.csr_matrix], union: sp.csr_matrix, rule: str) -> np.ndarray:
    """[nnz(union), K] float32 task labels of the union's pairs in its sorted (user, item) order:
    ``raw`` y_t = R_t[u, i]; ``chain`` y_t = max_{t' >= t} R_t'[u, i]."""
    if rule not in LABEL_RULES:
        raise ConfigError(f"parameter 'labels' must be one of {list(LABEL_RULES)}, got {rule!r}")
    u = sp.csr_matrix(union)
    u.sort_indices()
    n_items = u.shape[1]
    user_of = np.repeat(np.arange(u.shape[0], dtype=np.int64), np.diff(u.indptr))
    codes = user_of * n_items + u.indices.astype(np.int64)
    raw = np.zeros((len(codes), len(matrices)), dtype=np.float32)
    for t, matrix in enumerate(matrices):
        m = sp.coo_matrix(matrix)
        own = np.unique(m.row.astype(np.int64) * n_items + m.col.astype(np.int64))
        raw[:, t] = np.isin(codes, own, assume_unique=True)
    if rule == "raw":
        return raw
    # running maximum from the target back to the first behavior
    return np.maximum.accumulate(raw[:, ::-1], axis=1)[:, ::-1].copy()


@register_encoder("nmtr")
class NMTREncoder(Encoder):
    """The shared tables P (users) and Q (items), the same for every behavior."""

    params = (DIM,)

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        self.users = truncated_normal_table(self.n_users, cfg["dim"], generator, device)
        self.items = truncated_normal_table(self.n_items, cfg["dim"], generator, device)

    def forward(self) -> BehaviorReps:
        k = self.n_behaviors
        return BehaviorReps([self.users] * k, [self.items] * k,
                            {"ego_users": self.users, "ego_items": self.items})


@register_decoder("nmtr")
class NMTRDecoder(Decoder):
    """Per-behavior ReLU GMF towers, the cascade of logits, the weighted BCE of every task."""

    params = (DIM, NMTR_LOSS_WEIGHTS, CASCADE, LABELS, N_NEGATIVES, REG, ITEM_REG,
              INITIAL_ACCUMULATOR)

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        d, k = cfg["dim"], self.n_behaviors
        limit = (3.0 / d) ** 0.5        # the release's sqrt(3 / E) (true division)
        self.tower_weights = uniform_weight((k, d, d), limit, generator, device)   # W_t
        self.tower_outputs = uniform_weight((k, d), limit, generator, device)      # h_t
        self.item_bias = nn.Parameter(torch.zeros(self.n_items, device=device))    # b
        self.cascade = cfg["cascade"]
        self.coefficients, self.bias_coefficient = cascade_coefficients(k, self.cascade)
        self.behavior_names = list(dataset.behaviors)

    def towers(self, z: torch.Tensor) -> torch.Tensor:
        """g_t for every behavior: z [..., d] -> [..., K]."""
        hidden = F.relu(torch.einsum("...d,kde->...ke", z, self.tower_weights))
        return (hidden * self.tower_outputs).sum(-1)

    def logits(self, users: torch.Tensor, items: torch.Tensor, reps: BehaviorReps
               ) -> torch.Tensor:
        """o_t of (users, items) rows for every behavior: [..., K], stage by stage."""
        p = rows(reps.users[self.target], users.reshape(-1))
        q = rows(reps.items[self.target], items.reshape(-1))
        g = self.towers(p * q)
        b = rows(self.item_bias, items.reshape(-1))
        stages = []
        for t in range(self.n_behaviors):
            if t == 0:
                o = g[:, 0] + b
            elif self.cascade == "halving":
                o = (g[:, t] + stages[-1]) / 2 + b
            else:       # o_{t-1} already holds b_i once
                o = stages[-1] + g[:, t]
            stages.append(o)
        return torch.stack(stages, -1).view(*users.shape, self.n_behaviors)

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        extra = batch.extra
        if "labels" not in extra or "items" not in extra:
            raise ConfigError("nmtr trains on rows of (user, item, task labels): use sampler "
                              "'nmtr' (set sampler=nmtr)")
        o = self.logits(batch.users, extra["items"], reps)
        s = torch.sigmoid(o)
        y = extra["labels"]
        bce = -(y * torch.log(s + EPSILON) + (1 - y) * torch.log(1 - s + EPSILON))
        weights = self.hp("loss_weights")
        parts = {f"bce_{name}": weights[t] * weighted_mean(bce[..., t], batch.user_weight)
                 for t, name in enumerate(self.behavior_names)}
        p, q = reps.extra["ego_users"], reps.extra["ego_items"]
        parts["reg"] = (self.hp("reg") * ((p * p).sum() + (self.tower_weights ** 2).sum())
                        + self.hp("item_reg") * (q * q).sum())
        return parts

    @torch.no_grad()        # the towers are parameters: no autograd graph while ranking
    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        """o_K of ``users`` against every item, users in chunks: o_K = sum_t c_t g_t + beta b_i,
        the K towers as one [d, K d] product."""
        p_all, q = reps.users[self.target], reps.items[self.target]
        k, d = self.tower_weights.shape[:2]
        stacked = self.tower_weights.permute(1, 0, 2).reshape(d, k * d)
        weights = torch.tensor(self.coefficients, device=q.device, dtype=q.dtype)
        outputs = (self.tower_outputs * weights[:, None]).reshape(k * d)
        bias = self.bias_coefficient * self.item_bias
        chunk = max(1, SCORE_CHUNK_ELEMENTS // max(1, self.n_items * k * d))
        out = []
        for start in range(0, len(users), chunk):
            p = rows(p_all, users[start:start + chunk])
            hidden = F.relu((p[:, None, :] * q[None, :, :]) @ stacked)
            out.append(hidden @ outputs + bias)
        if not out:
            return q.new_zeros(0, self.n_items)
        return torch.cat(out)


class NMTRSampler:
    """Rows = union pairs and their negatives (see the module docstring). Record r of an epoch
    stands for union pair ``r % nnz``: r < nnz is the pair itself, a larger r one of its
    negatives, drawn for its slot from the step's stream (``streams``)."""

    def __init__(self, dataset: MultiBehaviorDataset, batch_size: int, n_negatives: int,
                 label_rule: str, device: torch.device, keys: torch.Tensor) -> None:
        union = dataset.union()
        self.union = InteractionIndex(union, device, "union of all behaviors")
        self.n_pairs = int(union.nnz)
        if self.n_pairs == 0:
            raise ConfigError("nmtr: the training matrices have no interaction to learn from")
        self.labels = torch.as_tensor(chain_labels(dataset.matrices(), union, label_rule),
                                      device=device)
        n_rows = self.n_pairs * (1 + n_negatives)
        # the release's len // bs batches (remainder dropped); one padded batch if fewer rows
        take = (n_rows // batch_size) * batch_size if n_rows >= batch_size else n_rows
        self.keys = keys
        self.records = EpochOrder(keys, n_rows, take, batch_size)
        self.steps_per_epoch = self.records.steps
        self.layout = CounterLayout(device)
        self.layout.set("neg", batch_size, 0)

    def start_epoch(self, epoch: int) -> bool:
        self.records.shuffle(epoch)
        return False

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass

    def batch(self, step: torch.Tensor, global_step: torch.Tensor) -> Batch:
        records, weight = self.records.slots(step)
        keys = streams.derive(self.keys, streams.TAG_STEP, global_step)
        draws = self.layout.draw(keys)
        pair = records % self.n_pairs
        codes = self.union.keys.index_select(0, pair.reshape(-1)).view(pair.shape)
        users = torch.div(codes, self.union.n_items, rounding_mode="floor")
        positive = records < self.n_pairs
        items = torch.where(positive, codes - users * self.union.n_items,
                            self.union.negatives(users, draws["neg"]))
        labels = self.labels.index_select(0, pair.reshape(-1)).view(*pair.shape, -1)
        labels = labels * positive.unsqueeze(-1).to(labels.dtype)
        return Batch(users, {}, extra={"items": items, "labels": labels}, user_weight=weight,
                     noise=keys)


@register_sampler("nmtr")
def _nmtr_sampler(dataset, cfg: dict, device: torch.device, model, keys) -> NMTRSampler:
    return NMTRSampler(dataset, cfg["batch_size"], cfg["n_negatives"], cfg["labels"], device,
                       keys)


# Release defaults (Main_MTL.py argparse, Multi_GMF): E 64, bs 2048 rows, 4 negatives, 30 epochs,
# weights 1/3 each, regs 0, TF Adagrad lr 0.01 from an accumulator of 1e-8. [I] the chain labels,
# the per-dataset weights 1/K, the evaluation cadence.
register_model(
    "nmtr", "nmtr", "nmtr",
    "NMTR: shared MF embeddings, a ReLU GMF tower per behavior, cascaded logits along the "
    "behavior chain, weighted BCE on chain labels (spec table2 NMTR)",
    defaults={"sampler": "nmtr", "dim": 64, "batch_size": 2048, "lr": 1e-2, "lr_decay": 1.0,
              "optimizer": "adagrad-tf1", "epochs": 30, "loss_weights": [1 / 3, 1 / 3, 1 / 3],
              "eval_schedule": "every", "eval_every": 1},
    dataset_defaults={"tmall": {"loss_weights": [0.25, 0.25, 0.25, 0.25]}},
    inferred=("labels", "eval_schedule", "eval_every"),
    code_modules=("bench.train.adagrad",))
