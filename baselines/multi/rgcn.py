"""``rgcn``: relational GCN on the user-item graph with one relation per behavior and direction
(``shared/docs/model-specs-table2.md`` Part 1, "RGCN", adaptation [I]). No multi-behavior release
ships an RGCN baseline; the layer is PyG's ``RGCNConv`` (``aggr='mean'``, root weight, bias) and the
rest is the spec's inferred adaptation.

Encoder ``rgcn``: nodes are users and items; behavior k gives the relation "item -> user under k"
(A_k, U x I) and its inverse "user -> item under k" (A_k^T), 2K relations. Layer l:

    H_U' = act(sum_k D_{U,k}^-1 A_k   H_I Theta_{k,->u} + H_U Theta_root + b)
    H_I' = act(sum_k D_{I,k}^-1 A_k^T H_U Theta_{k,->i} + H_I Theta_root + b)

with per-relation mean normalization (a node without r-neighbours gets 0 from r, D^-1 of 0 is 0),
binary A_k, act = ReLU except after the last layer (ReLU there would clip the dot products).
E^0 and every Theta are Glorot-uniform ([U + I, d] drawn as one table), b = 0. One Theta_root and
b for users and items (PyG on a homogeneous graph; ``root=per-type`` gives each side its own).
``num_bases`` B > 0: Theta_r = sum_b comp[r, b] V_b per layer (PyG's basis decomposition).
``combine``: ``last`` (the last layer, default) or ``concat`` (layers 0..L side by side).

Decoder ``rgcn``: score <h_u, h_i> on the target (``score=distmult``: <h_u, r * h_i> with a learned
diagonal r, init 1); loss on target pairs (one uniform negative each): ``bpr``
mean -log sigmoid(s_ui - s_uj), or ``bce`` (the RGCN paper's link prediction: mean over the 2B
positive and negative rows of the binary cross-entropy); plus reg * (|e0_u|^2 + |e0_i|^2 +
|e0_j|^2) / B on the batch's layer-0 rows (no 1/2).

Dropout (the RGCN paper's 0.4 / 0.2; the spec's default is none), training only:
``edge_dropout`` zeroes each directed entry of every relation graph with probability p, once per
step, and keeps the full graph's mean normalization (degrees are not recomputed after dropping, the
spec's reading of the paper) without rescaling; ``self_loop_dropout`` is inverted dropout
(x * mask / (1 - p), as ``nn.Dropout``) on each layer's root term H Theta_root.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from bench.data.dataset import MultiBehaviorDataset
from bench.data.graphs import Graph, bipartite, normalize, propagate
from bench.models.base import Batch, BehaviorReps, Decoder, Encoder, rows, weighted_mean
from bench.models.registry import register_decoder, register_encoder, register_model
from bench.params import DIM, Param
from bench.train import streams

ROOTS = ("shared", "per-type")
COMBINES = ("last", "concat")


def glorot(shape: tuple[int, ...], generator: torch.Generator,
           device: torch.device | str) -> nn.Parameter:
    """PyG's ``glorot``: U(+-sqrt(6 / (size(-2) + size(-1))))."""
    limit = math.sqrt(6.0 / (shape[-2] + shape[-1]))
    return nn.Parameter(((torch.rand(*shape, generator=generator) * 2 - 1) * limit).to(device))


class _MaskedGraph(Graph):
    """A ``Graph`` made from ready torch CSR tensors (the scipy-based constructor is bypassed)."""

    def __init__(self, forward_csr: torch.Tensor, transpose_csr: torch.Tensor) -> None:
        self.shape = tuple(forward_csr.shape)
        self.forward_csr = forward_csr
        self.transpose_csr = transpose_csr


class RelationGraph:
    """One behavior's mean-normalized graph, whose entries a step can zero (edge dropout) without
    rebuilding index arrays: ``perm`` maps the transposed CSR's entries to the forward ones."""

    def __init__(self, matrix: sp.csr_matrix, device: torch.device) -> None:
        m = sp.csr_matrix(matrix, dtype=np.float32)
        m.sort_indices()
        self.graph = Graph(m, device)
        order = sp.csr_matrix((np.arange(1, m.nnz + 1, dtype=np.int64), m.indices, m.indptr),
                              shape=m.shape).T.tocsr()
        order.sort_indices()
        self.perm = torch.as_tensor(order.data - 1, device=device)
        self.counters = torch.arange(m.nnz, device=device)

    def masked(self, keep: torch.Tensor) -> Graph:
        """The graph with its entries multiplied by ``keep`` (forward CSR order)."""
        f, t = self.graph.forward_csr, self.graph.transpose_csr
        values = f.values() * keep
        return _MaskedGraph(
            torch.sparse_csr_tensor(f.crow_indices(), f.col_indices(), values, size=f.shape),
            torch.sparse_csr_tensor(t.crow_indices(), t.col_indices(),
                                    values.index_select(0, self.perm), size=t.shape))


