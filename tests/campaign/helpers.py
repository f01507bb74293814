"""Small campaigns on the demo data: an experiment file, a priority file and perf records whose
step times make the estimates whatever a test needs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from bench.models.registry import get_model, load_builtin


def write_experiment(folder: Path, models: Sequence[str], epochs: int, seeds: int = 1,
                     name: str = "mini") -> Path:
    rows = "".join(f'\n[[rows]]\nlabel = "{m}"\nmodel = "{m}"\n' for m in models)
    path = Path(folder) / f"{name}.toml"
    path.write_text(f'title = "mini"\nkind = "table"\ndatasets = ["demo"]\nseeds = {seeds}\n'
                    f'metrics = ["HR@10"]\nparams = {{ epochs = {epochs} }}\n{rows}')
    return path


def write_priority(folder: Path, experiment: Path) -> Path:
    path = Path(folder) / "priority.toml"
    path.write_text(f'[[entry]]\nlabel = "mini"\nexperiment = "{experiment}"\n'
                    'datasets = ["demo"]\n')
    return path


def write_perf(results: Path, model: str, seconds_per_step: float, steps_per_epoch: int = 10,
               seed_batch: int = 1) -> Path:
    """A perf record of ``model`` on demo (CPU) with the given step time and no evaluation cost:
    the estimate of an ``epochs``-epoch run is seconds_per_step x steps_per_epoch x epochs."""
    load_builtin()
    record = {"kind": "perf", "dataset": "demo", "environment": {"device": "cpu"},
              "finished_at": "2026-12-07T00:00:00+0000",
              "measurement": {"model": model, "model_version": get_model(model).code_version(),
                              "seed_batch": seed_batch, "steps_per_epoch": steps_per_epoch,
                              "seconds_per_step_median": seconds_per_step,
                              "evaluation_seconds_median": 0.0}}
    path = Path(results) / "perf" / "demo" / f"{model}-cpu-fixture.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (lock files aside: taking a lock makes one)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*"))
            if p.is_file() and p.suffix != ".lock"}


def write_trial_timing(results: Path, model: str, dataset, wall: float, training: float,
                       evaluation: float = 0.0) -> Path:
    """A trial record's timing of ``model`` on ``dataset`` with its default parameters (what the
    estimate reads for a model's pretraining: wall less training and evaluation)."""
    load_builtin()
    params = get_model(model).resolve(dataset.name, dataset.n_behaviors, {})
    record = {"status": "ok", "environment": {"device": "cpu"},
              "finished_at": "2026-12-07T00:00:00+0000", "epochs_run": params["epochs"],
              "config": {"model": model, "dataset": dataset.name, "params": params,
                         "model_version": get_model(model).code_version()},
              "timing": {"wall_seconds": wall, "training_seconds": training,
                         "evaluation_seconds": evaluation, "seconds_per_epoch": 0.0}}
    path = Path(results) / dataset.name / model / "timing-fixture.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path
