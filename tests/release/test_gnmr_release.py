"""``gnmr`` against the authors' release (akaxlh/GNMR @ 2edb18f, labcode.py, TF1 under
tf.compat.v1; ``predictor=attentive`` against labcode.py @ 4d0aef3): one batch of the release's
own sampler (32 users x 40 pairs) on a 300-user Taobao slice, the same initial weights
(regenerated here from the seed the harness used, checked by checksums), d = 16, two layers,
reg 1. Each fixture holds the release's loss parts, the batch's 2560 predictions, score rows of 8
users against every item, the gradient, and the parameters after the first and the third of three
TF1 Adam steps (the third at the decayed rate), of every small parameter in full and of chosen
rows of the four tables. results/notes/gnmr-release.md says how they were made and what each
tolerance allows; the harness compared everything in full (the same agreement there)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.base import Batch, Pairs
from bench.models.registry import build_model, get_model, load_builtin
from bench.train.seeds import generator
from tests.release.tf_step import OurStep, load_fixture, max_differences, slice_dataset

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
TABLES = {"encoder.users": "users", "decoder.user_pred": "users", "encoder.items": "items",
          "decoder.item_pred": "items"}


def initial_weights(shapes: list[tuple[str, tuple[int, ...]]], seed: int) -> dict[str, np.ndarray]:
    """What the harness loaded into both sides: Xavier-uniform matrices (limit sqrt(6 / (a + b))
    of the last two axes; w1 per behavior), and every bias and b1 0.3 * N(0, 1), non-zero so
    that their use is checked; drawn in our parameter order from numpy's default_rng(seed)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes:
        if len(shape) == 1 or name.endswith(".b1"):
            out[name] = (0.3 * rng.standard_normal(shape)).astype(np.float32)
        else:
            limit = np.sqrt(6.0 / (shape[-2] + shape[-1]))
            out[name] = rng.uniform(-limit, limit, shape).astype(np.float32)
    return out


# the release's HEAD (2edb18f, concat-FC predictor) and its first commit (4d0aef3, the paper's
# multi-order attentive predictor; only ``ours()`` differs between the two)
@pytest.fixture(scope="module", params=["gnmr", "gnmr-attentive"])
def fx(request):
    return load_fixture(f"gnmr/{request.param}")


def build(fx):
    model, cfg = seeded_model(fx)
    batch = Batch(users=torch.from_numpy(fx["batch/ids"].astype(np.int64)), pairs={
        2: Pairs(*(torch.from_numpy(fx[f"batch/{f}"].astype(np.int64))
                   for f in ("users", "pos", "neg")))})
    return model, cfg, batch


def seeded_model(fx):
    """Our model on the slice with the release's settings and the harness's initial weights."""
    load_builtin()
    dataset = slice_dataset(fx)
    spec = get_model("gnmr")
    cfg = spec.resolve(dataset.name, dataset.n_behaviors,
                       {"decay_steps": int(fx["cfg/decay_step"]),
                        "predictor": str(fx["cfg/predictor"])})
    # the release's own settings, unchanged by the slice
    assert (cfg["lr"], cfg["lr_decay"], cfg["reg"], cfg["mult"], cfg["batch_size"], cfg["dim"],
            cfg["optimizer"]) == (float(fx["cfg/lr"]), float(fx["cfg/decay"]),
                                  float(fx["cfg/reg"]), float(fx["cfg/mult"]),
                                  int(fx["cfg/batch"]), 16, "adam-tf1")
    model = build_model(spec, dataset, cfg, "cpu", generator(0))
    params = dict(model.named_parameters())
    weights = initial_weights([(n, tuple(p.shape)) for n, p in params.items()],
                              int(fx["cfg/init_seed"]))
    with torch.no_grad():
        for name, value in weights.items():
            # numpy's stream is fixed across versions; the checksum says it still is
            assert float(np.abs(value.astype(np.float64)).sum()) == pytest.approx(
                float(fx[f"checksum/{name}"]), rel=1e-12), name
            params[name].copy_(torch.from_numpy(value))
    return model, cfg


