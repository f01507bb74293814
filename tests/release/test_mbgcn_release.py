"""``mbgcn`` and its MF pretraining against the authors' release (tsinghua-fib-lab/MBGCN a674f2a,
model.py ``MBGCN`` / ``MF``, loss.py ``bprloss``, torch Adam): one fixed batch of a 60-user Taobao
slice, the same initial weights, d = 8, float32. The node and message dropout masks are our own
draws for the batch's key pair; the release was fed the same masks (stored in the fixture, and
checked here to be what our model draws). results/notes/mbgcn-release.md says how it was made."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines import pretrain
from bench.models.base import Batch, Pairs
from tests.release.tf_step import OurStep, load_fixture, max_differences, model_on_slice

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
DIM = 8


@pytest.fixture(scope="module")
def fx():
    return load_fixture("mbgcn")


@pytest.fixture(scope="module")
def mf_fx():
    return load_fixture("mbgcn-mf")


def build(fx):
    model, cfg = model_on_slice("mbgcn", fx, dim=DIM, pretrain_model="none")
    pairs = Pairs(*(torch.from_numpy(fx[f"batch/2/{f}"].astype(np.int64))
                    for f in ("users", "pos", "neg")))
    batch = Batch(users=torch.unique(pairs.users), pairs={2: pairs}, extra={},
                  noise=torch.from_numpy(fx["batch/noise"]))
    return model, cfg, batch


def test_mbgcn_release_dropout_masks_are_ours(fx):
    model, cfg, batch = build(fx)
    enc, dec = model.encoder, model.decoder
    model.train()
    p = cfg["node_dropout"]
    for t, k in enumerate((0, 1, 2, 2)):
        keep = (enc._dropped(k, batch.noise, t).forward_csr.values() * (1 - p)).round()
        assert np.array_equal(keep.numpy(), fx[f"mask/node{t}"]), t
    for j in range(3):
        ones = torch.ones(len(fx["batch/2/users"]), 2 * DIM)
        keep = (dec._drop(ones, batch.noise, j) * (1 - cfg["message_dropout"])).round()
        assert np.array_equal(keep.numpy(), fx[f"mask/msg{j}"]), j


def test_mbgcn_release_loss_parts_match(fx):
    model, cfg, batch = build(fx)
    total, parts = OurStep(model, cfg, batch).losses()
    assert float(parts["bpr"]) == pytest.approx(float(fx["release/bpr"]), rel=2e-6, abs=0)
    assert float(parts["l2"]) == pytest.approx(float(fx["release/l2"]), rel=2e-6, abs=0)
    assert float(total) == pytest.approx(float(fx["release/loss"]), rel=2e-6, abs=0)


def test_mbgcn_release_score_matrix_matches(fx):
    model, _, _ = build(fx)
    with torch.no_grad():
        ours = model.scorer()(torch.arange(int(fx["slice/shape"][0]))).numpy()
    absolute, relative = max_differences(ours, fx["release/scores"])
    assert relative < 2e-6, (absolute, relative)


def test_mbgcn_release_gradients_match(fx):
    model, cfg, batch = build(fx)
    for name, grad in OurStep(model, cfg, batch).gradients().items():
        absolute, relative = max_differences(grad, fx[f"grad/{name}"])
        assert relative < 2e-5, (name, absolute, relative)


def test_mbgcn_release_three_adam_steps_match(fx):
    model, cfg, batch = build(fx)
    step = OurStep(model, cfg, batch)
    for t in (1, 2, 3):
        for name, value in step.step().items():
            # an update is about lr = 3e-4 per entry; float32 leaves far less
            absolute = float(np.abs(value - fx[f"step{t}/{name}"]).max())
            assert absolute < 1e-6, (t, name, absolute)


def _mf(mf_fx):
    n_users, n_items = (int(v) for v in mf_fx["slice/shape"])
    cfg = pretrain.PretrainConfig(model="mf", max_epochs=1, eval_every=1, patience=1, lr=1e-2,
                                  reg=1e-2, batch_size=2048, dim=DIM, cutoff=10)
    mf = pretrain.MatrixFactorization(n_users, n_items, cfg, torch.Generator().manual_seed(0),
                                      torch.device("cpu"))
    with torch.no_grad():
        mf.users.copy_(torch.from_numpy(mf_fx["init/users"]))
        mf.items.copy_(torch.from_numpy(mf_fx["init/items"]))
    ids = [torch.from_numpy(mf_fx[f"batch/2/{f}"].astype(np.int64)) for f in ("users", "pos", "neg")]
    return mf, ids


def test_mbgcn_release_mf_pretraining_step_matches(mf_fx):
    mf, ids = _mf(mf_fx)
    loss = mf.loss(*ids)
    assert float(loss) == pytest.approx(float(mf_fx["release/loss"]), rel=2e-6, abs=0)
    loss.backward()
    for ours, key in ((mf.users.grad, "grad/users"), (mf.items.grad, "grad/items")):
        absolute, relative = max_differences(ours.numpy(), mf_fx[key])
        assert relative < 2e-5, (key, absolute, relative)
    scores = mf.scorer()(torch.arange(mf.users.shape[0])).numpy()
    assert max_differences(scores, mf_fx["release/scores"])[1] < 2e-6
    # the pretraining's own optimizer form: torch Adam at pretrain_lr
    mf, ids = _mf(mf_fx)
    opt = torch.optim.Adam(mf.parameters(), lr=1e-2)
    for t in (1, 2, 3):
        opt.zero_grad()
        mf.loss(*ids).backward()
        opt.step()
        for ours, key in ((mf.users, "users"), (mf.items, "items")):
            absolute = float(np.abs(ours.detach().numpy() - mf_fx[f"step{t}/{key}"]).max())
            assert absolute < 1e-6, (t, key, absolute)
