"""``crgcn`` against the authors' release (MingshiYan/CRGCN 86fbe26, model_cascade.py ``CRGCN``
with its gcn_conv.py ``GCNConv``, utils.py ``BPRLoss``/``EmbLoss``, torch Adam as trainer.py builds
it): one fixed batch of a 200-user Taobao slice (every user, one triple per behavior, (0, 0, 0)
rows for the behaviors a user lacks), the same initial weights, d = 8, cascade layers (2, 1, 2),
float32. results/notes/crgcn-release.md says how the fixture was made and what each tolerance
allows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.base import Batch, Pairs
from tests.release.tf_step import OurStep, load_fixture, max_differences, model_on_slice

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
DIM = 8


@pytest.fixture(scope="module")
def fx():
    return load_fixture("crgcn/crgcn")


def pairs_of(fx, k: int) -> Pairs:
    ids = (torch.from_numpy(fx[f"batch/{k}/{f}"].astype(np.int64)) for f in ("users", "pos", "neg"))
    return Pairs(*ids, torch.from_numpy(fx[f"batch/{k}/weight"]))


def build(fx, behaviors=(0, 1, 2)):
    layers = [int(n) for n in fx["cfg/layers"]]
    model, cfg = model_on_slice("crgcn", fx, dim=DIM, cascade_layers=layers,
                                reg=float(fx["cfg/reg"]))
    assert cfg["lr"] == float(fx["cfg/lr"]) and cfg["optimizer"] == "adam"   # the release's Adam
    n_users = int(fx["slice/shape"][0])
    batch = Batch(users=torch.arange(n_users), pairs={k: pairs_of(fx, k) for k in behaviors},
                  user_weight=torch.ones(n_users))
    return model, cfg, batch


def test_crgcn_release_batch_is_the_fixture_triples(fx):
    """The release's batch (1-based, shuffled, zero rows for a missing behavior) holds exactly our
    real triples, so both sides saw the same samples."""
    rel = fx["release/batch_order"].astype(np.int64)
    for k in range(3):
        real = fx[f"batch/{k}/weight"] > 0
        ours = {(u + 1, p + 1, n + 1) for u, p, n in zip(fx[f"batch/{k}/users"][real],
                                                         fx[f"batch/{k}/pos"][real],
                                                         fx[f"batch/{k}/neg"][real])}
        theirs = [tuple(row) for row in rel[:, k]]
        assert {t for t in theirs if t != (0, 0, 0)} == ours
        assert theirs.count((0, 0, 0)) == int((~real).sum())


def test_crgcn_release_loss_parts_match(fx):
    model, cfg, batch = build(fx)
    total, parts = OurStep(model, cfg, batch).losses()
    assert float(parts["bpr"]) == pytest.approx(float(fx["release/bpr"]), rel=2e-6, abs=0)
    assert float(parts["reg"]) == pytest.approx(float(fx["release/reg"]), rel=2e-6, abs=0)
    assert float(total) == pytest.approx(float(fx["release/loss"]), rel=2e-6, abs=0)
    for k in range(3):    # each behavior's BPR mean, padding rows included
        model, cfg, batch = build(fx, behaviors=(k,))
        _, parts = OurStep(model, cfg, batch).losses()
        assert float(parts["bpr"]) == pytest.approx(float(fx[f"release/bpr{k}"]), rel=2e-6,
                                                    abs=0), k


def test_crgcn_release_score_matrix_matches(fx):
    model, _, _ = build(fx)
    users = torch.from_numpy(fx["release/score_users"].astype(np.int64))
    with torch.no_grad():
        ours = model.scorer()(users).numpy()
    absolute, relative = max_differences(ours, fx["release/scores"])
    assert relative < 2e-6, (absolute, relative)


def test_crgcn_release_gradients_match(fx):
    model, cfg, batch = build(fx)
    for name, grad in OurStep(model, cfg, batch).gradients().items():
        absolute, relative = max_differences(grad, fx[f"grad/{name}"])
        assert relative < 2e-5, (name, absolute, relative)


def test_crgcn_release_three_adam_steps_match(fx):
    model, cfg, batch = build(fx)
    step = OurStep(model, cfg, batch)
    for t in (1, 2, 3):
        for name, value in step.step().items():
            # an update is about lr = 1e-2 per entry; Adam's eps amplifies the float32 noise of the
            # near-zero (reg-only) gradients of items outside the batch to ~2e-6
            absolute = float(np.abs(value - fx[f"step{t}/{name}"]).max())
            assert absolute < 2e-5, (t, name, absolute)
