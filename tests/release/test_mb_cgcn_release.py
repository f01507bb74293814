"""``mb-cgcn`` and its view pretraining against the authors' release (SS-00-SS/MBCGCN, TF1 under
tf.compat.v1): one fixed batch of a 60-user Taobao slice, the same initial weights, d = 16.

- ``mb-cgcn.npz``: MBCGCN.py with layers view 2 / cart 4 / buy 3 (the README's run), batch 48
  distinct buyers; its loss parts, every behavior's layer mean, the score matrix on the merged Z,
  the gradients and the parameters after three Adam steps.
- ``mb-cgcn-gcn.npz``: GCN.py (the view pretraining, 3 leaky-ReLU layers with weight and bias)
  on the slice's views, batch 48 distinct viewers; the same quantities for ``baselines.pretrain``'s
  ``ReleaseGCN``.

results/notes/mb-cgcn-release.md says how the fixtures were made and what each tolerance allows
(float32 on both sides)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.pretrain import PretrainConfig, ReleaseGCN
from bench.data.graphs import Graph, bipartite, normalize
from bench.models.base import Batch, Pairs
from bench.train.optim import FlatAdam
from tests.release.tf_step import (OurStep, load_fixture, max_differences, model_on_slice,
                                   slice_dataset)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
TARGET = 2
DIM, BATCH = 16, 48


@pytest.fixture(scope="module")
def fx():
    return load_fixture("mb-cgcn")


@pytest.fixture(scope="module")
def gfx():
    return load_fixture("mb-cgcn-gcn")


def ids(fx, key: str) -> torch.Tensor:
    return torch.from_numpy(fx[key].astype(np.int64))


def build(fx):
    model, cfg = model_on_slice("mb-cgcn", fx, dim=DIM, cascade_layers=[2, 4, 3],
                                pretrain_model="none", optimizer="adam-tf1", batch_size=BATCH)
    assert (cfg["lr"], cfg["reg"], cfg["lr_decay"]) == (1e-3, 1e-4, 1.0)   # the release's
    users = ids(fx, "batch/users")
    assert len(torch.unique(users)) == len(users) == BATCH      # distinct users, as it samples
    pairs = Pairs(users, ids(fx, "batch/pos"), ids(fx, "batch/neg"))
    return model, cfg, Batch(users=torch.unique(users), pairs={TARGET: pairs})


def test_mb_cgcn_release_loss_parts_match(fx):
    model, cfg, batch = build(fx)
    total, parts = OurStep(model, cfg, batch).losses()
    assert set(parts) == {"bpr", "l2"}
    assert float(parts["bpr"]) == pytest.approx(float(fx["release/bpr"]), rel=1e-6, abs=0)
    assert float(parts["l2"]) == pytest.approx(float(fx["release/l2"]), rel=1e-6, abs=0)
    assert float(total) == pytest.approx(float(fx["release/loss"]), rel=1e-6, abs=0)


def test_mb_cgcn_release_behavior_outputs_and_scores_match(fx):
    model, _, _ = build(fx)
    with torch.no_grad():
        reps = model.encoder()
        for k in range(3):
            ours = torch.cat([reps.users[k], reps.items[k]]).numpy()
            absolute, relative = max_differences(ours, fx[f"release/behavior{k}"])
            assert relative < 1e-6, (k, absolute, relative)
        scores = model.scorer()(torch.arange(int(fx["slice/shape"][0]))).numpy()
    absolute, relative = max_differences(scores, fx["release/scores"])
    assert relative < 1e-6, (absolute, relative)


def test_mb_cgcn_release_gradients_match(fx):
    model, cfg, batch = build(fx)
    grads = OurStep(model, cfg, batch).gradients()
    assert set(grads) == {key[len("grad/"):] for key in fx if key.startswith("grad/")}
    for name, grad in grads.items():
        absolute, relative = max_differences(grad, fx[f"grad/{name}"])
        assert relative < 1e-5, (name, absolute, relative)


def test_mb_cgcn_release_three_adam_tf1_steps_match(fx):
    model, cfg, batch = build(fx)
    step = OurStep(model, cfg, batch)
    for t in (1, 2, 3):
        for name, value in step.step().items():
            # an update moves an entry by about lr = 1e-3; see the note for the float32 noise
            absolute = float(np.abs(value - fx[f"step{t}/{name}"]).max())
            assert absolute < 1e-6, (t, name, absolute)


# ---- the view pretraining: GCN.py against baselines.pretrain.ReleaseGCN -------------------------
def view_gcn(fx, gfx) -> ReleaseGCN:
    dataset = slice_dataset(fx)
    views = dataset.matrices()[0]
    cfg = PretrainConfig(model="gcn", max_epochs=1, eval_every=1, patience=1, lr=1e-3, reg=1e-4,
                         batch_size=BATCH, dim=DIM, layers=3)
    graph = Graph(normalize(bipartite(views), "symmetric"), torch.device("cpu"))
    model = ReleaseGCN(graph, dataset.n_users, dataset.n_items, cfg, torch.Generator(),
                       torch.device("cpu"))
    params = dict(model.named_parameters())
    assert set(params) == {key[len("init/"):] for key in gfx if key.startswith("init/")}
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(torch.from_numpy(gfx[f"init/{name}"]))
    return model


def gcn_batch(gfx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return ids(gfx, "batch/users"), ids(gfx, "batch/pos"), ids(gfx, "batch/neg")


def test_mb_cgcn_release_view_gcn_loss_and_scores_match(fx, gfx):
    model = view_gcn(fx, gfx)
    users, pos, neg = gcn_batch(gfx)
    with torch.no_grad():
        out = model.outputs()
        u = model.n_users
        eu = out[users]
        bpr = torch.nn.functional.softplus((eu * out[u + neg]).sum(-1)
                                           - (eu * out[u + pos]).sum(-1)).mean()
        total = model.loss(users, pos, neg)
        scores = model.scorer()(torch.arange(u)).numpy()
    assert float(bpr) == pytest.approx(float(gfx["release/bpr"]), rel=1e-6, abs=0)
    assert float(total) == pytest.approx(float(gfx["release/loss"]), rel=1e-6, abs=0)
    # the L2 part is 4e-5 of the total, below float32's resolution there; it is linear in reg,
    # so a reg scaled by 1e8 reads it without cancellation
    with torch.no_grad():
        model.reg = 1e4
        l2 = (float(model.loss(users, pos, neg)) - float(bpr)) / 1e8
    assert l2 == pytest.approx(float(gfx["release/l2"]), rel=1e-5, abs=0)
    absolute, relative = max_differences(scores, gfx["release/scores"])
    assert relative < 1e-6, (absolute, relative)


def gcn_gradients(model: ReleaseGCN, gfx) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model.loss(*gcn_batch(gfx)).backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def test_mb_cgcn_release_view_gcn_gradients_match(fx, gfx):
    for name, grad in gcn_gradients(view_gcn(fx, gfx), gfx).items():
        absolute, relative = max_differences(grad.numpy(), gfx[f"grad/{name}"])
        assert relative < 1e-5, (name, absolute, relative)


def test_mb_cgcn_release_view_gcn_three_adam_tf1_steps_match(fx, gfx):
    """Our gradients under TF1's Adam form reproduce GCN.py's parameters."""
    model = view_gcn(fx, gfx)
    params = dict(model.named_parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])[None].clone()
    adam = FlatAdam(flat, torch.tensor([1e-3]), torch.tensor([1.0]), 1, "adam-tf1")
    for t in (1, 2, 3):
        flat.grad = torch.cat([g.reshape(-1) for g in gcn_gradients(model, gfx).values()])[None]
        adam.step()
        with torch.no_grad():
            for (name, param), chunk in zip(params.items(),
                                            flat[0].split([p.numel() for p in params.values()])):
                param.copy_(chunk.reshape(param.shape))
                absolute = float(np.abs(param.numpy() - gfx[f"step{t}/{name}"]).max())
                assert absolute < 1e-6, (t, name, absolute)

