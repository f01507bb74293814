"""Trials in parallel worker processes: ``bench run --jobs N [--backend loky|dask|ray]``.

Workers receive a small picklable task (the trial and where its data and results live), load the
dataset themselves (once per worker process) and run the trial exactly as the sequential runner
does: the same lock, the same atomic record, the same failure note. Records therefore stay
consistent whichever worker writes them, and several runners may share one results folder.

Backends are joblib's: ``loky`` (local processes, the default), ``dask`` (a running
``dask.distributed`` scheduler, ``--scheduler tcp://HOST:PORT``) and ``ray`` (``ray.init`` with
``--scheduler`` as its address, or a local Ray). On a cluster every worker must see the same
``--data-dir`` and ``--results-dir`` paths (a shared file system).

Devices: with ``--device cuda`` on a machine with several GPUs, task i runs on GPU
``i % n_gpus``; ``--per-gpu M`` sets ``--jobs`` to M trials per GPU when ``--jobs`` is not given.
"""
from __future__ import annotations

import argparse
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from tqdm import tqdm

from bench.errors import ConfigError
from bench.runner import Attempt, Trial

BACKENDS = ("loky", "dask", "ray")


@dataclass(frozen=True)
class TrialTask:
    """Everything a worker needs to run one trial or one seed batch (small and picklable)."""

    trials: tuple[Trial, ...]
    device: str
    data_dir: str | None
    results_dir: str
    checkpoint_every: int
    plugins: tuple[str, ...]
    cuda_graphs: str = "auto"
    folder: tuple | None = None      # (path, FolderOptions) of a folder dataset


def trial_devices(n_tasks: int, device: torch.device, n_gpus: int) -> list[str]:
    """The device of each task: the given one, or GPUs in turn for a bare ``cuda`` with several."""
    if device.type == "cuda" and device.index is None and n_gpus > 1:
        return [f"cuda:{i % n_gpus}" for i in range(n_tasks)]
    return [str(device)] * n_tasks


def worker_count(jobs: int | None, per_gpu: int | None, device: torch.device, n_gpus: int) -> int:
    """Concurrent trials: ``--jobs``, else ``--per-gpu`` x GPUs on a CUDA device, else 1.
    joblib's -1 (all CPUs or all cluster workers) passes through."""
    if jobs is not None:
        if jobs == 0 or jobs < -1:
            raise ConfigError(f"--jobs must be a positive number or -1 (all), got {jobs}")
        return jobs
    if per_gpu is not None:
        if per_gpu < 1:
            raise ConfigError(f"--per-gpu must be at least 1, got {per_gpu}")
        if device.type != "cuda":
            raise ConfigError("--per-gpu packs trials on GPUs; it needs --device cuda (or auto "
                              "on a machine with CUDA)")
        return per_gpu * max(n_gpus if device.index is None else 1, 1)
    return 1


@functools.lru_cache(maxsize=4)
def _worker_dataset(name: str, data_dir: str | None, folder: tuple | None, aux_periods: str):
    from bench.data.select import load_dataset_again
    return load_dataset_again(name, data_dir, folder, aux_periods)


@functools.lru_cache(maxsize=None)
def _worker_setup(plugins: tuple[str, ...]) -> None:
    from bench.models.registry import load_builtin, load_plugin
    load_builtin()
    for plugin in plugins:
        load_plugin(plugin)


def run_task(task: TrialTask) -> list[Attempt]:
    """Run one trial or batch in a worker process (a joblib task)."""
    from bench.runner import attempt_group
    _worker_setup(task.plugins)
    # several trials share the machine's cores: one thread each unless told otherwise
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    from bench.data.periods import DEFAULT_AUX_PERIODS
    config = task.trials[0].config
    dataset = _worker_dataset(config["dataset"], task.data_dir, task.folder,
                              config.get("aux_periods", DEFAULT_AUX_PERIODS))
    return attempt_group(task.trials, dataset, torch.device(task.device), Path(task.results_dir),
                         checkpoint_every=task.checkpoint_every, cuda_graphs=task.cuda_graphs)


def _connect(backend: str, scheduler: str | None):
    """Connect joblib to the cluster behind ``backend``; returns the client to close, if any."""
    if backend == "dask":
        try:
            from dask.distributed import Client
        except ImportError as err:
            raise ConfigError("--backend dask needs dask.distributed: pip install "
                              "'dask[distributed]' (or mbbench[dask])") from err
        if scheduler is None:
            raise ConfigError("--backend dask needs --scheduler tcp://HOST:PORT of a running "
                              "scheduler (start one with `dask scheduler` and `dask worker "
                              "tcp://HOST:PORT`)")
        try:
            return Client(scheduler, timeout=30)    # joblib's dask backend uses this client
        except OSError as err:
            raise ConfigError(f"cannot reach the dask scheduler at {scheduler}: {err}") from err
    elif backend == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError as err:
            raise ConfigError("--backend ray needs ray: pip install 'ray[default]'") from err
        register_ray()
        if not ray.is_initialized():
            ray.init(address=scheduler)
    return None


def run_parallel(groups: Sequence[Sequence[Trial]], args: argparse.Namespace,
                 device: torch.device) -> list[Attempt]:
    """Run the trial ``groups`` (single trials or seed batches) on ``args.jobs`` workers of
    ``args.backend``; one progress bar over trials."""
    import joblib
    if args.backend not in BACKENDS:
        raise ConfigError(f"unknown backend '{args.backend}'; choose one of {', '.join(BACKENDS)}")
    n_gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    jobs = worker_count(args.jobs, args.per_gpu, device, n_gpus)
    if args.backend != "loky" and args.jobs is None and args.per_gpu is None:
        jobs = -1          # every worker of the cluster
    devices = trial_devices(len(groups), device, n_gpus)
    data_dir = None if args.data_dir is None else str(Path(args.data_dir).resolve())
    from bench.data.select import folder_source
    tasks = [TrialTask(tuple(group), dev, data_dir, str(Path(args.results_dir).resolve()),
                       args.checkpoint_every, tuple(args.plugin),
                       getattr(args, "cuda_graphs", "auto"), folder_source(group[0].dataset))
             for group, dev in zip(groups, devices)]
    if not tasks:
        return []
    client = _connect(args.backend, args.scheduler)
    attempts: list[Attempt] = []
    bar = tqdm(total=sum(len(t.trials) for t in tasks), unit="trial",
               desc=f"trials ({args.backend}, {jobs} jobs)", disable=args.no_progress)
    try:
        with joblib.parallel_config(backend=args.backend, n_jobs=jobs):
            results: Iterator[list[Attempt]] = joblib.Parallel(return_as="generator_unordered")(
                joblib.delayed(run_task)(task) for task in tasks)
            for done in results:
                attempts += done
                bar.update(len(done))
                for attempt in done:
                    if attempt.status == "failed":
                        tqdm.write(f"FAILED {attempt.message}")
    finally:
        bar.close()
        if client is not None:
            client.close()
    return attempts
