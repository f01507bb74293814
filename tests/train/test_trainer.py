"""Schedules, the staircase learning rate and both update forms of the flat Adam, the two protocols
and early stopping on demo data, alone and in a batch of runs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.data.demo import make_demo
from bench.data.holdout import with_validation_holdout
from bench.errors import ConfigError
from bench.models.registry import build_model, get_model
from bench.train.optim import BETA1, BETA2, EPSILON, FlatAdam
from bench.train.seeds import generator
from bench.train.trainer import Member, decay_steps, paper_test_epochs, train

CPU = torch.device("cpu")


def test_copf_test_schedule_matches_reference():
    epochs = paper_test_epochs({"epochs": 200, "eval_schedule": "copf"})
    assert min(epochs) == 0 and 1 not in epochs and 93 in epochs and max(epochs) == 198
    assert len(epochs) == 37           # plus the final test after the loop
    assert paper_test_epochs({"epochs": 10, "eval_schedule": "every", "eval_every": 5}) == {0, 5}
    assert paper_test_epochs({"epochs": 10, "eval_schedule": "final"}) == set()


def test_decay_steps_default_to_users_per_batch():
    assert decay_steps({"decay_steps": 0, "batch_size": 256}, 15449) == 60
    assert decay_steps({"decay_steps": 39, "batch_size": 256}, 15449) == 39
    assert decay_steps({"decay_steps": 0, "batch_size": 256}, 100) == 1


def test_staircase_decay_per_optimizer_step():
    """lr_t = lr * decay ** floor((t - 1) / decay_steps), each run its own lr and decay: with a
    constant gradient Adam's normalized step is 1, so each update moves a parameter by lr_t."""
    flat = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    lr, decay = torch.tensor([1e-3, 2e-3]), torch.tensor([0.96, 0.5])
    steps = decay_steps({"decay_steps": 0, "batch_size": 256}, 15449)      # 60
    opt = FlatAdam(flat, lr, decay, steps, "adam")
    used, moved = [], []
    for _ in range(125):
        flat.grad = torch.ones_like(flat)
        used.append(opt.current_lr()[:, 0].tolist())
        before = flat.detach().clone()
        opt.step()
        moved.append((before - flat.detach()).tolist())
    for t in range(1, 126):
        for s, (base, factor) in enumerate(((1e-3, 0.96), (2e-3, 0.5))):
            expected = base * factor ** ((t - 1) // 60)
            assert used[t - 1][s] == pytest.approx(expected, rel=1e-6)
            assert moved[t - 1][s] == pytest.approx([expected] * 3, rel=1e-6)
    # the drops: after update 60 and after update 120
    assert used[59][0] == pytest.approx(1e-3, rel=1e-6)
    assert used[60][0] == pytest.approx(0.96e-3, rel=1e-6)
    assert used[119][0] == pytest.approx(0.96e-3, rel=1e-6)
    assert used[120][0] == pytest.approx(0.96 ** 2 * 1e-3, rel=1e-6)
    assert used[120][1] == pytest.approx(2e-3 / 4, rel=1e-6)


def _problem(dtype):
    """Two runs' least-squares-plus-quartic losses over 5 parameters each."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 7, 5, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(2, 7, generator=g, dtype=torch.float64).to(dtype)
    start = torch.randn(2, 5, generator=g, dtype=torch.float64).to(dtype)

    def loss(s: int, p: torch.Tensor) -> torch.Tensor:
        return ((a[s] @ p - b[s]) ** 2).sum() + 0.1 * (p ** 4).sum()
    return start, loss


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_adam_form_equals_torch_adam_with_step_lr(dtype, tol):
    """Form ``adam`` is torch.optim.Adam (defaults) with StepLR stepped after every update, each
    row of the flat tensor as its own run."""
    start, loss = _problem(dtype)
    lrs, gammas, every = [0.05, 0.01], [0.5, 0.9], 4
    flat = start.clone().requires_grad_()
    opt = FlatAdam(flat, torch.tensor(lrs, dtype=dtype), torch.tensor(gammas, dtype=dtype), every,
                   "adam")
    refs = [start[s].clone().requires_grad_() for s in range(2)]
    ref_opts = [torch.optim.Adam([refs[s]], lr=lrs[s]) for s in range(2)]
    schedules = [torch.optim.lr_scheduler.StepLR(ref_opts[s], every, gammas[s]) for s in range(2)]
    for _ in range(15):
        flat.grad = None
        (loss(0, flat[0]) + loss(1, flat[1])).backward()
        opt.step()
        for s in range(2):
            ref_opts[s].zero_grad()
            loss(s, refs[s]).backward()
            ref_opts[s].step()
            schedules[s].step()
            torch.testing.assert_close(flat[s].detach(), refs[s].detach(), rtol=tol, atol=tol)
    assert not torch.allclose(flat.detach(), start, rtol=0, atol=1e-3)     # it did move
    assert int(opt.t) == 15


def _tf1_reference(start: np.ndarray, grads_of, lr: float, decay: float, every: int, steps: int):
    """tf.train.AdamOptimizer with the staircase decay, written from its documentation."""
    p, m, v = start.copy(), np.zeros_like(start), np.zeros_like(start)
    for t in range(1, steps + 1):
        g = grads_of(p)
        lr_t = lr * decay ** ((t - 1) // every)
        m = BETA1 * m + (1 - BETA1) * g
        v = BETA2 * v + (1 - BETA2) * g * g
        p = p - lr_t * math.sqrt(1 - BETA2 ** t) / (1 - BETA1 ** t) * m / (np.sqrt(v) + EPSILON)
    return p


def test_adam_tf1_form_puts_epsilon_hat_in_place():
    """``adam-tf1`` follows TensorFlow 1's formula; with gradients near epsilon the two forms
    differ (so the check tells them apart)."""
    scale = np.array([1e-7, 3e-8, 1.0, 2.0])

    def grads_of(p):       # a quadratic with very small curvature in the first two coordinates
        return scale * (p - 1.0)
    start = np.zeros(4)
    results = {}
    for form in ("adam", "adam-tf1"):
        flat = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
        opt = FlatAdam(flat, torch.tensor([0.01], dtype=torch.float64),
                       torch.tensor([0.8], dtype=torch.float64), 3, form)
        for _ in range(10):
            flat.grad = torch.as_tensor(grads_of(flat.detach()[0].numpy()))[None]
            opt.step()
        results[form] = flat.detach()[0].numpy()
    expected = _tf1_reference(start, grads_of, 0.01, 0.8, 3, 10)
    np.testing.assert_allclose(results["adam-tf1"], expected, rtol=1e-10, atol=1e-15)
    assert np.abs(results["adam"][:2] - results["adam-tf1"][:2]).max() > 1e-3
    np.testing.assert_allclose(results["adam"][2:], results["adam-tf1"][2:], rtol=1e-5)
    with pytest.raises(ConfigError, match="optimizer"):
        FlatAdam(torch.zeros(1, 2, requires_grad=True), torch.tensor([1e-3]), torch.tensor([1.0]),
                 1, "sgd")


# ---- training on demo data ----------------------------------------------------------------------
def _member(data, seed=1, sampling_seed=2, **overrides):
    spec = get_model("lightgcn")
    settings = {"epochs": 4, "eval_every": 1, "eval_schedule": "every", **overrides}
    cfg = spec.resolve("demo", data.n_behaviors, settings)
    return Member(build_model(spec, data, cfg, "cpu", generator(seed)), cfg, sampling_seed)


def _run(protocol, data, epochs=4, **overrides):
    outcomes, info = train([_member(data, epochs=epochs, **overrides)], data, protocol, CPU,
                           cuda_graphs="off")
    assert info["members"] == 1 and info["mode"] == "single"
    return outcomes[0]


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_users=300, n_items=400, seed=7)


@pytest.fixture(scope="module")
def held_out(demo):
    return with_validation_holdout(demo, seed=0)


def test_paper_protocol_reports_best_on_test_and_last(demo):
    out = _run("paper", demo, epochs=5, eval_every=2)
    assert set(out.reported) == {"best_test", "last"}
    tested = [(p["epoch"], p["test"]["HR@10"]) for p in out.curves if "test" in p]
    assert [e for e, _ in tested] == [0, 2, 4, 5]       # the schedule, then the end of training
    assert out.epochs_run == 5
    best = out.reported["best_test"]["full/default"].metrics["HR@10"]
    assert best == max(v for _, v in tested)
    # ties go to the later epoch
    best_epochs = [e for e, v in tested if v == best]
    assert out.selected_epoch["best_test"] == best_epochs[-1]
    assert out.reported["last"]["full/default"].metrics["HR@10"] == tested[-1][1]
    assert out.selected_epoch["last"] == 5
    assert all(math.isfinite(p["loss"]) for p in out.curves if "loss" in p)


def test_honest_protocol_selects_on_validation_and_tests_once(held_out):
    out = _run("honest", held_out)
    assert set(out.reported) == {"valid", "valid_selected"}
    assert not any("test" in p for p in out.curves)
    valid = [p["valid"]["HR@10"] for p in out.curves if "valid" in p]
    epoch = out.selected_epoch["valid_selected"]
    assert valid[epoch] == max(valid) and valid.index(max(valid)) == epoch   # the first best


def test_cpu_training_is_bit_for_bit_repeatable(demo):
    a, b = _run("paper", demo, 2), _run("paper", demo, 2)
    assert a.curves[:-1] == [dict(p, seconds=q["seconds"]) for p, q in zip(b.curves[:-1], a.curves)]
    assert (a.reported["last"]["full/default"].per_user["NDCG@10"]
            == b.reported["last"]["full/default"].per_user["NDCG@10"]).all()


def _stop_epoch(valid: list[float], patience: int) -> int | None:
    """The epoch (one check per epoch) at which the honest protocol's rule stops, if any."""
    best, bad = -math.inf, 0
    for epoch, value in enumerate(valid):
        if value > best:
            best, bad = value, 0
        else:
            bad += 1
        if bad >= patience:
            return epoch
    return None


def test_early_stopping_alone_and_in_a_batch(held_out):
    """A run whose validation stops improving stops after ``patience`` checks; in a batch, a run
    that stops early ends as it ends alone while the other runs go on."""
    # lr 1e-12 leaves the weights as they are: validation never improves after the first check
    stalled = dict(lr=1e-12, patience=2, epochs=6)
    alone = train([_member(held_out, **stalled)], held_out, "honest", CPU, cuda_graphs="off")[0][0]
    valid = [p["valid"]["HR@10"] for p in alone.curves if "valid" in p]
    assert _stop_epoch(valid, 2) == 2 and alone.epochs_run == 3 < 6
    assert len(valid) == 3 and alone.selected_epoch["valid_selected"] == 0
    # the same run next to one that trains normally (patience larger than its epochs)
    seen: dict[int, list[int]] = {0: [], 1: []}
    outcomes, info = train([_member(held_out, **stalled),
                            _member(held_out, seed=3, sampling_seed=4, epochs=6, patience=10)],
                           held_out, "honest", CPU, cuda_graphs="off",
                           on_epoch=lambda s, point: seen[s].append(point["epoch"]))
    assert info["members"] == 2 and info["mode"] == "fused"
    stopped, going = outcomes
    assert seen == {0: [0, 1, 2], 1: [0, 1, 2, 3, 4, 5]}     # nothing recorded after the stop
    assert stopped.epochs_run == 3 and going.epochs_run == 6
    assert stopped.selected_epoch == alone.selected_epoch
    for ours, own in zip(stopped.curves, alone.curves, strict=True):
        assert ours["epoch"] == own["epoch"] and ours.get("valid") == own.get("valid")
        assert ours["loss"] == pytest.approx(own["loss"], rel=1e-5)
    for key in ("valid", "valid_selected"):
        assert (stopped.reported[key]["full/default"].metrics
                == alone.reported[key]["full/default"].metrics)


def test_a_resumed_copf_trains_to_the_same_numbers(demo, tmp_path):
    """COPF (sampler slots and the contrastive loss's planned item rows both grow with the epochs)
    stopped after two epochs and resumed from its checkpoint ends bit for bit where an
    uninterrupted run ends: the checkpoint restores every shape it had."""
    from bench.train.trainer import Checkpoint
    spec = get_model("copf")
    cfg = spec.resolve(demo.name, demo.n_behaviors, {"epochs": 4, "eval_schedule": "final"})

    def run(checkpoint, epochs):
        model = build_model(spec, demo, {**cfg, "epochs": epochs}, "cpu", generator(3))
        member = Member(model, {**cfg, "epochs": epochs}, 7, {"ks": (10,), "protocols": ("full",),
                                                           "rules": ("default",)})
        outcomes, _ = train([member], demo, "paper", CPU, checkpoint=checkpoint)
        return model, outcomes[0]
    straight, _ = run(None, 4)
    path = tmp_path / "checkpoint.pt"
    run(Checkpoint(path, every=2), 2)                 # stops after epoch 2, checkpoint kept
    assert path.exists()
    resumed, outcome = run(Checkpoint(path, every=2), 4)
    assert outcome.resumed_from == 2
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
