"""``bench run --seed-batch``: the runs of one configuration trained together as one batched model
(``bench.train.seed_batch``), each still written as its own record.

Trials group when everything but the run index agrees and the protocol is ``paper`` (an honest
trial has its own validation holdout, hence its own graphs). A group has no checkpoints: a killed
group reruns all its runs (they are done together anyway).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.models.registry import build_model, get_model
from bench.records import find_record
from bench.runner import (Attempt, Trial, TrialLock, attempt_trial, failed_attempts,
                          store_outcome, trial_seed)
from bench.train.seed_batch import RandomStreams, train_seed_batch
from bench.train.seeds import generator


def _group_key(trial: Trial) -> str | None:
    if trial.protocol != "paper":
        return None
    config = {k: v for k, v in trial.config.items() if k != "run"}
    return json.dumps(config, sort_keys=True, default=str)


def seed_groups(trials: Sequence[Trial], max_size: int = 0) -> list[list[Trial]]:
    """Trials in groups that can train together (order kept; ``max_size`` 0 = no limit)."""
    groups: dict[str, list[list[Trial]]] = {}
    out: list[list[Trial]] = []
    for trial in trials:
        key = _group_key(trial)
        if key is None:
            out.append([trial])
            continue
        chains = groups.setdefault(key, [])
        if not chains or (max_size and len(chains[-1]) >= max_size):
            chains.append([])
            out.append(chains[-1])
        chains[-1].append(trial)
    return out


def run_trial_group(trials: Sequence[Trial], dataset: MultiBehaviorDataset, device: torch.device,
                    results_dir: Path, on_epoch: Callable[[int, dict], None] | None = None
                    ) -> list[dict]:
    """Train a group's runs together and write one record per run; returns the records."""
    spec = get_model(trials[0].model)
    params = trials[0].config["params"]
    models, states = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for trial in trials:
        # as run_trial: the global generators are seeded before the model is built
        torch.manual_seed(trial_seed(trial, "dropout"))
        models.append(build_model(spec, dataset, params, device,
                                  generator(trial_seed(trial, "init"))))
        states.append(RandomStreams.capture(device))
    samplings = [generator(trial_seed(t, "sampling"), device) for t in trials]
    evaluations = [{**t.config["evaluation"], "seed": trial_seed(t, "evaluation")} for t in trials]
    describe = f"{spec.name} on {trials[0].dataset} (seed batch of {len(trials)})"
    outcomes, info = train_seed_batch(models, dataset, params, samplings, states, device,
                                      describe, evaluations, on_epoch)
    wall = time.perf_counter() - started
    info["runs"] = [t.run for t in trials]
    info["group_wall_seconds"] = round(wall, 3)
    return [store_outcome(t, o, wall, device, results_dir, {"seed_batch": info})
            for t, o in zip(trials, outcomes)]


def attempt_group(trials: Sequence[Trial], dataset: MultiBehaviorDataset, device: torch.device,
                  results_dir: Path, on_epoch: Callable[[int, dict], None] | None = None,
                  checkpoint_every: int = 5) -> list[Attempt]:
    """Lock the group's trials, drop those stored or held elsewhere, and train the rest together
    (a lone trial runs as usual, with checkpoints). Failures are noted, never raised."""
    attempts: list[Attempt] = []
    locks, todo = [], []
    try:
        for trial in trials:
            lock = TrialLock(results_dir, trial.run_id)
            if not lock.acquire():
                attempts.append(Attempt(trial.label, "elsewhere"))
                continue
            locks.append(lock)
            if find_record(results_dir, trial.config) is not None:
                attempts.append(Attempt(trial.label, "stored"))
            else:
                todo.append(trial)
        if len(todo) == 1:
            for lock in locks:
                lock.release()
            locks = []
            single = None if on_epoch is None else (lambda point: on_epoch(0, point))
            return attempts + [attempt_trial(todo[0], dataset, device, results_dir, single,
                                             checkpoint_every)]
        if todo:
            try:
                run_trial_group(todo, dataset, device, results_dir, on_epoch)
                attempts += [Attempt(t.label, "trained") for t in todo]
            except KeyboardInterrupt:
                raise
            except Exception as err:      # the group's runs fail together; other trials go on
                attempts += failed_attempts(todo, err, results_dir)
        return attempts
    finally:
        for lock in locks:
            lock.release()
