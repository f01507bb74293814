"""Configurations -> trials -> batches: a tune's trials are the runner's ordinary honest trials,
and they batch when they differ only in batchable values."""
from __future__ import annotations

import pytest

from bench.data.demo import make_demo
from bench.models.registry import get_model
from bench.runner import plan_trials
from bench.tune.plan import batch_count, plan_configurations
from bench.tune.space import parse_space


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_users=200, n_items=300, seed=3)


def copf_space():
    return parse_space({"model": "copf", "params": {
        "layers": {"values": [1, 2], "per_behavior": True, "also": ["mtl_layers"]},
        "loss_weights": {"simplex": 6},
        "cl_temperature": {"values": [0.1, 0.4]},
        "lr": {"values": [1e-3, 3e-3]}}}, "copf-test.toml")


def config(layers, weights, tau, lr=1e-3):
    return {"layers": layers, "loss_weights": weights, "cl_temperature": tau, "lr": lr}


def plan(demo, tmp_path, configurations, members=16, seeds=1, fixed=None):
    return plan_configurations(get_model("copf"), demo, copf_space(), configurations,
                               fixed or {}, 2, seeds, 2025, tmp_path, members)


def indices(plan_, batches):
    where = {t.run_id: c.index for c in plan_.configurations for t in c.trials}
    return [[where[t.run_id] for t in batch] for batch in batches]


def test_batchable_values_join_a_batch_and_structure_splits_it(demo, tmp_path):
    configs = [config(1, [2 / 6, 2 / 6, 2 / 6], 0.1),
               config(1, [1 / 6, 2 / 6, 3 / 6], 0.4, lr=3e-3),   # lr, tau, weights differ: joins
               config(2, [2 / 6, 2 / 6, 2 / 6], 0.1),            # layers: structural
               config(1, [0.0, 3 / 6, 3 / 6], 0.1),              # a zero weight joins too
               config(2, [1 / 6, 1 / 6, 4 / 6], 0.4),            # joins the other two-layer one
               config(1, [3 / 6, 2 / 6, 1 / 6], 0.1)]            # joins the first batch
    planned = plan(demo, tmp_path, configs)
    assert indices(planned, planned.batches) == [[0, 1, 3, 5], [2, 4]]
    assert len(planned.to_run) == 6 and not planned.stored
    # the members' own values are in their configurations: nothing is averaged or shared
    first = planned.batches[0]
    assert [t.config["params"]["cl_temperature"] for t in first] == [0.1, 0.4, 0.1, 0.1]
    assert [t.config["params"]["lr"] for t in first] == [1e-3, 3e-3, 1e-3, 1e-3]
    assert first[0].config["params"]["mtl_layers"] == [1, 1, 1]
    # the cap on members splits a batch; it never merges structures
    capped = plan(demo, tmp_path, configs, members=2)
    assert indices(capped, capped.batches) == [[0, 1], [2, 4], [3, 5]]


def test_runs_of_one_configuration_are_separate_batches_under_the_honest_protocol(demo, tmp_path):
    planned = plan(demo, tmp_path, [config(1, [2 / 6, 2 / 6, 2 / 6], 0.1),
                                    config(1, [1 / 6, 2 / 6, 3 / 6], 0.4)], seeds=2)
    assert [len(c.trials) for c in planned.configurations] == [2, 2]
    # each run has its own validation holdout: run 0 of both join, run 1 of both join
    assert [[t.run for t in batch] for batch in planned.batches] == [[0, 0], [1, 1]]
    assert batch_count(planned.trials, 16) == 2


def test_trials_are_the_ones_bench_run_plans_with_the_same_settings(demo, tmp_path):
    values = config(2, [0.0, 2 / 6, 4 / 6], 0.4, lr=3e-3)
    planned = plan(demo, tmp_path, [values], fixed={"reg": 1e-3})
    overrides = {"layers": [2, 2, 2], "mtl_layers": [2, 2, 2], "loss_weights": [0.0, 2 / 6, 4 / 6],
                 "cl_temperature": 0.4, "lr": 3e-3, "reg": 1e-3, "epochs": 2}
    assert planned.configurations[0].overrides == overrides
    by_run = plan_trials(["copf"], [demo], 1, "honest", 2025, overrides, tmp_path)
    assert planned.configurations[0].run_ids == [t.run_id for t in by_run.trials]


def test_a_configuration_met_twice_trains_once(demo, tmp_path):
    same = config(1, [2 / 6, 2 / 6, 2 / 6], 0.1)
    planned = plan(demo, tmp_path, [same, dict(same)])
    assert len(planned.configurations) == 2 and len(planned.to_run) == 1
    assert planned.configurations[0].run_ids == planned.configurations[1].run_ids
