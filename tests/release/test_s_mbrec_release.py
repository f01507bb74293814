"""``s-mbrec`` against the authors' release (GuShuyun/MBRec bf4519a, ``modules/LightGCN.py`` class
``LightGCN`` = S-MBRec, ``utils/contrast.py``, ``utils/evaluate.py``, torch Adam as ``main.py``
builds it): a 300-user real Taobao slice, the same initial weights, d = 16, batch 180 records,
float32. The three batches are our sampler's first epoch for a fixed key (two full batches and the
padded 85-record tail), with our five negatives per record; the release was fed those records and
negatives (its tail is a smaller batch). results/notes/s-mbrec-release.md says how it was made."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.models.base import Batch, Pairs
from bench.models.registry import build_model, get_model, load_builtin
from bench.train import streams
from bench.train.samplers import make_sampler, member_batch
from bench.train.seeds import generator
from tests.release.tf_step import (OurStep, load_fixture, load_weights, max_differences,
                                   with_run_axis)

BEHAVIORS = ("pv", "cart", "buy")
LOSS_PARTS = ("rec", "l2", "cl_users_pv", "cl_users_cart", "cl_items_cart", "cl_items_pv")


@pytest.fixture(scope="module")
def fx():
    return load_fixture("s_mbrec/s_mbrec")


def slice_dataset(fx) -> MultiBehaviorDataset:
    n_users, n_items = (int(v) for v in fx["slice/shape"])
    train = {b: sp.csr_matrix((np.ones(len(fx[f"slice/{b}/rows"]), dtype=np.float32),
                               (fx[f"slice/{b}/rows"], fx[f"slice/{b}/cols"])),
                              shape=(n_users, n_items)) for b in BEHAVIORS}
    items = fx["slice/test_items"]
    users = np.flatnonzero(items >= 0)       # 33 users whose test item lies in the slice
    test = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items[users])),
                         shape=(n_users, n_items))
    return MultiBehaviorDataset("taobao-s-mbrec-slice", BEHAVIORS, train, test)


def build(fx):
    load_builtin()
    dataset = slice_dataset(fx)
    spec = get_model("s-mbrec")
    cfg = spec.resolve(dataset.name, 3, {"dim": int(fx["cfg/dim"]),
                                         "batch_size": int(fx["cfg/batch_size"])})
    model = build_model(spec, dataset, cfg, "cpu", generator(0))
    load_weights(model, fx, "init/")
    return model, cfg, dataset


def fixture_batch(fx, t: int) -> Batch:
    def ids(name):
        return torch.from_numpy(fx[f"batch{t}/{name}"].astype(np.int64))
    weight = torch.from_numpy(fx[f"batch{t}/weight"])
    negatives = ids("negatives")
    pairs = Pairs(ids("users"), ids("pos"), negatives[:, 0], weight)
    return Batch(ids("users"), {2: pairs}, {"negatives": negatives}, user_weight=weight)


def test_s_mbrec_release_batches_are_our_sampler_draws(fx):
    model, cfg, dataset = build(fx)
    sampler = make_sampler(model, dataset, cfg, torch.device("cpu"),
                           torch.from_numpy(fx["batch/key"])[None])
    assert sampler.steps_per_epoch == 3
    sampler.start_epoch(0)
    for t in (1, 2, 3):
        batch = member_batch(sampler.batch(torch.tensor(t - 1), torch.tensor(t - 1)))
        stored = fixture_batch(fx, t)
        assert torch.equal(batch.user_weight, stored.user_weight), t
        assert torch.equal(batch.pairs[2].users, stored.pairs[2].users), t
        assert torch.equal(batch.pairs[2].pos, stored.pairs[2].pos), t
        assert torch.equal(batch.extra["negatives"], stored.extra["negatives"]), t
    # the key is the one a run with sampling seed 7 gets
    assert torch.equal(torch.from_numpy(fx["batch/key"]), streams.run_keys([7])[0])


def test_s_mbrec_release_score_matrix_matches(fx):
    model, _, _ = build(fx)
    rows = torch.from_numpy(fx["release/score_rows"].astype(np.int64))
    with torch.no_grad():
        ours = model.scorer()(rows).numpy()
    absolute, relative = max_differences(ours, fx["release/scores_init"])
    assert relative < 2e-6, (absolute, relative)


def test_s_mbrec_release_protocol_on_our_scores(fx):
    """The release's own test (top 40 of all items, nothing masked, first test item) on our
    scores gives the HR@40 and NDCG@40 it printed."""
    model, _, dataset = build(fx)
    with torch.no_grad():
        scores = model.scorer()(torch.arange(dataset.n_users))
    top = torch.topk(scores, 40).indices.numpy()
    test_items = fx["slice/test_items"]
    users = np.flatnonzero(test_items >= 0)
    hits, ndcg = 0, 0.0
    for u in users:
        where = np.flatnonzero(top[u] == test_items[u])
        if len(where):
            hits, ndcg = hits + 1, ndcg + 1.0 / np.log2(where[0] + 2)
    hr_release, ndcg_release = fx["release/protocol_init"]
    assert hits / len(users) == pytest.approx(hr_release, abs=1e-12)
    assert ndcg / len(users) == pytest.approx(ndcg_release, rel=1e-9)


def test_s_mbrec_release_three_adam_steps_match(fx):
    """Every loss part, every gradient of step 1 and the parameters after steps 1 and 3, over the
    epoch's three batches (the third the padded tail)."""
    model, cfg, _ = build(fx)
    step = OurStep(model, cfg, fixture_batch(fx, 1))
    for t in (1, 2, 3):
        step.batch = with_run_axis(fixture_batch(fx, t))
        total, parts = step.losses()
        for name in LOSS_PARTS:
            # l2: ours sums |E_u[u]|², the release |sum_k alpha_k E_u[u]|² (sum_k alpha_k = 1 up
            # to rounding), so float32 leaves ~1e-5 of the small term
            tolerance = 5e-5 if name == "l2" else 2e-6
            released = float(fx[f"release/step{t}/{name}"])
            assert float(parts[name].detach()) == pytest.approx(released, rel=tolerance,
                                                                abs=0), (t, name)
        assert float(total.detach()) == pytest.approx(float(fx[f"release/step{t}/total"]), rel=2e-6,
                                             abs=0), t
        after = step.step()
        if t == 1:
            grads = step.engine.member_params(step.engine.flat.grad[0])
            for name, grad in grads.items():
                absolute, relative = max_differences(grad.detach().numpy(),
                                                     fx[f"grad1/{name}"])
                assert relative < 5e-6, (name, absolute, relative)
        if t in (1, 3):
            for name, value in after.items():
                # an Adam update is about lr = 1e-4 per entry; float32 leaves far less
                absolute = float(np.abs(value - fx[f"step{t}/{name}"]).max())
                assert absolute < 1e-6, (t, name, absolute)
    step.engine.sync_models()
    rows = torch.from_numpy(fx["release/score_rows"].astype(np.int64))
    with torch.no_grad():
        scores = model.scorer()(rows).numpy()
    absolute, relative = max_differences(scores, fx["release/scores_step3"])
    assert relative < 2e-6, (absolute, relative)
