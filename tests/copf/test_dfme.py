"""DFME (spec §4.4-4.6): the shared gate by hand, slot order, where the stop-gradient modes cut the
gradient, which weights exist, and full-ranking ``score`` against the pairwise formula."""
from __future__ import annotations

import math

import pytest
import torch

import copf.aggregation as aggregation
from bench.data.demo import make_demo
from bench.models.base import Batch, BehaviorReps
from bench.train.seeds import generator
from copf.aggregation import SharedGate
from tests.copf.helpers import COPF_NAMES, build, tiny_batch, tiny_dataset, train_steps


def test_gate_by_hand():
    gate = SharedGate(1, 3, generator(0), torch.device("cpu"))
    with torch.no_grad():
        gate.weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.5]]))
        gate.bias.copy_(torch.tensor([0.0, 0.0, math.log(2.0)]))
    # x = 1, y = 2: logits (0, 1, 1 + ln 2) -> (1, e, 2e) / (1 + 3e)
    e = math.e
    expected = torch.tensor([[1 / (1 + 3 * e), e / (1 + 3 * e), 2 * e / (1 + 3 * e)]])
    x, y = torch.tensor([[1.0]]), torch.tensor([[2.0]])
    assert torch.allclose(gate.pairs(x, y), expected)
    assert torch.allclose(gate.block(x, y)[0], expected)
    fa, fc = gate.factors(x, y)
    assert torch.allclose((fa * fc) / (fa * fc).sum(), expected)


def test_one_gate_shared_by_all_tasks_and_slot_order():
    ds = tiny_dataset()
    model = build("copf", ds, dim=4)
    dec = model.decoder
    gates = [m for m in dec.modules() if isinstance(m, SharedGate)]
    assert len(gates) == 1 and dec.gate.weight.shape == (8, 3) and dec.gate.bias.shape == (3,)
    assert torch.count_nonzero(dec.gate.bias) == 0
    reps = model.encoder()
    for k, others in ((0, [1, 2]), (1, [0, 2]), (2, [0, 1])):
        tables, got = dec.slot_tables(reps, k)
        assert got == others
        assert tables[0][0] is reps.users[k] and tables[0][1] is reps.items[k]
    raw = build("copf-wo-fit", ds, dim=4).decoder
    tables, _ = raw.slot_tables(reps, 1)
    assert tables[1][0] is reps.users[0] and tables[2][0] is reps.users[2]


def test_layer_weights_exist_only_above_one_fitting_layer():
    ds = tiny_dataset()
    assert len(build("copf", ds, dim=4).decoder.layer_weights) == 0
    assert len(build("copf", ds, dim=4, mtl_layers=[1, 3, 2]).decoder.layer_weights) == 2
    assert len(build("copf-wo-for", ds, dim=4, mtl_layers=[1, 3, 2]).decoder.layer_weights) == 0


def _leaf_reps(model):
    """The encoder's tables as leaves, so that gradients can be read per behavior table."""
    with torch.no_grad():
        tables = model.encoder().extra["tables"]
    leaves = [t.clone().requires_grad_() for t in tables]
    n_u = model.encoder.n_users
    return BehaviorReps([t[:n_u] for t in leaves], [t[n_u:] for t in leaves],
                        {"tables": leaves}), leaves


def _task_grads(name, task, **overrides):
    """Gradients of task ``task``'s BPR alone w.r.t. every behavior table, and w.r.t. the gate."""
    weights = [0.0, 0.0, 0.0]
    weights[task] = 1.0
    # a small mult keeps every BPR pair off softplus' flat tails (the tiny graph's tables are large)
    model = build(name, tiny_dataset(), dim=4, loss_weights=weights, cl_weight=0.0, mult=1e-3,
                  **overrides)
    reps, leaves = _leaf_reps(model)
    batch = tiny_batch()
    parts = model.decoder.losses(reps, Batch(batch.users, {task: batch.pairs[task]}))
    parts["bpr"].backward()
    grads = [0.0 if t.grad is None else float(t.grad.abs().sum()) for t in leaves]
    gate = model.decoder.gate
    return grads, (float(gate.weight.grad.abs().sum()) if gate is not None else None)


