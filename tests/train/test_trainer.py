"""Schedules, the staircase learning rate, and the two protocols on demo data."""
from __future__ import annotations

import torch

from bench.data.demo import make_demo
from bench.data.holdout import with_validation_holdout
from bench.models.registry import build_model, get_model
from bench.train.seeds import generator
from bench.train.trainer import make_optimizer, paper_test_epochs, train


def test_copf_test_schedule_matches_reference():
    epochs = paper_test_epochs({"epochs": 200, "eval_schedule": "copf"})
    assert min(epochs) == 0 and 1 not in epochs and 93 in epochs and max(epochs) == 198
    assert len(epochs) == 37           # plus the final test after the loop
    assert paper_test_epochs({"epochs": 10, "eval_schedule": "every", "eval_every": 5}) == {0, 5}


def test_staircase_decay_per_optimizer_step():
    param = torch.nn.Parameter(torch.zeros(1))
    model = torch.nn.Module()
    model.p = param
    opt, schedule = make_optimizer(model, {"lr": 1e-3, "lr_decay": 0.96, "decay_steps": 0,
                                           "batch_size": 256}, 10, n_users=15449)
    lrs = []
    for _ in range(125):
        opt.step()
        schedule.step()
        lrs.append(opt.param_groups[0]["lr"])
    # decay_steps = 15449 // 256 = 60: lr drops after step 60 and after step 120
    assert lrs[58] == 1e-3 and abs(lrs[59] - 0.96e-3) < 1e-12 and abs(lrs[119] - 0.96**2 * 1e-3) < 1e-12


def _run(protocol, data, epochs=4):
    spec = get_model("lightgcn")
    cfg = spec.resolve("demo", data.n_behaviors, {"epochs": epochs, "eval_every": 1,
                                                  "eval_schedule": "every"})
    model = build_model(spec, data, cfg, "cpu", generator(1))
    return train(model, data, cfg, protocol, generator(2), torch.device("cpu"))


def test_paper_protocol_reports_best_on_test_and_last():
    data = make_demo(n_users=300, n_items=400, seed=7)
    out = _run("paper", data)
    assert set(out.reported) == {"best_test", "last"}
    best = out.reported["best_test"]["full/default"].metrics["HR@10"]
    tested = [p["test"]["HR@10"] for p in out.curves if "test" in p]
    assert best == max(tested)
    assert out.reported["last"]["full/default"].metrics["HR@10"] == tested[-1]


def test_honest_protocol_selects_on_validation_and_tests_once():
    data = with_validation_holdout(make_demo(n_users=300, n_items=400, seed=7), seed=0)
    out = _run("honest", data)
    assert set(out.reported) == {"valid", "valid_selected"}
    assert not any("test" in p for p in out.curves)
    valid = [p["valid"]["HR@10"] for p in out.curves if "valid" in p]
    epoch = out.selected_epoch["valid_selected"]
    assert valid[epoch] == max(valid)


def test_cpu_training_is_bit_for_bit_repeatable():
    data = make_demo(n_users=300, n_items=400, seed=7)
    a, b = _run("paper", data, 2), _run("paper", data, 2)
    assert a.curves[:-1] == [dict(p, seconds=q["seconds"]) for p, q in zip(b.curves[:-1], a.curves)]
    assert (a.reported["last"]["full/default"].per_user["NDCG@10"]
            == b.reported["last"]["full/default"].per_user["NDCG@10"]).all()
