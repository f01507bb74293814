"""Runs that survive faults: kill and resume, concurrent runners, NaN losses, out of memory,
Ctrl-C, corrupted records."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.cli import main
from bench.data.demo import make_demo
from bench.evaluate import evaluate_all
from bench.records import iter_records

REPO = Path(__file__).resolve().parents[2]
PLUGIN = str(Path(__file__).with_name("faulty_models.py"))


def bench(results, *extra, env=None, **popen):
    cmd = [sys.executable, "-m", "bench", "run", "--plugin", PLUGIN, "--datasets", "demo",
           "--device", "cpu", "--results-dir", str(results), "--no-progress", *extra]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def metrics(results):
    return {r["config"]["run"]: r["metrics"] for _, r in iter_records(results)}


def wait_for(path_glob: str, root: Path, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(root.glob(path_glob)):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path_glob} never appeared under {root}")


def test_killed_trial_resumes_to_the_same_numbers(tmp_path):
    args = ["--models", "test-slow", "--seeds", "1", "--epochs", "12", "--checkpoint-every", "1"]
    straight = tmp_path / "straight"
    proc = bench(straight, *args, env={"BENCH_TEST_STEP_SLEEP": "0"})
    assert proc.wait(timeout=300) == 0, proc.stderr.read()

    killed = tmp_path / "killed"
    proc = bench(killed, *args, env={"BENCH_TEST_STEP_SLEEP": "0.05"})
    wait_for("scratch/*/checkpoint.pt", killed)
    time.sleep(0.5)
    proc.kill()                                        # SIGKILL: no chance to clean up
    proc.wait(timeout=60)
    assert not list(iter_records(killed)), "the trial should not have finished before the kill"
    proc = bench(killed, *args, env={"BENCH_TEST_STEP_SLEEP": "0"})
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    (_, record), = iter_records(killed)
    assert record["resumed_from_epoch"] and 0 < record["resumed_from_epoch"] < 12
    assert metrics(killed) == metrics(straight)
    assert not (killed / "scratch" / record["run_id"]).exists(), "checkpoint must be removed"


class _Payload:
    """A pickle that, when loaded, would create a file: the proof a checkpoint ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_checkpoint_never_runs_code_and_the_trial_completes(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    results = tmp_path / "results"
    args = ["run", "--models", "lightgcn", "--datasets", "demo", "--seeds", "1", "--epochs", "3",
            "--device", "cpu", "--results-dir", str(results), "--no-progress"]
    assert main(args + ["--dry-run"]) == 0
    run_id = capsys.readouterr().out.split("[")[-1].split("]")[0]
    planted = results / "scratch" / run_id / "checkpoint.pt"
    planted.parent.mkdir(parents=True)
    torch.save({"format": 2, "epoch": _Payload(marker)}, planted)
    assert main(args) == 0
    err = capsys.readouterr().err
    assert not marker.exists(), "loading the checkpoint ran the planted code"
    assert str(planted) in err and "refused" in err
    (_, record), = iter_records(results)
    assert record["epochs_run"] == 3 and record["resumed_from_epoch"] is None
    aside = list(planted.parent.glob("checkpoint.pt.refused-*"))
    assert len(aside) == 1, "the refused file is moved aside, never deleted"


def test_concurrent_runners_never_train_a_trial_twice(tmp_path):
    log = tmp_path / "starts.log"
    env = {"BENCH_TEST_START_LOG": str(log), "BENCH_TEST_STEP_SLEEP": "0.01"}
    args = ["--models", "test-slow", "--seeds", "4", "--epochs", "3"]
    procs = [bench(tmp_path / "results", *args, env=env) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    records = list(iter_records(tmp_path / "results"))
    assert len(records) == 4
    assert len(log.read_text().split()) == 4          # each trial's model was built once
    leftovers = [p for p in (tmp_path / "results").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def test_nan_loss_fails_the_trial_clearly_and_the_run_goes_on(tmp_path, capsys):
    code = main(["run", "--plugin", PLUGIN, "--models", "test-nan,test-slow", "--datasets", "demo",
                 "--seeds", "1", "--epochs", "3", "--device", "cpu", "--results-dir",
                 str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "non-finite training loss" in err
    for needle in ("test-nan", "demo", "run 0", "base seed", "epoch"):
        assert needle in err
    assert [r["config"]["model"] for _, r in iter_records(tmp_path)] == ["test-slow"]
    assert list(tmp_path.glob("demo/test-nan/*.failed.json"))


def test_out_of_memory_in_training_names_the_setting(tmp_path, capsys):
    code = main(["run", "--plugin", PLUGIN, "--models", "test-oom", "--datasets", "demo",
                 "--seeds", "1", "--device", "cpu", "--results-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "out of device memory" in err and "--set batch_size=128" in err


def test_out_of_memory_in_evaluation_halves_the_block():
    data = make_demo(n_users=300, n_items=400, seed=7)
    table = torch.randn(data.n_users, data.n_items, generator=torch.Generator().manual_seed(0))
    calls = []

    def scorer(users):
        calls.append(len(users))
        if len(users) > 70:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return table[users]
    reference = evaluate_all(lambda u: table[u], data, block_size=50)
    result = evaluate_all(scorer, data, block_size=512)
    assert np.array_equal(result["full/default"].ranks, reference["full/default"].ranks)
    assert max(c for c in calls if c <= 70) == 64      # 512 -> 256 -> 128 -> 64


def test_ctrl_c_exits_cleanly_and_the_rerun_resumes(tmp_path):
    args = ["--models", "test-slow", "--seeds", "2", "--epochs", "8", "--checkpoint-every", "1"]
    # a test session started in the background (`cmd &` in a script) ignores SIGINT, and so would
    # the child it starts: give the child the default disposition, as a terminal's Ctrl-C finds it
    proc = bench(tmp_path, *args, env={"BENCH_TEST_STEP_SLEEP": "0.05"},
                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for("scratch/*/checkpoint.pt", tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    proc = bench(tmp_path, *args, env={"BENCH_TEST_STEP_SLEEP": "0"})
    assert proc.wait(timeout=300) == 0
    assert len(list(iter_records(tmp_path))) == 2


def test_corrupted_record_is_reported_and_rerun(tmp_path, capsys):
    args = ["run", "--models", "pop", "--datasets", "demo", "--seeds", "1", "--device", "cpu",
            "--results-dir", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    (path, _), = iter_records(tmp_path)
    path.write_text("{\"format\": 1, \"run_id\": ")      # truncated mid-write by some other tool
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "truncated or corrupted" in captured.err and "1 trial(s) to run" in captured.out
    assert len(list(iter_records(tmp_path))) == 1
