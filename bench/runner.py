"""Trials: plan them, skip those already stored, run the rest, write one record each, summarize.

The runner knows nothing model-specific: it resolves a model's configuration through the registry,
trains it with the trainer and evaluates it with the evaluator.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import resource
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from filelock import FileLock, Timeout

from baselines.pretrain_skip import pretraining_skipped
from bench.data.dataset import MultiBehaviorDataset
from bench.data.holdout import with_validation_holdout
from bench.errors import BenchError, ConfigError, TrainingError
from bench.data.periods import describe as describe_periods
from bench.models.base import Model
from bench.ranks import ranks_table, write_ranks
from bench.models.registry import ModelSpec, build_model, get_model
from bench.records import (RECORD_FORMAT, atomic_write_bytes, command_line, config_hash,
                           environment, find_record, git_commit, record_path, write_record)
from bench.train.seeds import derive_seed, generator
from bench.trials import RunPlan, Trial  # noqa: F401  (re-exported: callers import them here)
from bench.seed_groups import template_params
from bench.train.trainer import (PROTOCOLS, Checkpoint, Member, ProgressFn, TrainOutcome,
                                 train)

DEFAULT_EVAL = {"ks": [10, 20], "protocols": ["full", "sampled"], "rules": ["default", "paper"],
                "n_negatives": 99}
MAIN_SELECTION = {"paper": "best_test", "honest": "valid_selected"}


def dataset_fingerprint(dataset: MultiBehaviorDataset) -> str:
    """A hash of the interaction data itself, so records from other data never match."""
    def build():
        digest = hashlib.sha256(",".join(dataset.behaviors).encode())
        for matrix in [*dataset.matrices(), dataset.test] + ([dataset.valid] if dataset.valid is not None else []):
            digest.update(np.asarray(matrix.shape, dtype=np.int64).tobytes())
            digest.update(matrix.indptr.astype(np.int64).tobytes())
            digest.update(matrix.indices.astype(np.int64).tobytes())
        return digest.hexdigest()[:16]
    return dataset.cached(("fingerprint",), build)


def trial_config(spec: ModelSpec, dataset: MultiBehaviorDataset, protocol: str, run: int,
                 base_seed: int, overrides: dict[str, Any], evaluation: dict[str, Any]) -> dict:
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol '{protocol}'; choose one of {PROTOCOLS}")
    params = spec.resolve(dataset.name, dataset.n_behaviors, overrides)
    config = {"model": spec.name, "encoder": spec.encoder, "decoder": spec.decoder,
              "model_version": spec.code_version(), "dataset": dataset.name,
              "dataset_fingerprint": dataset_fingerprint(dataset), "protocol": protocol,
              "run": run, "base_seed": base_seed, "params": params, "evaluation": evaluation,
              "inferred_defaults": sorted(k for k in spec.inferred if k not in overrides)}
    # Only data with periods has a choice to record; leaving the key out elsewhere keeps the run
    # ids of records made before periods were an option.
    if dataset.aux_periods is not None:
        config["aux_periods"] = dataset.aux_periods
    return config


def plan_trials(models: Sequence[str], datasets: Sequence[MultiBehaviorDataset], seeds: int,
                protocol: str, base_seed: int, overrides: dict[str, Any], results_dir: Path,
                evaluation: dict[str, Any] | None = None) -> RunPlan:
    """Resolve every trial's configuration (all errors surface here, before any training) and
    split them into those to run and those already stored."""
    evaluation = dict(evaluation or DEFAULT_EVAL)
    specs = [get_model(name) for name in models]
    _check_overrides(specs, overrides)
    plan = RunPlan()
    for dataset in datasets:
        for spec in specs:
            own = {k: v for k, v in overrides.items() if k in spec.param_specs()}
            for run in range(seeds):
                config = trial_config(spec, dataset, protocol, run, base_seed, own, evaluation)
                trial = Trial(spec.name, dataset.name, protocol, run, config, config_hash(config))
                stored = find_record(results_dir, config)
                (plan.stored if stored is not None else plan.trials).append(trial)
                path = record_path(results_dir, config, trial.run_id)
                if stored is None and path.exists():
                    plan.corrupted.append(path)
    return plan


def _check_overrides(specs: Sequence[ModelSpec], overrides: dict[str, Any]) -> None:
    known = set().union(*(spec.param_specs() for spec in specs)) if specs else set()
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"--set {', '.join(unknown)}: no selected model has such a parameter; "
                          f"valid parameters: {', '.join(sorted(known))}")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def scratch_dir(results_dir: Path, run_id: str) -> Path:
    """Where a trial keeps its checkpoint while it runs (removed once its record is written)."""
    return Path(results_dir) / "scratch" / run_id


def failure_path(results_dir: Path, trial: Trial) -> Path:
    return Path(results_dir) / trial.dataset / trial.model / f"{trial.run_id}.failed.json"


def write_failure(results_dir: Path, trial: Trial, err: BaseException) -> Path:
    """A failed trial leaves a note beside where its record would be; it is not a record, so a
    rerun tries the trial again."""
    note = {"run_id": trial.run_id, "status": "failed", "config": trial.config,
            "error": f"{type(err).__name__}: {err}", "git_commit": git_commit(),
            "command": command_line(), "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = failure_path(results_dir, trial)
    atomic_write_bytes(path, (json.dumps(note, indent=1, default=str) + "\n").encode())
    return path


def group_id(trials: Sequence[Trial]) -> str:
    """A batch's identity (its scratch folder): the run id of a lone trial, else a hash of the
    members' run ids."""
    if len(trials) == 1:
        return trials[0].run_id
    joined = ",".join(sorted(t.run_id for t in trials))
    return "batch-" + hashlib.sha256(joined.encode()).hexdigest()[:16]


