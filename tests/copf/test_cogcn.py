"""COGCN's constraints (spec §4.2-4.3, §5.1) as properties: what each behavior's output may and may
not depend on, under COPF and under the ablations that lift a constraint."""
from __future__ import annotations

import copy

import pytest
import torch

from bench.data.graphs import torch_graph
from tests.copf.helpers import BUY, CART, build, tiny_dataset


def _tables(model):
    with torch.no_grad():
        return model.encoder().extra["behavior_tables"]


def _perturbed_buy():
    buy = copy.deepcopy(BUY)
    buy[4][5] = 1
    buy[2][0] = 1
    buy[1][1] = 0
    return buy


def test_cumulative_graph_counts_behaviors():
    """C_k = sum of B_k' (k' <= k) is count-weighted, then left-normalized: user 0 viewed items
    {0, 1, 3} and carted {0, 3}, so its cart-graph row is (2, 1, 2) / 5."""
    model = build("copf", tiny_dataset(), dim=4)
    dense = model.encoder.graphs[1].forward_csr.to_dense()
    row = dense[0, 5:5 + 6]
    assert torch.allclose(row, torch.tensor([0.4, 0.2, 0.0, 0.4, 0.0, 0.0]))


@pytest.mark.parametrize("name", ["copf", "copf-h", "copf-b", "copf-c", "copf-p"])
def test_in_behavior_downstream_perturbation_leaves_upstream_unchanged(name):
    """In-behavior constraint: behavior k sees no downstream behavior. Changing B_buy leaves the
    view and cart outputs bit-identical (same initialization); the target output changes."""
    before = _tables(build(name, tiny_dataset(), dim=4))
    after = _tables(build(name, tiny_dataset(buy=_perturbed_buy()), dim=4))
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert not torch.allclose(before[2], after[2])


@pytest.mark.parametrize("name", ["copf-a", "copf-f"])
def test_without_in_constraint_downstream_leaks_upstream(name):
    before = _tables(build(name, tiny_dataset(), dim=4))
    after = _tables(build(name, tiny_dataset(buy=_perturbed_buy()), dim=4))
    assert not torch.allclose(before[0], after[0])
    assert not torch.allclose(before[1], after[1])


def _with_upstream_graph_replaced(name, behavior):
    """Outputs before and after replacing the graph of ``behavior`` only (its output changes,
    every other behavior keeps its own graph)."""
    ds = tiny_dataset()
    model = build(name, ds, dim=4)
    before = _tables(model)
    model.encoder.graphs[behavior] = torch_graph(ds, "union", "symmetric")
    return before, _tables(model)


def test_pre_behavior_none_input_ignores_upstream_outputs():
    """COPF-P: X_k = E0, so a change of behavior 0's output does not reach behaviors 1 and 2."""
    before, after = _with_upstream_graph_replaced("copf-p", 0)
    assert not torch.allclose(before[0], after[0])
    assert torch.equal(before[1], after[1]) and torch.equal(before[2], after[2])


@pytest.mark.parametrize("name", ["copf", "copf-b"])
def test_pre_behavior_cascade_input_uses_upstream_outputs(name):
    before, after = _with_upstream_graph_replaced(name, 0)
    assert not torch.allclose(before[1], after[1])
    assert not torch.allclose(before[2], after[2])


def test_strict_pre_receives_only_the_most_recent_upstream_behavior():
    """With layers [1, 0, 1] (the cart behavior passes its input through: E^{1,L} = X_1) the target
    input is, by hand: cascade X_2 = E^{1,L} + X_1 = 2 (E^{0,1} + E0); strict pre with E0
    X_2 = E^{1,L} + E0 = E^{0,1} + 2 E0; strict pre without E0 X_2 = E^{1,L} = E^{0,1}."""
    ds = tiny_dataset()
    cases = {("copf", True): lambda last0, e0: 2 * (last0 + e0),
             ("copf-b", True): lambda last0, e0: last0 + 2 * e0,
             ("copf-b", False): lambda last0, e0: last0}
    for (name, keep_e0), x2_of in cases.items():
        model = build(name, ds, dim=4, layers=[1, 0, 1], strict_pre_e0=keep_e0)
        with torch.no_grad():
            e0 = torch.cat([model.encoder.users, model.encoder.items])
            last0 = model.encoder.graphs[0].forward_csr.to_dense() @ e0 + e0      # E^{0,1}
            x2 = x2_of(last0, e0)
            expected = x2 + (model.encoder.graphs[2].forward_csr.to_dense() @ x2 + x2)
        assert torch.allclose(_tables(model)[2], expected, rtol=1e-5, atol=1e-5), name


def test_copf_f_outputs_identical_for_equal_layer_counts():
    model = build("copf-f", tiny_dataset(), dim=4, layers=[2, 2, 2])
    tables = _tables(model)
    assert torch.equal(tables[0], tables[1]) and torch.equal(tables[1], tables[2])
    uneven = _tables(build("copf-f", tiny_dataset(), dim=4, layers=[1, 2, 1]))
    assert torch.equal(uneven[0], uneven[2]) and not torch.allclose(uneven[0], uneven[1])


def test_coupled_output_is_shared_by_every_task():
    ds = tiny_dataset()
    for choice, expect in (("sum", lambda t: t[0] + t[1] + t[2]), ("target", lambda t: t[2])):
        model = build("copf-d", ds, dim=4, coupled_output=choice)
        with torch.no_grad():
            reps = model.encoder()
        shared = expect(reps.extra["behavior_tables"])
        for k in range(3):
            assert torch.allclose(reps.table(k), shared)
    # the decoupled variant keeps one output per behavior
    reps = build("copf-wo-dfme", ds, dim=4).encoder()
    assert not torch.allclose(reps.users[0], reps.users[2])


def test_encoder_regularizes_the_full_embedding_tables():
    model = build("copf", tiny_dataset(), dim=4, reg=0.3)
    parts = model.encoder.losses(model.encoder(), None)
    e = model.encoder
    expected = 0.3 * (e.users.pow(2).sum() + e.items.pow(2).sum())
    assert torch.allclose(parts["l2"], expected)


def test_cart_free_user_keeps_its_embedding_through_the_residual():
    """A zero-degree row propagates nothing (inverse degree 0): with the residual self-loop the
    own-graph output of a user without carts is 2 * X for one layer."""
    model = build("copf-h", tiny_dataset(), dim=4, layers=[1, 1, 1])
    with torch.no_grad():
        tables = _tables(model)
        e = model.encoder
        e0 = torch.cat([e.users, e.items])
        g0 = e.graphs[0].forward_csr.to_dense()
        x1 = (g0 @ e0 + e0) + e0                      # cascade input of behavior 1
    assert sum(CART[4]) == 0
    assert torch.allclose(tables[1][4], 2 * x1[4], rtol=1e-6, atol=1e-7)
