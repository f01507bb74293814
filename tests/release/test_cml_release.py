"""``cml`` against the authors' release (weiwei1206/CML dd84acd, main.py ``trainEpoch``, BGNN.py,
MV_Net.py; PyTorch): one batch of a 200-user, 300-item Taobao slice, the same initial weights
(encoder and weight net phi), d = 16, three layers, float32. Our sampler's batch, contrastive
samples and weight-net dropout masks were fed to the release (the test checks our model still
draws them); three steps on the same batch, each the release's three rounds, the outer update
with the release's AdamW (lr 1e-3, weight decay 1e-4) after clipping to norm 20.
results/notes/cml-release.md says how the fixture was made and what each tolerance allows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.multi import cml_parts as parts
from baselines.multi.cml import _ssl_slots
from bench.train import streams
from bench.train.samplers import make_sampler, member_batch
from tests.release.tf_step import (OurStep, load_fixture, max_differences, model_on_slice,
                                   slice_dataset)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
THETA = ("encoder.users", "encoder.items", "encoder.u_w", "encoder.i_w", "encoder.u_cat",
         "encoder.i_cat")
STEPS = 3
K = 3


@pytest.fixture(scope="module")
def fx():
    return load_fixture("cml/cml")


def build(fx):
    model, cfg = model_on_slice("cml", fx)
    with torch.no_grad():
        model.decoder.phi.copy_(torch.from_numpy(fx["init_buffers/phi"]))
    sampler = make_sampler(model, slice_dataset(fx), cfg, torch.device("cpu"),
                           streams.run_keys([int(fx["batch/seed"])]))
    sampler.start_epoch(0)
    batch = member_batch(sampler.batch(torch.tensor(0), torch.tensor(0)), 0)
    return model, cfg, batch


@pytest.fixture(scope="module")
def trained(fx):
    """Our three steps, with every round's trace, and the batch they ran on."""
    model, cfg, batch = build(fx)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    steps = []
    for _ in range(STEPS):
        model.decoder.trace = {}
        total, terms = model.loss(batch)
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 20.0)
        steps.append({"trace": model.decoder.trace, "total": float(total),
                      "terms": {k: float(v) for k, v in terms.items()},
                      "grad3": [p.grad.detach().clone() for p in model.encoder.weights()]})
        opt.step()
        steps[-1]["theta"] = [p.detach().clone() for p in model.encoder.weights()]
        steps[-1]["phi"] = model.decoder.phi.detach().clone()
        model.decoder.trace = None
    return model, cfg, batch, steps


def test_cml_release_batch_and_draws_are_ours(fx):
    """The fixture's batch, contrastive samples and dropout masks are what our code draws."""
    model, cfg, batch = build(fx)
    assert np.array_equal(batch.noise.numpy(), fx["batch/noise"])
    valid = (batch.user_weight > 0).numpy()
    assert np.array_equal(batch.users.numpy()[valid], fx["batch/users"])
    for k in range(K):
        pk, mk = batch.pairs[k], batch.extra["meta_pairs"][k]
        pos = np.where(pk.weight.numpy() > 0, pk.pos.numpy(), -1)[valid]
        assert np.array_equal(pos, fx[f"batch/{k}/pos"])
        assert np.array_equal(pk.neg.numpy()[valid], fx[f"batch/{k}/neg"])
        keep = (mk.weight > 0).numpy()
        for f in ("users", "pos", "neg"):
            assert np.array_equal(getattr(mk, f).numpy()[keep], fx[f"meta/{k}/{f}"]), (k, f)
    for r in (1, 2, 3):
        if r == 2:
            users, w = _ssl_slots(batch.extra["meta_users"], batch.extra["meta_weight"], 12,
                                  batch.noise, 1002)
            pairs = batch.extra["meta_pairs"]
        else:
            users, w = _ssl_slots(batch.users, batch.user_weight, 819, batch.noise, 1000 + r)
            pairs = batch.pairs
        real = int(w.sum())
        assert np.array_equal(users[:real].numpy(), fx[f"draws/ssl{r}"])
        sums = []
        for k in range(K):
            keep = pairs[k].weight > 0
            ssl = parts.dropout_masks(batch.noise, 64 * r + 2 * k + 1, users.shape[-1],
                                      model.decoder.hidden, cfg["cml_drop"])
            rs = parts.dropout_masks(batch.noise, 64 * r + 2 * k, len(pairs[k]),
                                     model.decoder.hidden, cfg["cml_drop"])
            sums += [float(ssl[0][:real].sum()), float(ssl[1][:real].sum()),
                     float(ssl[2][:real].sum()), float(rs[0][keep].sum()),
                     float(rs[1][keep].sum()), float(rs[2][keep].sum())]
        assert np.array_equal(np.array(sums), fx[f"draws/mask_sums{r}"]), r