def group_dataset(trials: Sequence[Trial], dataset: MultiBehaviorDataset) -> MultiBehaviorDataset:
    """The data a batch trains on: under the honest protocol, the validation holdout its members
    share (members of one batch always share it: ``bench.seed_groups``)."""
    if trials[0].protocol == "honest":
        return with_validation_holdout(dataset, trial_seed(trials[0], "holdout"))
    return dataset


def build_member(trial: Trial, dataset: MultiBehaviorDataset, device: torch.device) -> Member:
    """A trial's model, built from its own init seed, as a member of a batch."""
    # a model that draws from torch's global generator at build time repeats too
    torch.manual_seed(trial_seed(trial, "dropout"))
    model = build_model(get_model(trial.model), dataset, trial.config["params"], device,
                        generator(trial_seed(trial, "init")))
    evaluation = {**trial.config["evaluation"], "seed": trial_seed(trial, "evaluation")}
    return Member(model, trial.config["params"], trial_seed(trial, "sampling"), evaluation,
                  trial.label)


def batch_template(trials: Sequence[Trial], dataset: MultiBehaviorDataset,
                   device: torch.device) -> Model | None:
    """The model whose code runs for every member of a batch whose members differ in batchable
    values (built from ``seed_groups.template_params``); None when the first member's will do."""
    spec = get_model(trials[0].model)
    batchable = [n for n, p in spec.param_specs().items() if p.batchable]
    if not any(n in differing_params(trials) for n in batchable):
        return None
    params = template_params([t.config["params"] for t in trials], spec.param_specs())
    return build_model(spec, dataset, params, device, generator(0))


def differing_params(trials: Sequence[Trial]) -> list[str]:
    """The hyper-parameters whose values differ between the members of a batch."""
    first = trials[0].config["params"]
    return sorted(k for k in first if any(t.config["params"][k] != first[k] for t in trials[1:]))


