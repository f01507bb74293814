"""The model against an independent dense NumPy derivation of spec §4.3-4.5
(tests/copf/reference.py) on a 5 users x 6 items x 3 behaviors graph: target scores of every
(user, item) and the total loss of a fixed batch agree to 1e-6 (relative) for every COPF name and
the [I] alternatives."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.copf.helpers import COPF_NAMES, build, tiny_batch, tiny_dataset
from tests.copf.reference import Reference

ALTERNATIVES = [
    # deeper COGCN and fitting layers (W_l exists and r^l = r^{l-1} W_l), a task with lambda = 0
    ("copf", {"layers": [2, 1, 3], "mtl_layers": [2, 1, 3], "loss_weights": [0.2, 0.0, 0.8]}),
    ("copf", {"sg_mode": "code", "mtl_layers": [3, 1, 2]}),
    ("copf", {"cl_temperature": 0.01}),                  # the plain logsumexp path of the CL
    ("copf-c", {"strict_pre_e0": False}),
    ("copf-b", {"strict_pre_e0": False, "layers": [2, 2, 1]}),
    ("copf-d", {"coupled_output": "target"}),
    ("copf-wo-dfme", {"cl": True}),
    ("copf-agg-linear", {"linear_form": "stacked"}),
    ("copf-agg-projection", {"projection_gate": False}),
    ("copf-wo-cogcn", {"layers": [0, 1, 2]}),
]
CASES = [(name, {}) for name in COPF_NAMES] + ALTERNATIVES


def _jitter(model, seed=5):
    """Move every parameter off its initial special values (zero gate bias, ...)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * p.abs().mean().clamp(min=0.05) * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("name,overrides", CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_matches_numpy_reference(name, overrides):
    ds = tiny_dataset()
    model = build(name, ds, dim=4, **overrides)
    _jitter(model)
    batch = tiny_batch()
    ref = Reference(model, ds.matrices())

    users = torch.arange(ds.n_users)
    scores = model.scorer()(users).double().numpy()
    expected = ref.target_scores(range(ds.n_users))
    scale = np.abs(expected).max()
    assert np.abs(scores - expected).max() <= 1e-6 * scale, (scores, expected)

    loss, parts = model.loss(batch)
    loss = loss.detach()
    pairs = {k: (p.users.tolist(), p.pos.tolist(), p.neg.tolist()) for k, p in batch.pairs.items()}
    expected_loss = ref.loss(pairs)
    assert abs(float(loss) - expected_loss) <= 1e-6 * abs(expected_loss), \
        (float(loss), expected_loss, parts)


def test_reference_cogcn_tables_match_encoder():
    """Every per-behavior output E^{k,*} (not only the target scores), each constraint setting."""
    ds = tiny_dataset()
    for name in ("copf", "copf-p", "copf-a", "copf-f", "copf-c", "copf-b", "copf-h",
                 "copf-wo-cogcn"):
        model = build(name, ds, dim=4, layers=[2, 1, 2])
        ref = Reference(model, ds.matrices())
        tables = model.encoder().extra["behavior_tables"]
        for k in range(3):
            got = tables[k].detach().double().numpy()
            assert np.abs(got - ref.outs[k]).max() <= 1e-6 * np.abs(ref.outs[k]).max(), (name, k)
