"""Bipartite user-item graphs and the normalizations of model-specs §0, cached per dataset."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError
from bench.kernels import plain

NORMALIZATIONS = ("none", "left", "symmetric", "symmetric-eps")


def bipartite(matrix: sp.spmatrix) -> sp.csr_matrix:
    """The (U+I) x (U+I) lift [[0, M], [M^T, 0]] of a user x item matrix; users first."""
    m = sp.csr_matrix(matrix, dtype=np.float32)
    return sp.bmat([[None, m], [m.T, None]], format="csr", dtype=np.float32)


def normalize(adj: sp.spmatrix, mode: str) -> sp.csr_matrix:
    """``left``: D^-1 A; ``symmetric``: D^-1/2 A D^-1/2 (LightGCN); ``symmetric-eps``: degree + 1e-7
    (BCIPM). Zero degrees give zero rows in the first two."""
    if mode not in NORMALIZATIONS:
        raise ConfigError(f"unknown graph normalization '{mode}'; choose one of {NORMALIZATIONS}")
    adj = sp.csr_matrix(adj, dtype=np.float64)
    if mode == "none":
        return adj.astype(np.float32)
    if mode == "symmetric-eps":
        degree = np.diff(adj.indptr).astype(np.float64) + 1e-7
    else:
        degree = np.asarray(adj.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        if mode == "left":
            inv = np.where(degree > 0, 1.0 / degree, 0.0)
            out = sp.diags(inv) @ adj
        else:
            inv = np.where(degree > 0, degree ** -0.5, 0.0)
            out = sp.diags(inv) @ adj @ sp.diags(inv)
    return sp.csr_matrix(out, dtype=np.float32)


def user_item_matrix(dataset: MultiBehaviorDataset, view: str, k: int | None = None) -> sp.csr_matrix:
    """Named user x item views: ``behavior`` (B_k), ``cumulative`` (sum of B_0..B_k, counts),
    ``union`` (binary OR of all behaviors), ``all`` (count-weighted sum of all behaviors)."""
    if view == "behavior":
        return dataset.matrices()[k]
    if view == "cumulative":
        return dataset.cumulative(k)
    if view == "all":
        return dataset.cumulative(dataset.n_behaviors - 1)
    if view == "union":
        return dataset.union()
    raise ConfigError(f"unknown graph view '{view}'; use behavior, cumulative, all or union")


def normalized_graph(dataset: MultiBehaviorDataset, view: str, norm: str,
                     k: int | None = None) -> sp.csr_matrix:
    key = ("graph", view, k, norm)
    return dataset.cached(key, lambda: normalize(bipartite(user_item_matrix(dataset, view, k)), norm))


def to_torch(matrix: sp.spmatrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """A scipy matrix as a torch sparse CSR tensor (float32) on ``device``.

    Indices are 32-bit wherever they fit: MKL's (CPU) and cuSPARSE's products take 32-bit
    indices, and with 64-bit ones PyTorch converts the whole index array on every product
    (10-15% of a product on Taobao's union graph). The product itself is the same."""
    m = sp.csr_matrix(matrix, dtype=np.float32)
    m.sort_indices()
    index = np.int32 if max(m.nnz, *m.shape) < np.iinfo(np.int32).max else np.int64
    return torch.sparse_csr_tensor(
        torch.from_numpy(m.indptr.astype(index)), torch.from_numpy(m.indices.astype(index)),
        torch.from_numpy(m.data), size=m.shape, device=device)


class Graph:
    """A sparse graph on a device with its transpose kept beside it, so that the backward pass is a
    plain row-parallel CSR product too: deterministic on CPU and faster than autograd's."""

    def __init__(self, matrix: sp.spmatrix, device: torch.device | str = "cpu") -> None:
        m = sp.csr_matrix(matrix, dtype=np.float32)
        self.shape = m.shape
        self.forward_csr = to_torch(m, device)
        symmetric = m.shape[0] == m.shape[1] and abs(m - m.T).sum() == 0
        self.transpose_csr = self.forward_csr if symmetric else to_torch(m.T.tocsr(), device)


def sparse_product(csr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``csr @ x`` for a sparse CSR matrix and a dense 2-D ``x``. On CPU it writes MKL's result
    straight into a fresh table (``addmm`` with ``out=``, ``beta=0``): ``torch.sparse.mm`` zero-fills
    a table, multiplies into a second one and copies it over, about 10% of a product on Taobao's
    union graph and a third on its buy graph. The values are the same."""
    if x.device.type != "cpu" or (x.requires_grad and torch.is_grad_enabled()):
        return torch.sparse.mm(csr, x)      # ``out=`` takes no part in autograd
    out = torch.empty(csr.shape[0], x.shape[1], dtype=x.dtype)
    return torch.addmm(out, csr, x, beta=0.0, out=out)


class _Propagate(torch.autograd.Function):
    """graph @ x with the explicitly stored transpose in backward. Under ``torch.func.vmap`` (the
    seed-batched trainer) the seeds' tables become column blocks of one product."""

    @staticmethod
    def forward(x: torch.Tensor, graph: Graph) -> torch.Tensor:
        return sparse_product(graph.forward_csr, x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.graph = inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return sparse_product(ctx.graph.transpose_csr, grad.contiguous()), None

    @staticmethod
    def vmap(info, in_dims, x: torch.Tensor, graph: Graph):
        seeds_dim = in_dims[0]
        if seeds_dim is None:
            return _Propagate.apply(x, graph), None
        rows_first = x.movedim(seeds_dim, 1)             # [N, S, d...]
        flat = rows_first.reshape(rows_first.shape[0], -1).contiguous()
        out = _Propagate.apply(flat, graph)
        # a users x items graph has other rows out than in
        return out.reshape(out.shape[0], *rows_first.shape[1:]), 1


def torch_graph(dataset: MultiBehaviorDataset, view: str, norm: str, k: int | None = None,
                device: torch.device | str = "cpu") -> Graph:
    """The normalized bipartite graph of a view, ready for ``propagate``, cached per device."""
    key = ("torch-graph", view, k, norm, str(device))
    return dataset.cached(key, lambda: Graph(normalized_graph(dataset, view, norm, k), device))


def propagate(graph: Graph, x: torch.Tensor) -> torch.Tensor:
    """Sparse graph times dense rows. Every model propagates through here, so that batching over
    seeds (several column blocks at once) can be added in one place."""
    if plain() and not torch._C._functorch.is_batchedtensor(x):
        return torch.sparse.mm(graph.forward_csr, x)      # autograd's own sparse backward
    if x.requires_grad or torch._C._functorch.is_batchedtensor(x):
        return _Propagate.apply(x, graph)
    return sparse_product(graph.forward_csr, x)
