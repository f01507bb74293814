"""Parallel trials (`bench run --jobs`, dask backend): the same records as a sequential run."""
from __future__ import annotations


import pytest
import torch

from bench.cli import main
from bench.errors import ConfigError
from bench.parallel import trial_devices, worker_count
from bench.records import iter_records

RUN = ["run", "--models", "mf-bpr,lightgcn", "--datasets", "demo", "--seeds", "2", "--epochs", "2",
       "--device", "cpu", "--no-progress"]


def metrics_by_run_id(folder) -> dict[str, dict]:
    return {record["run_id"]: record["metrics"] for _, record in iter_records(folder)}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sequential")
    assert main(RUN + ["--results-dir", str(folder)]) == 0
    return metrics_by_run_id(folder)


def test_jobs_give_the_sequential_records(tmp_path, capsys, sequential):
    assert main(RUN + ["--results-dir", str(tmp_path), "--jobs", "2"]) == 0
    assert metrics_by_run_id(tmp_path) == sequential
    capsys.readouterr()
    assert main(RUN + ["--results-dir", str(tmp_path), "--jobs", "2"]) == 0
    assert "0 trial(s) to run, 4 already stored" in capsys.readouterr().out


def test_a_failing_trial_in_a_worker_is_noted_and_the_others_land(tmp_path, capsys):
    argv = ["run", "--models", "mf-bpr", "--datasets", "demo", "--seeds", "2", "--epochs", "1",
            "--device", "cpu", "--no-progress", "--results-dir", str(tmp_path), "--jobs", "2",
            "--set", "lr=1e30"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and "non-finite training loss" in err
    assert len(list(tmp_path.glob("demo/mf-bpr/*.failed.json"))) == 2


def test_dask_backend_on_a_local_cluster(tmp_path, sequential):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1,
                                  processes=True, dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        code = main(RUN + ["--results-dir", str(tmp_path), "--backend", "dask",
                           "--scheduler", cluster.scheduler_address])
    assert code == 0
    assert metrics_by_run_id(tmp_path) == sequential
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix not in (".json", ".gz")
                 and "locks" not in p.parts]
    assert leftovers == []


def test_dask_without_a_scheduler_says_how_to_start_one(tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    assert main(RUN + ["--results-dir", str(tmp_path), "--backend", "dask"]) == 2
    assert "--scheduler tcp://HOST:PORT" in capsys.readouterr().err


def test_gpus_are_assigned_in_turn():
    assert trial_devices(5, torch.device("cuda"), 2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1",
                                                         "cuda:0"]
    assert trial_devices(3, torch.device("cuda:1"), 4) == ["cuda:1"] * 3
    assert trial_devices(2, torch.device("cpu"), 0) == ["cpu", "cpu"]


def test_worker_count_from_jobs_or_per_gpu():
    assert worker_count(3, None, torch.device("cpu"), 0) == 3
    assert worker_count(-1, None, torch.device("cpu"), 0) == -1
    assert worker_count(None, 2, torch.device("cuda"), 4) == 8
    assert worker_count(None, 2, torch.device("cuda:0"), 4) == 2
    assert worker_count(None, None, torch.device("cpu"), 0) == 1
    with pytest.raises(ConfigError, match="--per-gpu"):
        worker_count(None, 2, torch.device("cpu"), 0)
    with pytest.raises(ConfigError, match="--jobs"):
        worker_count(0, None, torch.device("cpu"), 0)
