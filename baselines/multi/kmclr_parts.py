"""KMCLR's pieces as plain functions of tensors (model-specs-table2.md Part 3, "KMCLR"), so that
the model, its unit tests and the release replay run the same code. Every random quantity
(dropout masks, slot drops, edge keeps) is an argument: the model draws them from its streams, the
release replay passes the release's own draws.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from bench.data.graphs import Graph, propagate
from bench.train import streams

MASKED_SCORE = -9e15        # the release's score of a padding slot before the softmax
LEAKY_SLOPE = 0.2


# ---- random masks ------------------------------------------------------------------------------
def uniforms(keys: torch.Tensor, tag: int, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Floats uniform in [0, 1) of ``shape`` from sub-stream ``index`` of ``keys`` ([2])."""
    n = int(np.prod(shape))
    sub = streams.derive(keys, tag, index)
    h = streams.hashes(sub, torch.arange(n, dtype=torch.int64, device=keys.device))
    return streams.unit(h).reshape(shape)


def dropout_scale(u: torch.Tensor, p: float) -> torch.Tensor:
    """F.dropout's multiplier from uniforms: kept with probability 1 - p, scaled by 1/(1-p)."""
    return (u < 1.0 - p).to(torch.float32) / (1.0 - p)


@dataclass
class GATNoise:
    """One GAT call's dropout multipliers (F.dropout's mask / (1 - p)): on the slots' entity rows,
    on the attention weights, on the output."""

    entities: torch.Tensor      # [I, slots, d]
    attention: torch.Tensor     # [I, slots]
    output: torch.Tensor        # [I, d]


# ---- the KG model ----------------------------------------------------------------------------------
def gat_items(items: torch.Tensor, entities: torch.Tensor, relations: torch.Tensor,
              slot_tails: torch.Tensor, slot_relations: torch.Tensor, pad_entity: int,
              fc_weight: torch.Tensor, fc_bias: torch.Tensor, out_weight: torch.Tensor,
              out_bias: torch.Tensor, noise: GATNoise | None) -> torch.Tensor:
    """g(i) = drop(ReLU(out(sum_j drop(alpha)_j e~_j + E_i[i]))), e~_j = drop(E_ent[tail_j]),
    alpha = softmax_j LeakyReLU(f([E_i[i] | E_rel[rel_j] | e~_j])), padding slots at -9e15
    (GAT.forward_relation); ``noise`` None is eval mode (no dropout)."""
    n, slots = slot_tails.shape
    ent = entities.index_select(0, slot_tails.reshape(-1)).view(n, slots, -1)
    rel = relations.index_select(0, slot_relations.reshape(-1)).view(n, slots, -1)
    if noise is not None:
        ent = ent * noise.entities
    head = items.unsqueeze(1).expand(n, slots, items.shape[1])
    logits = torch.cat([head, rel, ent], dim=-1) @ fc_weight.T + fc_bias
    logits = F.leaky_relu(logits.squeeze(-1), LEAKY_SLOPE)
    logits = torch.where(slot_tails != pad_entity, logits, torch.full_like(logits, MASKED_SCORE))
    alpha = torch.softmax(logits, dim=1)
    if noise is not None:
        alpha = alpha * noise.attention
    pooled = (alpha.unsqueeze(-1) * ent).sum(1)
    out = torch.relu((pooled + items) @ out_weight.T + out_bias)
    return out * noise.output if noise is not None else out


def layer_mean(graph: Graph, x: torch.Tensor, layers: int) -> torch.Tensor:
    """LightGCN: the mean of x, A x, ..., A^layers x."""
    total = x
    for _ in range(layers):
        x = propagate(graph, x)
        total = total + x
    return total / (layers + 1)


