"""``neumf`` against the release: the PyTorch port guoyang9/NCF @ 89ff06f (``model.py`` NCF
'NeuMF-end', ``data_utils.NCFData.ng_sample``, ``main.py``'s ``BCEWithLogitsLoss`` and torch Adam),
which the spec names as reproducing the Keras release; and, where its fixture is present, the
Keras release's ``NeuMF.get_model`` rebuilt layer for layer under TF 2 Keras (binary cross-entropy
on probabilities, Keras Adam = our ``adam-tf1``). One batch of 256 rows (the port's own negatives
and shuffle) of a 60-user Taobao slice, the same initial weights, f = 8, layers [64,32,16,8]
(the release's defaults; the port's factor_num 8, num_layers 3 is the same network).
results/notes/neumf-release.md says how the fixtures were made."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.base import Batch
from tests.release.tf_step import (FIXTURES, OurStep, load_fixture, max_differences,
                                   model_on_slice)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
RELEASES = ["port", "keras"]


@pytest.fixture(scope="module", params=RELEASES)
def fx(request):
    if not (FIXTURES / "neumf" / f"{request.param}.npz").exists():
        pytest.skip(f"no {request.param} fixture")
    data = load_fixture(f"neumf/{request.param}")
    if request.param == "keras":    # same slice, batch, weights and settings as the port's
        shared = load_fixture("neumf/port")
        data.update({k: v for k, v in shared.items() if k.startswith(("slice/", "batch/",
                                                                       "init/", "cfg/"))})
    data["release"] = request.param
    return data


def build(fx):
    form = "adam" if fx["release"] == "port" else "adam-tf1"
    model, cfg = model_on_slice("neumf", fx, dim=int(fx["cfg/dim"]),
                                mlp_layers=[int(w) for w in fx["cfg/mlp_layers"]],
                                optimizer=form)
    assert cfg["lr"] == float(fx["cfg/lr"]) and cfg["num_neg"] == 4
    users = torch.from_numpy(fx["batch/users"].astype(np.int64))
    data = {"users": users, "items": torch.from_numpy(fx["batch/items"].astype(np.int64)),
            "labels": torch.from_numpy(fx["batch/labels"]), "weight": torch.ones(len(users))}
    return model, cfg, Batch(users, {}, extra={"rows": data})


def test_neumf_release_batch_is_a_release_epoch_slice(fx):
    """The port's rows: 4 negatives per positive, never a bought item."""
    bought = set(zip(fx["slice/buy/rows"].tolist(), fx["slice/buy/cols"].tolist()))
    rows = zip(fx["batch/users"].tolist(), fx["batch/items"].tolist(), fx["batch/labels"].tolist())
    assert all(((u, i) in bought) == (y == 1.0) for u, i, y in rows)


def test_neumf_release_loss_matches(fx):
    model, cfg, batch = build(fx)
    total, parts = OurStep(model, cfg, batch).losses()
    assert float(parts["bce"]) == pytest.approx(float(fx["release/loss"]), rel=2e-6, abs=0)
    assert float(total) == pytest.approx(float(fx["release/loss"]), rel=2e-6, abs=0)


def test_neumf_release_score_matrix_matches(fx):
    model, _, _ = build(fx)
    n_users = int(fx["slice/shape"][0])
    with torch.no_grad():
        ours = model.scorer()(torch.arange(n_users)).numpy()
    theirs = fx["release/scores"]
    if fx["release"] == "keras":    # the Keras model outputs sigmoid(logit)
        ours = 1.0 / (1.0 + np.exp(-ours.astype(np.float64)))
    absolute, relative = max_differences(ours, theirs)
    assert relative < 2e-6, (absolute, relative)


def test_neumf_release_gradients_match(fx):
    model, cfg, batch = build(fx)
    for name, grad in OurStep(model, cfg, batch).gradients().items():
        absolute, relative = max_differences(grad, fx[f"grad/{name}"])
        assert relative < 2e-5, (name, absolute, relative)


def test_neumf_release_three_adam_steps_match(fx):
    model, cfg, batch = build(fx)
    step = OurStep(model, cfg, batch)
    for t in (1, 2, 3):
        for name, value in step.step().items():
            # the fixture holds each parameter's change from the start; an update is about
            # lr = 1e-3 per entry, float32 rounding far less
            expected = fx[f"init/{name}"].astype(np.float64) + fx[f"step{t}/{name}"]
            absolute = float(np.abs(value - expected).max())
            assert absolute < 1e-6, (t, name, absolute)