def mean_graph(dataset: MultiBehaviorDataset, k: int, device: torch.device) -> RelationGraph:
    """The row-normalized bipartite lift of binary A_k: its user rows are D_{U,k}^-1 A_k, its item
    rows D_{I,k}^-1 A_k^T, so one product gives both directions' mean messages. (A square graph
    also keeps the seed-batched ``propagate`` to the shapes it supports.) Cached per device."""
    def build() -> RelationGraph:
        a = sp.csr_matrix(dataset.matrices()[k], dtype=np.float32, copy=True)  # not in place
        a.eliminate_zeros()
        a.data[:] = 1.0
        return RelationGraph(normalize(bipartite(a), "left"), device)
    return dataset.cached(("rgcn-mean", k, str(device)), build)


@register_encoder("rgcn")
class RGCNEncoder(Encoder):
    """R-GCN layers over 2K behavior relations plus the root (self-loop) term."""

    uses_noise = True

    params = (DIM,
              Param("rgcn_layers", 2, "RGCN: relational layers L", int, low=1),
              Param("num_bases", 0, "RGCN: basis matrices per layer for the relation weights "
                    "(0 = one full matrix per relation)", int, low=0),
              Param("root", "shared", "RGCN: one root weight and bias for users and items "
                    "(shared) or one per node type", str, choices=ROOTS),
              Param("combine", "last", "RGCN: output = the last layer or the concatenation of "
                    "layers 0..L", str, choices=COMBINES),
              Param("edge_dropout", 0.0, "RGCN: training-time dropout of relation edges (paper "
                    "0.4), full-graph normalization kept", float, low=0.0, high=0.99),
              Param("self_loop_dropout", 0.0, "RGCN: training-time dropout on the root term "
                    "(paper 0.2)", float, low=0.0, high=0.99))

    def __init__(self, dataset, cfg, device, generator) -> None:
        super().__init__(dataset, cfg, device, generator)
        d, layers, bases = cfg["dim"], cfg["rgcn_layers"], cfg["num_bases"]
        if cfg["edge_dropout"] > 0:
            self.looped_reason = ("edge dropout gives every run its own sparse graph values, so "
                                  "the runs of a batch share no sparse product")
        relations = 2 * self.n_behaviors        # relation 2k: -> users, 2k + 1: -> items
        self.graphs = [mean_graph(dataset, k, device) for k in range(self.n_behaviors)]
        ego = glorot((self.n_users + self.n_items, d), generator, device).detach()
        self.users = nn.Parameter(ego[:self.n_users].clone())
        self.items = nn.Parameter(ego[self.n_users:].clone())
        if bases:
            self.bases = nn.ParameterList([glorot((bases, d, d), generator, device)
                                           for _ in range(layers)])
            self.comp = nn.ParameterList([glorot((relations, bases), generator, device)
                                          for _ in range(layers)])
        else:
            self.relation = nn.ParameterList([glorot((relations, d, d), generator, device)
                                              for _ in range(layers)])
        sides = 1 if cfg["root"] == "shared" else 2
        self.root = nn.ParameterList([glorot((sides, d, d), generator, device)
                                      for _ in range(layers)])
        self.bias = nn.ParameterList([nn.Parameter(torch.zeros(sides, d, device=device))
                                      for _ in range(layers)])

    def relation_weights(self, layer: int) -> torch.Tensor:
        """[2K, d, d]: Theta_r of every relation in ``layer``."""
        if self.cfg["num_bases"]:
            return torch.einsum("rb,bij->rij", self.comp[layer], self.bases[layer])
        return self.relation[layer]

    def _dropping(self, noise: torch.Tensor | None, key: str) -> bool:
        return self.training and noise is not None and self.cfg[key] > 0

    def step_graphs(self, noise: torch.Tensor | None) -> list[Graph]:
        """Each behavior's graph for this forward pass: with edge dropout in training, entries
        kept with probability 1 - p (draw k of the step's noise stream for behavior k)."""
        if not self._dropping(noise, "edge_dropout"):
            return [relation.graph for relation in self.graphs]
        p = self.cfg["edge_dropout"]
        out = []
        for k, relation in enumerate(self.graphs):
            h = streams.hashes(streams.derive(noise, streams.TAG_NOISE, k), relation.counters)
            out.append(relation.masked((streams.unit(h) >= p).to(torch.float32)))
        return out

    def _self_loop(self, x: torch.Tensor, noise: torch.Tensor | None, draw: int) -> torch.Tensor:
        """Inverted dropout on a root term (draw K + ... of the step's noise stream)."""
        if not self._dropping(noise, "self_loop_dropout"):
            return x
        p = self.cfg["self_loop_dropout"]
        counters = torch.arange(x.numel(), device=x.device)
        h = streams.hashes(streams.derive(noise, streams.TAG_NOISE, self.n_behaviors + draw),
                           counters)
        return x * (streams.unit(h) >= p).to(x.dtype).view(x.shape) / (1.0 - p)

    def layer(self, layer: int, hu: torch.Tensor, hi: torch.Tensor, graphs: list[Graph],
              noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        theta = self.relation_weights(layer)
        root, bias = self.root[layer], self.bias[layer]
        item_side = -1              # index 0 when shared, 1 when per-type
        # the mean messages of all K behaviors side by side, then one product with the stacked
        # weights per direction
        nodes = torch.cat([hu, hi], dim=0)
        messages = torch.cat([propagate(graph, nodes) for graph in graphs], dim=-1)
        to_users, to_items = messages[:self.n_users], messages[self.n_users:]
        d = hu.shape[-1]
        new_u = (to_users @ theta[0::2].reshape(-1, d)
                 + self._self_loop(hu @ root[0], noise, 2 * layer) + bias[0])
        new_i = (to_items @ theta[1::2].reshape(-1, d)
                 + self._self_loop(hi @ root[item_side], noise, 2 * layer + 1) + bias[item_side])
        return new_u, new_i

    def forward(self, noise: torch.Tensor | None = None) -> BehaviorReps:
        hu, hi = self.users, self.items
        graphs = self.step_graphs(noise)
        outputs = [(hu, hi)]
        for layer in range(self.cfg["rgcn_layers"]):
            hu, hi = self.layer(layer, hu, hi, graphs, noise)
            if layer < self.cfg["rgcn_layers"] - 1:
                hu, hi = F.relu(hu), F.relu(hi)
            outputs.append((hu, hi))
        if self.cfg["combine"] == "concat":
            hu = torch.cat([u for u, _ in outputs], dim=-1)
            hi = torch.cat([i for _, i in outputs], dim=-1)
        k = self.n_behaviors
        return BehaviorReps([hu] * k, [hi] * k, {"ego_users": self.users, "ego_items": self.items})


@register_decoder("rgcn")
class RGCNDecoder(Decoder):
    """Dot (or DistMult) score on the target; BPR (or BCE) on target pairs + ego-row L2."""

    params = (Param("score", "dot", "RGCN decoder: dot product or DistMult with a learned "
                    "diagonal", str, choices=("dot", "distmult")),
              Param("loss", "bpr", "RGCN decoder: BPR on (pos, neg) pairs or the paper's BCE on "
                    "positive and negative rows", str, choices=("bpr", "bce")),
              Param("reg", 1e-4, "RGCN decoder: weight of (|e0_u|^2 + |e0_pos|^2 + |e0_neg|^2) / "
                    "batch on the layer-0 rows", float, low=0.0, batchable=True))

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        self.trained_behaviors = [self.target]
        if cfg["score"] == "distmult":
            width = cfg["dim"] * ((cfg.get("rgcn_layers", 0) + 1)
                                  if cfg.get("combine") == "concat" else 1)
            self.diagonal = nn.Parameter(torch.ones(width, device=device))

    def _items(self, table: torch.Tensor) -> torch.Tensor:
        return table * self.diagonal if self.cfg["score"] == "distmult" else table

    def losses(self, reps: BehaviorReps, batch: Batch) -> dict[str, torch.Tensor]:
        pairs = batch.pairs.get(self.target)
        if pairs is None:
            return {}
        zu, zv = reps.users[self.target], reps.items[self.target]
        eu = rows(zu, pairs.users)
        pos = (eu * self._items(rows(zv, pairs.pos))).sum(-1)
        neg = (eu * self._items(rows(zv, pairs.neg))).sum(-1)
        if self.cfg["loss"] == "bpr":
            rank = weighted_mean(F.softplus(neg - pos), pairs.weight)
        else:       # mean over 2B rows: -log sigmoid(pos) and -log(1 - sigmoid(neg))
            rank = 0.5 * weighted_mean(F.softplus(-pos) + F.softplus(neg), pairs.weight)
        ego_u, ego_v = reps.extra["ego_users"], reps.extra["ego_items"]
        squares = (rows(ego_u, pairs.users).pow(2).sum(-1) + rows(ego_v, pairs.pos).pow(2).sum(-1)
                   + rows(ego_v, pairs.neg).pow(2).sum(-1))
        l2 = (squares * pairs.weight).sum() / pairs.count().clamp_min(1.0)
        return {self.cfg["loss"]: rank, "l2": self.hp("reg") * l2}

    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        t = self.target
        return rows(reps.users[t], users) @ self._items(reps.items[t]).T


# [I] spec "RGCN" adaptation: d 64, L 2, every buy pair once per epoch with one uniform negative,
# batch 2048, Adam 1e-3 without decay, L2 1e-4, up to 200 epochs; evaluation cadence ours.
register_model(
    "rgcn", "rgcn", "rgcn",
    "RGCN (relational GCN, behaviors as relations + inverses, BPR on the target): the spec's "
    "inferred adaptation [I], no release ships an RGCN baseline (model-specs-table2 RGCN)",
    defaults={"dim": 64, "rgcn_layers": 2, "sampler": "bpr-interactions", "batch_size": 2048,
              "lr": 1e-3, "lr_decay": 1.0, "reg": 1e-4, "epochs": 200,
              "eval_schedule": "every", "eval_every": 5},
    inferred=("dim", "rgcn_layers", "sampler", "batch_size", "lr", "lr_decay", "reg", "epochs",
              "eval_schedule", "eval_every"))