def compared_part(name: str, value: np.ndarray, fx) -> np.ndarray:
    """The part of a parameter-shaped array the fixture keeps: chosen rows of the tables."""
    if name in TABLES:
        return value[fx[f"rows/{TABLES[name]}"]]
    return value


def test_gnmr_release_loss_parts_and_batch_predictions_match(fx):
    model, cfg, batch = build(fx)
    total, parts = OurStep(model, cfg, batch).losses()
    for ours, theirs in ((parts["hinge"], "pre_loss"), (parts["l2"], "reg_loss"),
                         (total, "loss")):
        assert float(ours.detach()) == pytest.approx(float(fx[f"release/{theirs}"]), rel=2e-6,
                                                     abs=0), theirs
    pairs = batch.pairs[2]
    with torch.no_grad():
        reps = model.encoder()
        dec = model.decoder
        fu = dec.features(reps, "users", pairs.users)
        pos = dec.pair_scores(fu, dec.features(reps, "items", pairs.pos))
        neg = dec.pair_scores(fu, dec.features(reps, "items", pairs.neg))
    absolute, relative = max_differences(torch.cat([pos, neg]).numpy(), fx["release/pred"])
    assert relative < 2e-6, (absolute, relative)


def test_gnmr_release_score_rows_match(fx):
    model, _, _ = build(fx)
    users = torch.from_numpy(fx["release/score_users"].astype(np.int64))
    ours = model.scorer()(users).numpy()
    absolute, relative = max_differences(ours, fx["release/score_rows"])
    assert relative < 2e-6, (absolute, relative)


def largest_gradient(fx) -> float:
    return max(float(np.abs(fx[key]).max()) for key in fx if key.startswith("grad/"))


def test_gnmr_release_gradients_match(fx):
    model, cfg, batch = build(fx)
    grads = OurStep(model, cfg, batch).gradients()
    assert len(grads) == len([k for k in fx if k.startswith("grad/")])
    # the gate biases (softmax over behaviors is blind to a shift) and some of b_r (units active
    # for a pair's positive and negative alike cancel in y_pos - y_neg) have zero gradient in
    # exact arithmetic: there both sides hold float32 noise, under 1e-8 of the largest gradient
    noise = 1e-8 * largest_gradient(fx)
    for name, grad in grads.items():
        theirs = fx[f"grad/{name}"]
        absolute = float(np.abs(compared_part(name, grad, fx) - theirs).max())
        assert absolute <= 2e-5 * float(np.abs(theirs).max()) + noise, (name, absolute)


def test_gnmr_release_three_adam_tf1_steps_match(fx):
    model, cfg, batch = build(fx)
    step = OurStep(model, cfg, batch)
    # Adam's first update is about lr * sign(g): on an entry whose gradient is noise (0 < |g| <=
    # 1e-8 of the largest, see above) it is a full-size step in a random direction on either
    # side, so those entries are not compared (in the full arrays 23 of 115,541 under concat-fc,
    # all gate biases and b_r; 21 of 115,013 under attentive, 3 of them in P_i)
    noise = 1e-8 * largest_gradient(fx)
    compared = {name: (fx[f"grad/{name}"] == 0) | (np.abs(fx[f"grad/{name}"]) > noise)
                for name in (k[len("grad/"):] for k in fx if k.startswith("grad/"))}
    skipped = sum(int((~keep).sum()) for keep in compared.values())
    assert skipped <= 30, skipped
    for t in (1, 2, 3):
        after = step.step()
        if f"step{t}/{next(iter(after))}" not in fx:
            continue                 # the fixture keeps steps 1 and 3 (the decayed one)
        for name, value in after.items():
            # an update is about lr = 2e-4 per entry; float32 leaves under 1e-7 of it
            diff = np.abs(compared_part(name, value, fx) - fx[f"step{t}/{name}"])[compared[name]]
            assert diff.size == 0 or float(diff.max()) < 5e-7, (t, name, float(diff.max()))
