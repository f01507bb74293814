"""``bcipm`` against the authors' release (MingshiYan/BIPN 31f3a7c, model.py ``BIPN`` with its
lightGCN.py ``LightGCN``, utils.py ``BPRLoss``/``EmbLoss``, torch Adam as trainer.py builds it):
our sampler's first batch (512 records, 4 negatives each, one target triple per record whose user
has buys) of a 200-user Taobao slice, the same initial weights, d = 8, two layers, float32. The
release was fed the same records, negatives and triples in its ``[B, 6, 4]`` batch form.
results/notes/bcipm-release.md says how the fixture was made and what each tolerance allows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.base import Batch, Pairs
from bench.train import streams
from bench.train.samplers import endless_batches, make_sampler, member_batch
from tests.release.tf_step import (OurStep, load_fixture, max_differences, model_on_slice,
                                   slice_dataset)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
DIM = 8
EXTRA = ("record_items", "record_behaviors", "negatives", "point_slot", "point_items",
         "point_weight", "record_anchor")


@pytest.fixture(scope="module")
def fx():
    return load_fixture("bcipm/bcipm")


def tensor(array: np.ndarray) -> torch.Tensor:
    """Ids are stored as int32; the model indexes with int64."""
    t = torch.from_numpy(array)
    return t.long() if t.dtype == torch.int32 else t


def build(fx):
    model, cfg = model_on_slice("bcipm", fx, dim=DIM, graph_layers=int(fx["cfg/layers"]),
                                reg=float(fx["cfg/reg"]), lr=float(fx["cfg/lr"]),
                                log_reg=float(fx["cfg/log_reg"]),
                                batch_size=int(fx["cfg/batch_size"]))
    # the release's Adam and its neg_count
    assert cfg["optimizer"] == "adam" and cfg["n_negatives"] == 4
    pairs = Pairs(*(tensor(fx[f"batch/2/{f}"]) for f in ("users", "pos", "neg", "weight")))
    batch = Batch(users=tensor(fx["batch/users"]), pairs={2: pairs},
                  extra={k: tensor(fx[f"batch/extra/{k}"]) for k in EXTRA},
                  user_weight=tensor(fx["batch/user_weight"]), noise=tensor(fx["batch/noise"]))
    return model, cfg, batch


def test_bcipm_release_batch_is_our_samplers(fx):
    """The fixture's batch is still what our sampler draws first for seed 7 on the slice."""
    model, cfg, stored = build(fx)
    sampler = make_sampler(model, slice_dataset(fx), cfg, torch.device("cpu"),
                           streams.run_keys([7]))
    drawn = member_batch(next(endless_batches(sampler))[0])
    assert torch.equal(drawn.users, stored.users)
    for f in ("users", "pos", "neg", "weight"):
        assert torch.equal(getattr(drawn.pairs[2], f), getattr(stored.pairs[2], f)), f
    for k in EXTRA:
        assert torch.equal(drawn.extra[k], stored.extra[k]), k


def test_bcipm_release_batch_data_holds_the_same_samples(fx):
    """The release's ``[B, 6, 4]`` rows: (u, i, b, 1), four (u, neg, b, 0), (u, pos, neg, 0) or
    zeros for a user without buys; 1-based ids."""
    _, _, batch = build(fx)
    rel = fx["release/batch_data"].astype(np.int64)
    ex = {k: v.numpy() for k, v in batch.extra.items()}
    users = batch.users.numpy() + 1
    assert np.array_equal(rel[:, 0], np.stack([users, ex["record_items"] + 1,
                                               ex["record_behaviors"], np.ones_like(users)], 1))
    for j in range(4):
        assert np.array_equal(rel[:, 1 + j, 1], ex["negatives"][:, j] + 1)
        assert np.array_equal(rel[:, 1 + j, [0, 2, 3]],
                              np.stack([users, ex["record_behaviors"], 0 * users], 1))
    pairs = batch.pairs[2]
    has = pairs.weight.numpy() > 0
    want = np.stack([users, pairs.pos.numpy() + 1, pairs.neg.numpy() + 1, 0 * users], 1)
    assert np.array_equal(rel[has, 5], want[has]) and not rel[~has, 5].any()


def test_bcipm_release_loss_parts_match(fx):
    model, cfg, batch = build(fx)
    total, parts = OurStep(model, cfg, batch).losses()
    for name in ("bce", "bpr", "reg"):    # each already times log_reg, 1 - log_reg, reg
        assert float(parts[name]) == pytest.approx(float(fx[f"release/{name}"]), rel=2e-6,
                                                   abs=0), name
    assert float(total) == pytest.approx(float(fx["release/loss"]), rel=2e-6, abs=0)


def test_bcipm_release_score_matrix_matches(fx):
    model, _, _ = build(fx)
    model.eval()
    users = tensor(fx["release/score_users"])
    with torch.no_grad():
        ours = model.scorer()(users).numpy()
    theirs = fx["release/scores"]
    # per row: a user without buys has lambda = 1e8, so its row is ~1e8 times larger
    for row, (mine, release) in enumerate(zip(ours, theirs)):
        absolute, relative = max_differences(mine, release)
        assert relative < 2e-6, (int(users[row]), absolute, relative)


def test_bcipm_release_gradients_match(fx):
    model, cfg, batch = build(fx)
    for name, grad in OurStep(model, cfg, batch).gradients().items():
        absolute, relative = max_differences(grad, fx[f"grad/{name}"])
        assert relative < 2e-5, (name, absolute, relative)


def test_bcipm_release_three_adam_steps_match(fx):
    model, cfg, batch = build(fx)
    step = OurStep(model, cfg, batch)
    for t in (1, 2, 3):
        for name, value in step.step().items():
            # an update is about lr = 1e-4 per entry; float32 leaves ~5e-8
            absolute = float(np.abs(value - fx[f"step{t}/{name}"]).max())
            assert absolute < 1e-6, (t, name, absolute)