def run_group(trials: Sequence[Trial], dataset: MultiBehaviorDataset, device: torch.device,
              results_dir: Path, on_epoch: Callable[[int, dict], None] | None = None,
              checkpoint_every: int = 5, on_progress: ProgressFn | None = None,
              cuda_graphs: str = "auto",
              make_checkpoint: Callable[[Path, int], Checkpoint] = Checkpoint) -> list[Attempt]:
    """Train the trials together as one batch (a lone trial is a batch of one) and write one
    record per member; a member that fails leaves a failure note and the others go on.
    Training state is checkpointed every ``checkpoint_every`` epochs (0: never) and a batch
    interrupted earlier resumes from its checkpoint."""
    data = group_dataset(trials, dataset)
    checkpoint = None
    if checkpoint_every > 0:
        checkpoint = make_checkpoint(scratch_dir(results_dir, group_id(trials)) / "checkpoint.pt",
                                     checkpoint_every)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    # the checkpoint restores the pretrained tables too, so a resumed batch does not pretrain
    resuming = checkpoint is not None and restores(checkpoint, len(trials), device)
    with pretraining_skipped() if resuming else contextlib.nullcontext():
        members = [build_member(t, data, device) for t in trials]
        template = batch_template(trials, data, device)
    describe = trials[0].label if len(trials) == 1 else (
        f"{trials[0].model} on {trials[0].dataset} (batch of {len(trials)})")
    outcomes, info = train(members, data, trials[0].protocol, device, describe, on_epoch,
                           on_progress, checkpoint, cuda_graphs, template)
    wall = time.perf_counter() - started
    info.update(runs=[t.run for t in trials], differing=differing_params(trials),
                group_wall_seconds=round(wall, 3))
    attempts = []
    for trial, outcome in zip(trials, outcomes):
        if isinstance(outcome, TrainingError):
            attempts += failed_attempts([trial], outcome, results_dir)
        else:
            store_outcome(trial, outcome, wall, device, results_dir, {"batch": info},
                          dataset=data)
            attempts.append(Attempt(trial.label, "trained"))
    if checkpoint is not None:
        checkpoint.remove()
    return attempts


def restores(checkpoint: Checkpoint, members: int, device: torch.device) -> bool:
    """Whether the trainer will resume ``members`` members from ``checkpoint`` (the test it
    applies: a loadable state saved for that many members)."""
    saved = checkpoint.load(device)
    return saved is not None and saved.get("members_count") == members


def training_input(dataset: MultiBehaviorDataset | None) -> dict[str, Any] | None:
    """What a trial's training matrices held: the periods of the auxiliary behaviors (None: the
    files have none) and the pairs per behavior."""
    if dataset is None:
        return None
    return {"aux_periods": dataset.aux_periods, "description": describe_periods(dataset.aux_periods),
            "pairs": {b: int(dataset.train[b].nnz) for b in dataset.behaviors}}


def trial_seed(trial: Trial, purpose: str) -> int:
    """The trial's seed for one purpose (init, sampling, dropout, holdout, evaluation)."""
    return derive_seed(trial.config["base_seed"], trial.dataset, trial.run, purpose)


