"""``item-knn``: a classic neighborhood floor on the multi-behavior data (no training).

Item-based kNN with shrunk cosine similarity, as the ItemKNN-CF of Dacrema et al. ("Are we really
making much progress?", RecSys'19) computes it, on one user x item matrix R of all behaviors:

    sim(i, j) = <R_:i, R_:j> / (|R_:i| |R_:j| + shrink),   sim(i, i) = 0,

each item j keeps its ``knn_neighbors`` most similar items i (the rest are 0), and a user scores
item j by ``sum_i R[u, i] sim(i, j)`` over those neighbours. ``knn_matrix``: ``union`` (default,
binary: the user has the item under any behavior) or ``all`` (the count-weighted sum: 1 to K by
the number of behaviors the pair occurs in). Defaults (50 neighbours, shrink 100) are that
implementation's own defaults, not tuned here.

Why item-kNN and not EASE: EASE inverts a dense items x items Gram matrix, O(I^3) time and I^2
memory: 1.1 GB and tens of seconds on Taobao's 11,953 items but 7 GB and many minutes on
Retailrocket's 30,113 items with two CPU cores. Item-kNN needs one sparse product R^T R, computed
in blocks of items (a block of co-occurrences is dense, 1024 x I), and keeps I x k similarities.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

import baselines.floors.pop  # noqa: F401  (the encoder "none")
from bench.data.graphs import sparse_product, to_torch, user_item_matrix
from bench.models.base import BehaviorReps, Decoder
from bench.models.registry import register_decoder, register_model
from bench.params import Param
from baselines.floors.user_rows import UserRows

KNN_MATRICES = ("union", "all")
BLOCK_ITEMS = 1024


def neighbour_similarities(matrix: sp.spmatrix, neighbors: int, shrink: float,
                           block: int = BLOCK_ITEMS) -> sp.csr_matrix:
    """Items x items CSR whose row j holds sim(i, j) for j's ``neighbors`` most similar items i
    (positive similarities only; the item itself excluded)."""
    r = sp.csr_matrix(matrix, dtype=np.float32)
    n_items = r.shape[1]
    norms = np.sqrt(np.asarray(r.multiply(r).sum(axis=0)).ravel()).astype(np.float32)
    by_item = r.T.tocsr()
    keep = min(neighbors, n_items - 1)
    rows, cols, vals = [], [], []
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        co = (by_item[start:stop] @ r).toarray()
        denominator = norms[start:stop, None] * norms[None, :] + shrink
        sim = np.divide(co, denominator, out=np.zeros_like(co), where=denominator > 0)
        sim[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if keep <= 0:
            continue
        top = np.argpartition(-sim, keep - 1, axis=1)[:, :keep]
        top_vals = np.take_along_axis(sim, top, axis=1)
        positive = top_vals > 0
        rows.append(np.repeat(np.arange(start, stop), keep)[positive.ravel()])
        cols.append(top[positive])
        vals.append(top_vals[positive])
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n_items, n_items), dtype=np.float32)


@register_decoder("item-knn")
class ItemKNNDecoder(Decoder):
    """Sum of the shrunk cosine similarities of the user's items to each item (top-k pruned)."""

    params = (Param("knn_neighbors", 50, "item-knn: most similar items kept per item", int, low=1),
              Param("knn_shrink", 100.0, "item-knn: shrink term added to the cosine's denominator",
                    float, low=0.0),
              Param("knn_matrix", "union", "item-knn: user x item matrix: union (binary, any "
                    "behavior) or all (count-weighted sum of the behaviors)", str,
                    choices=KNN_MATRICES))

    def __init__(self, dataset, cfg, device, generator, encoder) -> None:
        super().__init__(dataset, cfg, device, generator, encoder)
        matrix = user_item_matrix(dataset, cfg["knn_matrix"])
        similarities = neighbour_similarities(matrix, cfg["knn_neighbors"], cfg["knn_shrink"])
        self.user_items = UserRows(matrix, device)
        self.neighbours = to_torch(similarities, device)   # row j: sim(i, j) of j's neighbours i

    def score(self, reps: BehaviorReps, users: torch.Tensor) -> torch.Tensor:
        profile = self.user_items.dense(users)                         # [users, items]
        return sparse_product(self.neighbours, profile.T.contiguous()).T


register_model("item-knn", "none", "item-knn",
               "floor: item-based kNN (shrunk cosine, 50 neighbours) on the union of all behaviors "
               "(no training)",
               defaults={"sampler": "none", "epochs": 0})