def l2_mean(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """utils._L2_loss_mean over the real rows: mean of 1/2 |x_b|^2."""
    return ((x * x).sum(-1) / 2 * weight).sum() / weight.sum().clamp_min(1.0)


def transr_loss(items: torch.Tensor, entities: torch.Tensor, relations: torch.Tensor,
                matrices: torch.Tensor, heads: torch.Tensor, rels: torch.Tensor,
                pos: torch.Tensor, neg: torch.Tensor, weight: torch.Tensor,
                reg: float = 1e-3) -> torch.Tensor:
    """calc_kg_loss_transR: mean -log sigma(|M h + r - M t-|^2 - |M h + r - M t+|^2) + reg (L2m(Mh)
    + L2m(r) + L2m(Mt+) + L2m(Mt-) + |M|_F), the norm of the whole tensor, not squared."""
    m = matrices.index_select(0, rels)
    r = relations.index_select(0, rels)
    h = (m @ items.index_select(0, heads).unsqueeze(-1)).squeeze(-1)
    tp = (m @ entities.index_select(0, pos).unsqueeze(-1)).squeeze(-1)
    tn = (m @ entities.index_select(0, neg).unsqueeze(-1)).squeeze(-1)
    dist_pos = (h + r - tp).pow(2).sum(-1)
    dist_neg = (h + r - tn).pow(2).sum(-1)
    fit = (-F.logsigmoid(dist_neg - dist_pos) * weight).sum() / weight.sum().clamp_min(1.0)
    l2 = (l2_mean(h, weight) + l2_mean(r, weight) + l2_mean(tp, weight) + l2_mean(tn, weight)
          + matrices.norm())
    return fit + reg * l2


def tatec_loss(items: torch.Tensor, entities: torch.Tensor, relations: torch.Tensor,
               matrices: torch.Tensor, heads: torch.Tensor, rels: torch.Tensor,
               pos: torch.Tensor, neg: torch.Tensor, weight: torch.Tensor,
               sign: str = "release", reg: float = 1e-3) -> torch.Tensor:
    """calc_kg_loss_TATEC: s = h^T M t + h^T r + t^T r + h^T t; the release's loss
    -log sigma(s- - s+) raises false triples' scores (``sign='release'``); ``'fixed'`` is
    -log sigma(s+ - s-). L2 on the raw rows + |M|_F."""
    m = matrices.index_select(0, rels)
    r = relations.index_select(0, rels)
    h = items.index_select(0, heads)
    tp, tn = entities.index_select(0, pos), entities.index_select(0, neg)

    def score(t: torch.Tensor) -> torch.Tensor:
        mt = (m @ t.unsqueeze(-1)).squeeze(-1)
        return (h * mt).sum(-1) + (h * r).sum(-1) + (t * r).sum(-1) + (h * t).sum(-1)

    s_pos, s_neg = score(tp), score(tn)
    margin = s_neg - s_pos if sign == "release" else s_pos - s_neg
    fit = (-F.logsigmoid(margin) * weight).sum() / weight.sum().clamp_min(1.0)
    l2 = (l2_mean(h, weight) + l2_mean(r, weight) + l2_mean(tp, weight) + l2_mean(tn, weight)
          + matrices.norm())
    return fit + reg * l2


def grace(z1: torch.Tensor, z2: torch.Tensor, tau: float, weight: torch.Tensor) -> torch.Tensor:
    """Contrast.semi_loss, one direction: sum_a -log(f_aa / (sum_b f_ab - f_aa)), f = exp(cos/tau),
    over the real rows a, b (the positive is not in the denominator)."""
    sim = F.normalize(z1) @ F.normalize(z2).T
    f = torch.exp(sim / tau) * weight.unsqueeze(0)
    diag = f.diagonal()
    safe = torch.where(weight > 0, diag, torch.ones_like(diag))
    terms = -torch.log(safe / (f.sum(1) - diag + (1.0 - weight)))
    return (terms * weight).sum()


def cml_infonce(anchor: torch.Tensor, other: torch.Tensor, users: torch.Tensor,
                weight: torch.Tensor, chunk: int) -> torch.Tensor:
    """The CML/KMCLR user InfoNCE of one behavior (Mul_Model.SSL): over sampled rows s with users
    u_s, pos_s = exp(<a_{u_s}, o_{u_s}>/d), neg_s = sum of exp(<a_{u_s}, o_v>/d) over the distinct
    sampled users v outside s's chunk of ``chunk`` consecutive rows; the sum over s of
    -log(1e-8 + pos_s / (neg_s + 1e-8)). ``weight`` marks the real rows (a prefix)."""
    d = anchor.shape[1]
    a = anchor.index_select(0, users)
    o = other.index_select(0, users)
    temperature = float(d) + 1e-8
    pos = torch.exp((a * o).sum(-1) / temperature)
    scores = torch.exp(a @ o.T / temperature)
    n = users.shape[0]
    real = weight > 0
    same = (users.unsqueeze(0) == users.unsqueeze(1)) & real.unsqueeze(0) & real.unsqueeze(1)
    earlier = torch.ones(n, n, dtype=torch.bool, device=users.device).tril(-1)
    first = real & ~(same & earlier).any(1)                  # first sampled row of its user
    groups = -(-n // chunk)
    pad = groups * chunk - n
    same_padded = F.pad(same, (0, 0, 0, pad))                # [groups * chunk, n]
    in_chunk = same_padded.view(groups, chunk, n).any(1)     # chunk c holds the user of row t
    own_chunk = in_chunk.index_select(0, torch.arange(n, device=users.device) // chunk)
    counted = (first.unsqueeze(0) & ~own_chunk).to(scores.dtype)
    neg = (scores * counted).sum(1)
    terms = -torch.log(1e-8 + pos / (neg + 1e-8))
    return (terms * weight).sum()


# ---- graphs ----------------------------------------------------------------------------------------
class _ValuesGraph(Graph):
    """A ``Graph`` of given CSR tensors (re-weighted values on a fixed structure)."""

    def __init__(self, forward_csr: torch.Tensor, transpose_csr: torch.Tensor) -> None:
        self.shape = tuple(forward_csr.shape)
        self.forward_csr = forward_csr
        self.transpose_csr = transpose_csr


class BipartiteEdges:
    """The bipartite lift of a user x item matrix as a fixed CSR structure whose values change per
    step: edge dropout on D^-1/2 A D^-1/2 (each stored entry kept on its own, the values divided
    by the keep probability) and the symmetric normalization of a kept subset of edges."""

    def __init__(self, matrix: sp.spmatrix, device: torch.device) -> None:
        m = sp.csr_matrix(matrix, dtype=np.float32)
        m.sort_indices()
        self.n_users, self.n_items = m.shape
        self.nnz = m.nnz
        n = self.n_users + self.n_items
        degree = np.diff(m.indptr)
        self.edge_users = torch.as_tensor(np.repeat(np.arange(self.n_users), degree),
                                          dtype=torch.int64, device=device)
        self.edge_items = torch.as_tensor(m.indices, dtype=torch.int64, device=device)
        self.user_indptr = m.indptr.astype(np.int64)
        # the lift with each entry's source: +e+1 for edge e in a user row, -(e+1) in an item row
        codes = sp.csr_matrix((np.arange(1, m.nnz + 1, dtype=np.float64), m.indices, m.indptr),
                              shape=m.shape)
        lift = sp.bmat([[None, codes], [-codes.T, None]], format="csr")
        lift.sort_indices()
        self.shape = (n, n)
        self.crow = torch.as_tensor(lift.indptr.astype(np.int64), device=device)
        self.col = torch.as_tensor(lift.indices.astype(np.int64), device=device)
        source = lift.data.astype(np.int64)
        self.entry_edge = torch.as_tensor(np.abs(source) - 1, device=device)
        rows = np.repeat(np.arange(n), np.diff(lift.indptr))
        self.entry_rows = torch.as_tensor(rows, dtype=torch.int64, device=device)
        # the position of the transposed entry (c, r) of each entry (r, c)
        positions = sp.csr_matrix((np.arange(1, lift.nnz + 1, dtype=np.float64), lift.indices,
                                   lift.indptr), shape=lift.shape).T.tocsr()
        positions.sort_indices()
        self.transposed = torch.as_tensor(positions.data.astype(np.int64) - 1, device=device)
        deg = np.diff(lift.indptr).astype(np.float64)
        with np.errstate(divide="ignore"):
            inv = np.where(deg > 0, deg ** -0.5, 0.0)
        self.normalized_values = torch.as_tensor(inv[rows] * inv[lift.indices],
                                                 dtype=torch.float32, device=device)

    def graph(self, values: torch.Tensor) -> Graph:
        """The lift with ``values`` per stored entry (CSR order)."""
        forward = torch.sparse_csr_tensor(self.crow, self.col, values, self.shape)
        back = torch.sparse_csr_tensor(self.crow, self.col, values.index_select(0, self.transposed),
                                       self.shape)
        return _ValuesGraph(forward, back)

    def dropped(self, keep: torch.Tensor, keep_prob: float) -> Graph:
        """D^-1/2 A D^-1/2 with each stored entry kept where ``keep`` (0/1, CSR order), the kept
        values divided by ``keep_prob`` (Kg_Model.__dropout_x)."""
        return self.graph(self.normalized_values * keep / keep_prob)

    def kept_edges(self, keep_edges: torch.Tensor) -> Graph:
        """D^-1/2 (A + A^T) D^-1/2 of the edges with ``keep_edges`` 1 (Contrast.get_adj_mat)."""
        user_deg = torch.zeros(self.n_users, device=keep_edges.device).index_add(
            0, self.edge_users, keep_edges)
        item_deg = torch.zeros(self.n_items, device=keep_edges.device).index_add(
            0, self.edge_items, keep_edges)
        deg = torch.cat([user_deg, item_deg])
        inv = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
        kept = keep_edges.index_select(0, self.entry_edge)
        values = kept * inv.index_select(0, self.entry_rows) * inv.index_select(0, self.col)
        return _ValuesGraph(*(torch.sparse_csr_tensor(self.crow, self.col, values, self.shape),) * 2)


@torch.no_grad()
def view_keep_weights(users: torch.Tensor, items: torch.Tensor, stability: torch.Tensor,
                      edges: BipartiteEdges, chunk: int = 2048) -> torch.Tensor:
    """Per buy edge the keep probability of Contrast.get_ui_views_weighted_with_uemb: per chunk
    of ``chunk`` users, s = softmax_i(<E_u, E_i>) * stab_i and w = 0.6 + 0.4 (s - min)/(max - min),
    min and max over the chunk's whole user x item matrix."""
    parts = []
    for start in range(0, edges.n_users, chunk):
        end = min(start + chunk, edges.n_users)
        s = torch.softmax(users[start:end] @ items.T, dim=-1).mul_(stability)
        low, high = torch.aminmax(s)
        lo, hi = int(edges.user_indptr[start]), int(edges.user_indptr[end])
        eu, ei = edges.edge_users[lo:hi] - start, edges.edge_items[lo:hi]
        # the release's 0.6 + k (s - min) over the whole chunk, read at the buy edges only
        parts.append(0.6 + (1 - 0.6) / (high - low) * (s[eu, ei] - low))
    return torch.cat(parts) if parts else torch.zeros(0, device=users.device)