# (variant, overrides, task, {behavior table: is its gradient through this task zero?})
SG_CASES = [
    ("copf", {}, 0, {1: False, 2: True}),           # paper: G^{K->k} stopped in auxiliary tasks
    ("copf", {}, 1, {0: False, 2: True}),
    ("copf", {}, 2, {0: False, 1: False}),          # ... never in the target task
    ("copf-wo-back", {}, 0, {1: False, 2: False}),  # none
    ("copf", {"sg_mode": "code"}, 0, {2: False}),   # code with layers [1,1,1] = none
    ("copf", {"sg_mode": "code", "mtl_layers": [3, 1, 1]}, 0, {1: True, 2: True}),
    ("copf", {"sg_mode": "code", "mtl_layers": [3, 1, 1]}, 1, {0: False, 2: False}),
    ("copf-all-sg", {}, 2, {0: True, 1: True}),     # all
    ("copf-all-sg", {}, 0, {1: True, 2: True}),
    ("copf", {"sg_mode": "aux"}, 0, {1: True, 2: True}),
    ("copf", {"sg_mode": "aux"}, 2, {0: False, 1: False}),
    ("copf-wo-for", {}, 0, {1: False, 2: True}),    # raw experts keep the paper stop-gradient
    ("copf-wo-fit", {}, 0, {2: False}),
]


@pytest.mark.parametrize("name,overrides,task,expect", SG_CASES)
def test_stop_gradient_modes(name, overrides, task, expect):
    grads, gate_grad = _task_grads(name, task, **overrides)
    for table, zero in expect.items():
        assert (grads[table] == 0.0) == zero, (table, grads)
    assert grads[task] > 0            # the own expert and the gate input always train
    assert gate_grad > 0              # the gate is never stopped, even through a stopped slot


def _trained(name, ds, steps=2, **overrides):
    return train_steps(build(name, ds, **overrides), ds, steps)


SCORE_CASES = [(n, {}) for n in COPF_NAMES] + [
    ("copf", {"mtl_layers": [2, 1, 3]}),
    ("copf-agg-linear", {"linear_form": "stacked"}),
    ("copf-agg-projection", {"projection_gate": False}),
]


@pytest.fixture(scope="module")
def small_demo():
    return make_demo(n_users=60, n_items=70, seed=3)


@pytest.mark.parametrize("name,overrides", SCORE_CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCORE_CASES)])
def test_full_ranking_score_equals_pairwise_formula(name, overrides, small_demo, monkeypatch):
    ds = small_demo
    model = _trained(name, ds, dim=8, **overrides)
    g = generator(11)
    users = torch.randint(0, ds.n_users, (40,), generator=g)
    items = torch.randint(0, ds.n_items, (40,), generator=g)
    with torch.no_grad():
        reps = model.encoder()
        pairwise = model.decoder.pair_scores(reps, ds.n_behaviors - 1, users, items)
        full = model.decoder.score(reps, users)
        picked = full[torch.arange(len(users)), items]
        scale = full.abs().max()
        assert torch.allclose(picked, pairwise, rtol=0, atol=2e-6 * float(scale))
        # the unfactorized gate softmax and small vanilla chunks give the same scores
        monkeypatch.setattr(aggregation, "UNDERFLOW", float("inf"))
        monkeypatch.setattr(aggregation, "VANILLA_CHUNK_ELEMENTS", 7 * 64)
        monkeypatch.setattr(aggregation, "SCORE_BLOCK_ELEMENTS", 500)
        plain = model.decoder.score(model.encoder(), users)
        assert torch.allclose(plain, full, rtol=0, atol=2e-6 * float(scale))
