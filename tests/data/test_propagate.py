"""``propagate``: the sparse product every model uses, and its batched form over seeds."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch.func import vmap

from bench.data.graphs import Graph, propagate


def small_graph(seed=0) -> tuple[Graph, np.ndarray]:
    rng = np.random.default_rng(seed)
    dense = (rng.random((7, 7)) < 0.4) * rng.random((7, 7))    # not symmetric on purpose
    return Graph(sp.csr_matrix(dense), torch.device("cpu")), dense


def test_product_and_gradient_match_dense_algebra():
    graph, dense = small_graph()
    # own generator: the global stream's state depends on which tests ran before
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, dtype=torch.float32, generator=g).requires_grad_()
    out = propagate(graph, x)
    # float32 against float64 algebra: an entry near zero needs the absolute tolerance
    np.testing.assert_allclose(out.detach().numpy(), dense @ x.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    weights = torch.randn(7, 3, generator=g)
    (out * weights).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), dense.T @ weights.numpy(), rtol=1e-5, atol=1e-6)


def test_vmap_over_seeds_is_one_product_with_per_seed_results():
    graph, _ = small_graph(1)
    stacked = torch.randn(4, 7, 3, requires_grad=True)
    weights = torch.randn(4, 7, 3)
    batched = vmap(lambda x: propagate(graph, propagate(graph, x)))(stacked)
    (batched * weights).sum().backward()
    for s in range(4):
        alone = stacked[s].detach().clone().requires_grad_()
        out = propagate(graph, propagate(graph, alone))
        (out * weights[s]).sum().backward()
        torch.testing.assert_close(batched[s], out)
        torch.testing.assert_close(stacked.grad[s], alone.grad)


def test_vmap_over_a_non_leading_seed_axis():
    graph, _ = small_graph(2)
    x = torch.randn(7, 5, 3)
    batched = vmap(lambda t: propagate(graph, t), in_dims=1, out_dims=1)(x)
    for s in range(5):
        torch.testing.assert_close(batched[:, s], propagate(graph, x[:, s]))


def test_vmap_over_a_rectangular_graph_and_its_gradient():
    rng = np.random.default_rng(4)
    dense = (rng.random((5, 8)) < 0.5) * rng.random((5, 8))   # users x items
    graph = Graph(sp.csr_matrix(dense), torch.device("cpu"))
    stacked = torch.randn(3, 8, 2, requires_grad=True)
    weights = torch.randn(3, 5, 2)
    batched = vmap(lambda t: propagate(graph, t))(stacked)
    assert batched.shape == (3, 5, 2)
    (batched * weights).sum().backward()
    for s in range(3):
        np.testing.assert_allclose(batched[s].detach().numpy(),
                                   dense @ stacked[s].detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stacked.grad[s].numpy(), dense.T @ weights[s].numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_graphs_keep_32_bit_indices_and_products_match_sparse_mm():
    graph, dense = small_graph(3)
    assert graph.forward_csr.crow_indices().dtype == torch.int32
    assert graph.transpose_csr.col_indices().dtype == torch.int32
    x = torch.randn(7, 4)
    with torch.no_grad():       # the out= product of sparse_product
        out = propagate(graph, x)
    assert torch.equal(out, torch.sparse.mm(graph.forward_csr, x))
    np.testing.assert_allclose(out.numpy(), dense @ x.numpy(), rtol=1e-5, atol=1e-6)
