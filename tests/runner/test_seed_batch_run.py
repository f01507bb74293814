"""`bench run --seed-batch`: each run's record as if trained alone, with how it was batched; which
trials may train together."""
from __future__ import annotations

import pytest

from bench.cli import main
from bench.records import iter_records
from bench.seed_groups import seed_groups
from bench.runner import Trial

RUN = ["run", "--models", "lightgcn,mbgcn", "--datasets", "demo", "--seeds", "2", "--epochs", "2",
       "--device", "cpu", "--no-progress"]


def records_by_run_id(folder) -> dict[str, dict]:
    return {record["run_id"]: record for _, record in iter_records(folder)}


def assert_same_metrics(a: dict, b: dict) -> None:
    for selection, labels in a["metrics"].items():
        for label, values in labels.items():
            for metric, value in values.items():
                assert b["metrics"][selection][label][metric] == pytest.approx(value, abs=1e-9), (
                    a["config"]["model"], selection, label, metric)


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    folder = tmp_path_factory.mktemp("alone")
    assert main(RUN + ["--results-dir", str(folder)]) == 0
    return records_by_run_id(folder)


@pytest.mark.parametrize("extra", [[], ["--jobs", "2"]], ids=["in-process", "jobs"])
def test_seed_batch_records_match_separate_runs(tmp_path, alone, extra):
    assert main(RUN + ["--results-dir", str(tmp_path), "--seed-batch"] + extra) == 0
    batched = records_by_run_id(tmp_path)
    assert set(batched) == set(alone)
    for run_id, record in batched.items():
        assert_same_metrics(alone[run_id], record)
        info = record["batch"]
        assert info["members"] == 2 and info["runs"] == [0, 1] and info["differing"] == []
        assert info["mode"] == ("looped" if record["config"]["model"] == "mbgcn" else "fused")
        assert alone[run_id]["batch"]["mode"] == "single"
        assert alone[run_id]["batch"]["members"] == 1


def _trial(model, run, protocol="paper", lr=1e-3, **params):
    config = {"model": model, "run": run, "protocol": protocol, "params": {"lr": lr, **params}}
    return Trial(model, "demo", protocol, run, config, f"{model}-{run}-{protocol}-{lr}")


def test_groups_join_runs_of_one_configuration_only():
    trials = [_trial("a", 0), _trial("a", 1), _trial("b", 0), _trial("a", 2, lr=1e-2),
              _trial("a", 3, protocol="honest"), _trial("a", 4)]
    groups = [[t.run_id for t in g] for g in seed_groups(trials)]
    assert groups == [["a-0-paper-0.001", "a-1-paper-0.001", "a-4-paper-0.001"],
                      ["b-0-paper-0.001"], ["a-2-paper-0.01"], ["a-3-honest-0.001"]]
    sizes = [len(g) for g in seed_groups(trials, max_size=2)]
    assert sizes == [2, 1, 1, 1, 1]


def test_members_differing_in_batchable_values_batch_together():
    """With across_params, learning rate, temperature and loss weights (zeros included) may
    differ inside a batch; structural parameters (layers), the temperature's fast path and honest
    runs' holdouts may not."""
    base = {"loss_weights": [0.5, 0.5, 0.5], "cl_temperature": 0.2, "layers": [1, 1, 1]}
    trials = [_trial("copf", 0, lr=1e-3, **base),
              _trial("copf", 0, lr=3e-3, **{**base, "cl_temperature": 0.4}),
              _trial("copf", 1, lr=1e-3, **{**base, "loss_weights": [0.2, 0.3, 0.5]}),
              _trial("copf", 0, lr=1e-3, **{**base, "loss_weights": [0.0, 0.5, 0.5]}),
              _trial("copf", 0, lr=1e-3, **{**base, "layers": [2, 2, 2]}),
              _trial("copf", 0, lr=1e-3, **{**base, "cl_temperature": 0.01}),
              _trial("copf", 0, "honest", lr=1e-3, **base),
              _trial("copf", 0, "honest", lr=2e-3, **base),
              _trial("copf", 1, "honest", lr=1e-3, **base)]
    sizes = [[trials.index(t) for t in g] for g in seed_groups(trials, across_params=True)]
    # tau 0.01 leaves the contrastive loss's fast path: structural too
    assert sizes == [[0, 1, 2, 3], [4], [5], [6, 7], [8]]
    # without across_params only the seeds of one configuration join
    assert [len(g) for g in seed_groups(trials[:3])] == [1, 1, 1]