def test_cml_release_score_matrix_matches(fx):
    model, _, _ = build(fx)
    ours = model.scorer()(torch.arange(int(fx["slice/shape"][0]))).numpy()
    absolute, relative = max_differences(ours, fx["release/scores0"])
    assert relative < 2e-6, (absolute, relative)


def test_cml_release_loss_parts_of_every_round_match(trained, fx):
    """Each round's J and its parts (the release's parts from its own per-row values)."""
    _, _, _, steps = trained
    for t, step in enumerate(steps, start=1):
        tr = step["trace"]
        for r in (1, 2, 3):
            mine = step["terms"] if r == 3 else {p: float(tr[f"round{r}/{p}"])
                                                 for p in ("bpr", "reg", "ssl")}
            total = step["total"] if r == 3 else sum(mine.values())
            assert total == pytest.approx(float(fx[f"release/step{t}/round{r}/total"]),
                                          rel=2e-6, abs=1e-9), (t, r)
            for p, value in mine.items():
                # the release's reg is its total minus the other parts: a difference of floats
                assert value == pytest.approx(float(fx[f"release/step{t}/round{r}/{p}"]),
                                              rel=1e-5, abs=1e-9), (t, r, p)


def test_cml_release_row_losses_and_weights_match(trained, fx):
    """Step 1, every round and behavior: BPR row losses, contrastive losses, phi's weights."""
    _, _, batch, steps = trained
    tr = steps[0]["trace"]
    for r in (1, 2, 3):
        pairs = batch.extra["meta_pairs"] if r == 2 else batch.pairs
        for k in range(K):
            keep = (pairs[k].weight > 0).numpy()
            for key in ("bpr_rows", "bpr_weights", "ssl_rows", "ssl_weights"):
                theirs = fx[f"release/step1/round{r}/{key}/{k}"]
                ours = tr[f"round{r}/{key}/{k}"].numpy()
                ours = ours[keep] if key.startswith("bpr") else ours[:len(theirs)]
                absolute, relative = max_differences(ours, theirs)
                assert relative < 5e-6, (r, k, key, absolute, relative)


def test_cml_release_gradients_of_every_round_match(trained, fx):
    """Round 1's clipped gradients of the copy and of phi, the copy after its AdamW step,
    round 2's (meta) gradient of phi, round 3's clipped gradient of the model."""
    _, _, _, steps = trained
    tr, grad3 = steps[0]["trace"], steps[0]["grad3"]
    for i, name in enumerate(THETA):
        for ours, key in ((tr[f"round1/grad_theta/{i}"], "round1/grad"),
                          (grad3[i], "round3/grad")):
            absolute, relative = max_differences(ours.numpy(), fx[f"release/step1/{key}/{name}"])
            assert relative < 1e-5, (key, name, absolute, relative)
        # the copy's sign step is lr 3e-4 per entry; float32 leaves far less
        absolute = float(np.abs(tr[f"round1/copy/{i}"].numpy()
                                - fx[f"release/step1/round1/copy/{name}"]).max())
        assert absolute < 1e-6, (name, absolute)
    for ours, key in ((tr["round1/grad_phi"], "round1/grad/phi"),
                      (tr["round2/grad_phi"], "round2/grad/phi")):
        absolute, relative = max_differences(ours.numpy(), fx[f"release/step1/{key}"])
        assert relative < 1e-5, (key, absolute, relative)


def test_cml_release_parameters_after_three_steps_match(trained, fx):
    """theta after the outer AdamW step, phi after its two AdamW steps per step."""
    _, _, _, steps = trained
    for t, step in enumerate(steps, start=1):
        for i, name in enumerate(THETA):
            absolute = float(np.abs(step["theta"][i].numpy()
                                    - fx[f"release/step{t}/{name}"]).max())
            assert absolute < 1e-6, (t, name, absolute)
        # phi's steps are 1e-4 per entry; entries whose gradient is near Adam's epsilon (1e-8)
        # turn float32 noise of that gradient into ~1e-6 (see the note)
        absolute = float(np.abs(step["phi"].numpy() - fx[f"release/step{t}/phi"]).max())
        assert absolute < 5e-6, (t, absolute)


def test_cml_release_suite_trainer_step_matches_on_this_slice(fx):
    """The suite's own step (MemberBatch + FlatAdam, PyTorch Adam at lr 1e-3) against the
    release's AdamW + clipping: here clipping never acts (gradient norms ~0.02 against 20) and
    AdamW's decay moves a weight by lr * 1e-4 * |w| per step, so three steps agree within float
    noise; the release's CyclicLR (lr 1e-3 up to 5e-3 from epoch 1) is what the trainer lacks."""
    model, cfg, batch = build(fx)
    step = OurStep(model, cfg, batch)
    for t in range(1, STEPS + 1):
        after = step.step()
        for name in THETA:
            absolute = float(np.abs(after[name] - fx[f"release/step{t}/{name}"]).max())
            assert absolute < 1e-6, (t, name, absolute)
