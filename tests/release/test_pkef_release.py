"""``pkef`` against the authors' release (MC-CV/PKEF, PKEF_final.py, decoder pme, TF1 under
tf.compat.v1): one fixed batch of a 60-user Taobao slice (main pairs of every behavior and the
"k but not j" pairs), the same initial weights, d = 16, layers [4, 1, 1], lambda [0, 4/6, 2/6].
The fixture holds the release's loss terms, target score matrix, gradients and parameters after
three Adam steps (the third at the decayed rate); results/notes/pkef-release.md says how it was
made and what each tolerance allows (float32 on both sides)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.decoders.pme import uni_matrix
from bench.models.base import bpr_softplus
from tests.release.tf_step import (OurStep, fixture_batch, load_fixture, max_differences,
                                   model_on_slice, slice_dataset, uni_pairs)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
K = 3


@pytest.fixture(scope="module")
def fx():
    return load_fixture("pkef")


def build(fx):
    model, cfg = model_on_slice("pkef", fx, dim=16, optimizer="adam-tf1",
                                decay_steps=int(fx["cfg/decay_step"]))
    # the release's own settings, unchanged by the slice
    assert (cfg["lr"], cfg["reg"], cfg["mult"]) == (float(fx["cfg/lr"]), float(fx["cfg/reg"]),
                                                    float(fx["cfg/mult"]))
    assert cfg["pkef_layers"] == fx["cfg/gnn_layer"].tolist()
    np.testing.assert_allclose(cfg["loss_weights"], fx["cfg/coefficient"], rtol=1e-15)
    return model, cfg, fixture_batch(fx, extra={"uni": uni_pairs(fx)})


def test_pkef_release_k_but_not_j_sets_match(fx):
    model, _, _ = build(fx)
    dataset = slice_dataset(fx)
    release_nnz = fx["cfg/uni_nnz"]
    for k in range(K):
        for j in range(K):
            if j != k:
                assert uni_matrix(dataset, k, j).nnz == release_nnz[k, j], (k, j)
    # lambda_pv = 0: the release weighs pv's terms by 0, ours does not train them
    assert model.decoder.uni_pairs == [(k, j) for k in (1, 2) for j in range(K)
                                       if j != k and release_nnz[k, j] > 0]


def test_pkef_release_loss_parts_match(fx):
    model, cfg, batch = build(fx)
    total, parts = OurStep(model, cfg, batch).losses()
    # the release's preLoss is sum_k lambda_k * 3 * (main + parallel + sum_j uni): our bpr, parallel
    # and uni parts; its regLoss our l2 (E0 from the encoder, the gate's W from the decoder)
    for ours, theirs in (("bpr", "bpr"), ("parallel", "parallel"), ("uni", "uni"),
                         ("l2", "reg_loss")):
        assert float(parts[ours]) == pytest.approx(float(fx[f"release/{theirs}"]), rel=2e-6,
                                                   abs=0), ours
    assert float(total) == pytest.approx(float(fx["release/loss"]), rel=2e-6, abs=0)


def test_pkef_release_every_task_term_matches(fx):
    """Each BPR mean the release adds up, pv's (weight 0) included."""
    model, cfg, batch = build(fx)
    mult = cfg["mult"]
    with torch.no_grad():
        reps = model.encoder()
        for k in range(K):
            p = batch.pairs[k]
            main = [mult * model.decoder.pair_scores(reps, k, p.users, items)
                    for items in (p.pos, p.neg)]
            y_u, y_v = reps.extra["parallel_users"][k], reps.extra["parallel_items"][k]
            par = [mult * (y_u[p.users] * y_v[items]).sum(-1) for items in (p.pos, p.neg)]
            for name, (pos, neg) in ((f"bpr_main{k}", main), (f"bpr_par{k}", par)):
                assert float(bpr_softplus(pos, neg)) == pytest.approx(
                    float(fx[f"release/{name}"]), rel=2e-6, abs=0), name
        for (k, j), p in batch.extra["uni"].items():
            pos, neg = (model.decoder.uni_scores(reps, k, j, p.users, items)
                        for items in (p.pos, p.neg))
            assert float(bpr_softplus(pos, neg)) == pytest.approx(
                float(fx[f"release/bpr_uni{k}_{j}"]), rel=2e-6, abs=0), (k, j)


def test_pkef_release_target_score_matrix_matches(fx):
    model, _, _ = build(fx)
    users = torch.arange(int(fx["slice/shape"][0]))
    ours = model.scorer()(users).numpy()
    absolute, relative = max_differences(ours, fx["release/scores"])
    assert relative < 2e-6, (absolute, relative)


def test_pkef_release_gradients_match(fx):
    model, cfg, batch = build(fx)
    grads = OurStep(model, cfg, batch).gradients()
    for name, grad in grads.items():
        absolute, relative = max_differences(grad, fx[f"grad/{name}"])
        assert relative < 2e-5, (name, absolute, relative)


def test_pkef_release_three_adam_tf1_steps_match(fx):
    model, cfg, batch = build(fx)
    step = OurStep(model, cfg, batch)
    for t in (1, 2, 3):
        after = step.step()
        for name, value in after.items():
            # an update is about lr = 1e-3 per entry; float32 noise of near-zero gradients moves
            # Adam's first updates by up to 2e-6 (see the note)
            absolute = float(np.abs(value - fx[f"step{t}/{name}"]).max())
            assert absolute < 5e-6, (t, name, absolute)