def store_outcome(trial: Trial, outcome: TrainOutcome, wall: float, device: torch.device,
                  results_dir: Path, extra: dict[str, Any] | None = None,
                  dataset: MultiBehaviorDataset | None = None) -> dict[str, Any]:
    """Write the trial's record, per-user values and, given the ``dataset`` it trained on, the
    ranks of its test pairs with what the training input had seen of them (``bench.ranks``),
    each atomically, the record last; returns the record."""
    config = trial.config
    metrics, per_user = {}, {}
    for selection, results in outcome.reported.items():
        metrics[selection] = {label: r.metrics for label, r in results.items()}
        if selection == "valid":
            continue
        for label, r in results.items():
            protocol, rule = label.split("/")
            default = results.get(f"{protocol}/default")
            same = default is not None and rule != "default" and all(
                np.array_equal(v, default.per_user[m]) for m, v in r.per_user.items())
            if not same:    # the paper rule differs only for users with several held-out items
                per_user[f"{selection}/{label}"] = {"users": r.users, "values": r.per_user}
    record = {
        "format": RECORD_FORMAT, "run_id": trial.run_id, "status": "ok", "config": config,
        "metrics": metrics, "selected_epoch": outcome.selected_epoch,
        "main_selection": MAIN_SELECTION[trial.protocol],
        "curves": outcome.curves, "epochs_run": outcome.epochs_run,
        "resumed_from_epoch": outcome.resumed_from,
        "timing": {"wall_seconds": round(wall, 3),
                   "training_seconds": round(outcome.seconds_training, 3),
                   "evaluation_seconds": round(outcome.seconds_evaluating, 3),
                   "seconds_per_epoch": round(outcome.seconds_training / max(outcome.epochs_run, 1), 4)},
        "memory": {"peak_rss_mb": round(peak_rss_mb(), 1),
                   "peak_gpu_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                   if device.type == "cuda" else None},
        "training_input": training_input(dataset),
        "environment": environment(str(device)), "git_commit": git_commit(),
        "command": command_line(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    ranks = ranks_table(outcome.reported, dataset) if dataset is not None else None
    with deferred_interrupts():
        if ranks is not None:
            write_ranks(record_path(results_dir, config, trial.run_id), ranks)
        write_record(results_dir, record, per_user)
        failed = failure_path(results_dir, trial)
        if failed.exists():
            failed.unlink()
    return record


class deferred_interrupts:
    """Holds Ctrl-C back until the block ends, so a record being written is finished first."""

    def __enter__(self):
        self._active = threading.current_thread() is threading.main_thread()
        self._pending = False
        if self._active:
            self._previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self._pending = True

    def __exit__(self, *exc) -> None:
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
            if self._pending:
                raise KeyboardInterrupt


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA device; "
                          "use --device cpu or install a CUDA build of torch")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"unknown device '{name}'; use auto, cpu or cuda[:N]")
    return torch.device(name)


class TrialLock:
    """An exclusive, non-blocking lock on one trial, so that runners sharing a results folder
    never train or write the same trial twice."""

    def __init__(self, results_dir: Path, run_id: str) -> None:
        folder = Path(results_dir) / "scratch" / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(folder / f"{run_id}.lock"))

    def acquire(self) -> bool:
        try:
            self._lock.acquire(timeout=0)
            return True
        except Timeout:
            return False

    def release(self) -> None:
        self._lock.release()


@dataclass
class Attempt:
    """What became of one planned trial: ``trained``, ``stored`` (another runner finished it
    meanwhile), ``elsewhere`` (another runner holds it now) or ``failed`` (with a message)."""

    label: str
    status: str
    message: str = ""


def attempt_group(trials: Sequence[Trial], dataset: MultiBehaviorDataset, device: torch.device,
                  results_dir: Path, on_epoch: Callable[[int, dict], None] | None = None,
                  checkpoint_every: int = 5, on_progress: ProgressFn | None = None,
                  cuda_graphs: str = "auto",
                  make_checkpoint: Callable[[Path, int], Checkpoint] = Checkpoint) -> list[Attempt]:
    """Lock the trials, drop those stored or held elsewhere, and train the rest together as one
    batch. Failures are noted beside the records and returned, never raised (except Ctrl-C), so
    the other trials go on."""
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
        if todo:
            try:
                attempts += run_group(todo, dataset, device, results_dir, on_epoch,
                                      checkpoint_every, on_progress, cuda_graphs, make_checkpoint)
            except KeyboardInterrupt:
                raise
            except Exception as err:      # the batch's runs fail together; other trials go on
                attempts += failed_attempts(todo, err, results_dir)
        return attempts
    finally:
        for lock in locks:
            lock.release()


def attempt_trial(trial: Trial, dataset: MultiBehaviorDataset, device: torch.device,
                  results_dir: Path, on_epoch: Callable[[int, dict], None] | None = None,
                  checkpoint_every: int = 5) -> Attempt:
    """One trial alone (a batch of one)."""
    return attempt_group([trial], dataset, device, results_dir, on_epoch, checkpoint_every)[0]


def failed_attempts(trials: Sequence[Trial], err: BaseException,
                    results_dir: Path) -> list[Attempt]:
    """Note one error against each of ``trials`` (on stderr and beside the records)."""
    if not isinstance(err, BenchError):
        traceback.print_exc(file=sys.stderr)
    attempts = []
    for trial in trials:
        message = failure_message(trial, err)
        try:
            write_failure(results_dir, trial, err)
        except OSError as write_err:
            message += f" (could not store the failure note: {write_err})"
        attempts.append(Attempt(trial.label, "failed", message))
    return attempts


def failure_message(trial: Trial, err: BaseException) -> str:
    kind = "error" if isinstance(err, BenchError) else type(err).__name__
    return f"{trial.label}: {kind}: {err}"
