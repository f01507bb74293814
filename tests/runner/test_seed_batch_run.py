"""`bench run --seed-batch`: each run's record as if trained alone, with how it was batched."""
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
        info = record["seed_batch"]
        assert info["seeds"] == 2 and info["runs"] == [0, 1]
        assert info["mode"] == ("looped" if record["config"]["model"] == "mbgcn" else "fused")
        assert "seed_batch" not in alone[run_id]


def _trial(model, run, protocol="paper", lr=1e-3):
    config = {"model": model, "run": run, "protocol": protocol, "params": {"lr": lr}}
    return Trial(model, "demo", protocol, run, config, f"{model}-{run}-{protocol}-{lr}")


def test_groups_join_runs_of_one_configuration_only():
    trials = [_trial("a", 0), _trial("a", 1), _trial("b", 0), _trial("a", 2, lr=1e-2),
              _trial("a", 3, protocol="honest"), _trial("a", 4)]
    groups = [[t.run_id for t in g] for g in seed_groups(trials)]
    assert groups == [["a-0-paper-0.001", "a-1-paper-0.001", "a-4-paper-0.001"],
                      ["b-0-paper-0.001"], ["a-2-paper-0.01"], ["a-3-honest-0.001"]]
    sizes = [len(g) for g in seed_groups(trials, max_size=2)]
    assert sizes == [2, 1, 1, 1, 1]
