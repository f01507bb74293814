"""``cigf`` against the authors' release (MC-CV/CIGF, base_framework_origin_final.py, decoder
sesg, TF1 under tf.compat.v1): one fixed batch of a 60-user Taobao slice, the same initial weights,
d = 16, two layers. The fixture holds the release's loss parts, target score matrix, gradients and
parameters after three Adam steps (the third at the decayed rate); results/notes/cigf-release.md
says how it was made and what each tolerance allows (float32 on both sides)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.base import bpr_softplus
from tests.release.tf_step import (OurStep, fixture_batch, load_fixture, max_differences,
                                   model_on_slice)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def fx():
    return load_fixture("cigf")


def build(fx):
    model, cfg = model_on_slice("cigf", fx, dim=16, cigf_layers=2, optimizer="adam-tf1",
                                decay_steps=int(fx["cfg/decay_step"]))
    # the release's own settings, unchanged by the slice
    assert (cfg["lr"], cfg["reg"], cfg["mult"]) == (float(fx["cfg/lr"]), float(fx["cfg/reg"]),
                                                    float(fx["cfg/mult"]))
    return model, cfg, fixture_batch(fx)


def test_cigf_release_loss_parts_match(fx):
    model, cfg, batch = build(fx)
    total, parts = OurStep(model, cfg, batch).losses()
    # CIGF's preLoss is the plain sum of the task BPR means: lambda_k * 3 = 1
    assert float(parts["bpr"]) == pytest.approx(float(fx["release/pre_loss"]), rel=2e-6, abs=0)
    assert float(parts["l2"]) == pytest.approx(float(fx["release/reg_loss"]), rel=2e-6, abs=0)
    assert float(total) == pytest.approx(float(fx["release/loss"]), rel=2e-6, abs=0)
    with torch.no_grad():
        reps = model.encoder()
        scores = model.decoder.task_scores(reps, model.decoder.trained_tasks(batch))
    for k in range(3):
        assert float(bpr_softplus(*scores[k])) == pytest.approx(float(fx[f"release/bpr{k}"]),
                                                                rel=2e-6, abs=0)


def test_cigf_release_target_score_matrix_matches(fx):
    model, _, _ = build(fx)
    users = torch.arange(int(fx["slice/shape"][0]))
    ours = model.scorer()(users).numpy()
    absolute, relative = max_differences(ours, fx["release/scores"])
    assert relative < 2e-6, (absolute, relative)


def test_cigf_release_gradients_match(fx):
    model, cfg, batch = build(fx)
    grads = OurStep(model, cfg, batch).gradients()
    for name, grad in grads.items():
        absolute, relative = max_differences(grad, fx[f"grad/{name}"])
        assert relative < 2e-5, (name, absolute, relative)


def test_cigf_release_three_adam_tf1_steps_match(fx):
    model, cfg, batch = build(fx)
    step = OurStep(model, cfg, batch)
    for t in (1, 2, 3):
        after = step.step()
        for name, value in after.items():
            # an update is about lr = 1e-3 per entry; float32 leaves under 1e-6 of it
            absolute = float(np.abs(value - fx[f"step{t}/{name}"]).max())
            assert absolute < 2e-6, (t, name, absolute)
