"""Speed benchmarks: seconds per training step and epoch, full-ranking evaluation time, peak memory.

Each measurement is appended as a JSON record under ``<results-dir>/perf/<dataset>/`` with the device
name, library versions, commit and command, so every timing quoted anywhere has a record behind it.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.data.graphs import Graph, propagate
from bench.evaluate import evaluate_all
from bench.models.registry import build_model, get_model
from bench.records import atomic_write_bytes, command_line, environment, git_commit
from bench.runner import peak_rss_mb
from bench.models.base import Model
from bench.train import streams
from bench.train.samplers import make_sampler
from bench.train.seeds import derive_seed, generator
from bench.train.trainer import BatchTrainer, Member


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def time_evaluation(score_fn, dataset: MultiBehaviorDataset, device: torch.device,
                    repeats: int = 3) -> list[float]:
    """Full-ranking HR/NDCG@10 of every test user (one warm-up, then ``repeats`` timings)."""
    run = lambda: evaluate_all(score_fn, dataset, ks=(10,), protocols=("full",),
                               rules=("default",), device=device)
    run()
    return _timed(run, device, repeats)


def encoder_graphs(encoder: torch.nn.Module) -> dict[str, Graph]:
    """Every sparse graph an encoder holds, by attribute (``graphs[1]`` for an entry of a list or
    dict attribute), each graph once."""
    found: dict[str, Graph] = {}
    seen: set[int] = set()

    def visit(value: Any, path: str) -> None:
        if isinstance(value, Graph):
            if id(value) not in seen:
                seen.add(id(value))
                found[path] = value
        elif isinstance(value, (list, tuple)):
            for k, item in enumerate(value):
                visit(item, f"{path}[{k}]")
        elif isinstance(value, dict):
            for k, item in value.items():
                visit(item, f"{path}[{k}]")

    for attribute, value in vars(encoder).items():
        visit(value, attribute)
    return found


def time_graph_products(encoder: torch.nn.Module, dim: int, device: torch.device,
                        repeats: int = 10) -> list[dict[str, Any]]:
    """Median seconds of one sparse product ``graph @ x`` (x: n x ``dim``) per graph the encoder
    holds: the unit a graph model's step is made of (a layer's forward or backward)."""
    out = []
    for path, graph in encoder_graphs(encoder).items():
        x = torch.randn(graph.shape[1], dim, device=device)
        with torch.no_grad():
            propagate(graph, x)
            times = _timed(lambda: propagate(graph, x), device, repeats)
        out.append({"graph": path, "shape": list(graph.shape),
                    "nnz": int(graph.forward_csr._nnz()), "seconds_median": statistics.median(times)})
    return out


# Operators that make the host wait for the device (or imply a data-dependent shape, which does):
# none may run inside a training step.
SYNC_OPERATORS = ("aten::_local_scalar_dense", "aten::item", "aten::nonzero",
                  "aten::nonzero_static", "aten::masked_select", "aten::unique",
                  "aten::_unique", "aten::_unique2", "aten::unique_dim",
                  "aten::unique_consecutive", "aten::unique_dim_consecutive",
                  "aten::masked_scatter", "aten::_assert_async")


@dataclass
class OperatorCount:
    """The operators one call ran: top-level ``aten::`` calls (those not inside another aten
    call; the backward's included), and every host-synchronizing operator, nested or not."""

    top_level: int
    syncs: dict[str, int]


def count_operators(fn: Callable[[], Any]) -> OperatorCount:
    """Run ``fn`` once under ``torch.profiler`` (CPU activity) and count its operators: the CPU
    proxy of a GPU step's launch overhead, measurable on any machine."""
    with _quiet_native_stderr(), torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    top, syncs = 0, {}
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        if event.name in SYNC_OPERATORS:
            syncs[event.name] = syncs.get(event.name, 0) + 1
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            top += 1
    return OperatorCount(top, syncs)


@contextmanager
def _quiet_native_stderr():
    """Silence the profiler library's own start/stop lines, which it writes to the process's
    standard error from native code (Python's ``sys.stderr`` cannot catch them)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def build_trainer(name: str, dataset: MultiBehaviorDataset, device: torch.device, members: int,
                  overrides: dict[str, Any] | None = None, cuda_graphs: str = "off"
                  ) -> tuple[BatchTrainer | None, dict[str, Any], Model]:
    """A batch of ``members`` runs (run indices 0..members-1, base seed 0) of model ``name`` ready
    to step, as ``bench run`` trains it; None for a model that does not train."""
    spec = get_model(name)
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, overrides or {})
    seed = lambda run, purpose: derive_seed(0, dataset.name, run, purpose)
    built = [Member(build_model(spec, dataset, cfg, device, generator(seed(run, "init"))), cfg,
                    seed(run, "sampling")) for run in range(members)]
    keys = streams.run_keys([m.sampling_seed for m in built], device)
    sampler = make_sampler(built[0].model, dataset, cfg, device, keys)
    if sampler is None:
        return None, cfg, built[0].model
    trainer = BatchTrainer(built, dataset, sampler, device, cuda_graphs, name)
    for member in built:
        member.model.train()
    return trainer, cfg, built[0].model


class Stepper:
    """Steps a batch trainer across epoch boundaries, as the training loop does."""

    def __init__(self, trainer: BatchTrainer) -> None:
        self.trainer = trainer
        self.epoch = 0
        self.left = 0

    def begin(self) -> None:
        """Start the next epoch if the current one is used up."""
        trainer = self.trainer
        if self.left == 0:
            trainer.start_epoch(self.epoch)
            self.epoch += 1
            self.left = trainer.sampler.steps_per_epoch

    def count(self) -> OperatorCount:
        """The operators of one eager step (the epoch's start, if due, not counted)."""
        self.begin()
        ops = count_operators(self.trainer.step)
        self.left -= 1
        return ops

    def __call__(self) -> None:
        self.begin()
        self.trainer.runner()
        self.left -= 1


def perf_model(name: str, dataset: MultiBehaviorDataset, device: torch.device, steps: int,
               overrides: dict[str, Any] | None = None, repeats: int = 3,
               seed_batch: int = 1, cuda_graphs: str = "auto") -> dict[str, Any]:
    """Median seconds per training step (and the epoch estimate), operators per step, full
    evaluation seconds. ``seed_batch`` > 1 times one step of that many runs trained together
    and also counts one run's operators, for the ratio. ``cuda_graphs`` applies on CUDA."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer, cfg, model = build_trainer(name, dataset, device, max(seed_batch, 1), overrides,
                                        cuda_graphs)
    label = name if seed_batch <= 1 else f"{name}-x{seed_batch}"
    out: dict[str, Any] = {"model": label, "params": cfg,
                           "model_version": get_model(name).code_version(),
                           "seed_batch": seed_batch}
    if trainer is not None:
        stepper = Stepper(trainer)
        ops = stepper.count()
        out.update({"ops_per_step": ops.top_level, "host_syncs_per_step": ops.syncs,
                    "batch_mode": trainer.engine.mode})
        if seed_batch > 1:
            single, _, _ = build_trainer(name, dataset, device, 1, overrides, "off")
            one = Stepper(single).count().top_level
            out.update({"ops_per_step_one_run": one,
                        "ops_ratio": round(ops.top_level / max(one, 1), 4)})
            del single
        _timed(stepper, device, 3)                  # warm-up (and the CUDA graph's capture)
        step_times = _timed(stepper, device, steps)
        per_step = statistics.median(step_times)
        out.update({"steps_timed": steps, "seconds_per_step_median": per_step,
                    "seconds_per_step_mean": statistics.fmean(step_times),
                    "steps_per_epoch": trainer.sampler.steps_per_epoch,
                    "seconds_per_epoch_estimate": per_step * trainer.sampler.steps_per_epoch,
                    "cuda_graphs": trainer.runner.active})
        if trainer.runner.fallback_reason:
            out["cuda_graphs_fallback"] = trainer.runner.fallback_reason
        if seed_batch > 1:
            out["seconds_per_step_per_seed"] = per_step / seed_batch
        trainer.engine.sync_models()
    graphs = time_graph_products(model.encoder, cfg.get("dim", 64), device)
    if graphs:
        out["graph_products"] = graphs
    eval_times = time_evaluation(model.scorer(), dataset, device, repeats)
    out.update({"evaluation_seconds_median": statistics.median(eval_times),
                "evaluation_seconds": eval_times, "evaluated_users": len(dataset.eval_users())})
    return out


def perf_random_scorer(dataset: MultiBehaviorDataset, device: torch.device, dim: int = 64,
                       repeats: int = 3) -> dict[str, Any]:
    """The evaluator alone: a random ``dim``-d dot-product scorer over every test user."""
    g = torch.Generator().manual_seed(0)
    users = torch.randn(dataset.n_users, dim, generator=g).to(device)
    items = torch.randn(dataset.n_items, dim, generator=g).to(device)
    times = time_evaluation(lambda u: users[u] @ items.T, dataset, device, repeats)
    return {"model": f"random-dot-{dim}", "evaluation_seconds_median": statistics.median(times),
            "evaluation_seconds": times, "evaluated_users": len(dataset.eval_users())}


def write_perf_record(results_dir: Path, dataset: MultiBehaviorDataset, device: torch.device,
                      measurement: dict[str, Any]) -> Path:
    import json
    measurement = dict(measurement)
    measurement["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if device.type == "cuda":
        measurement["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    record = {"kind": "perf", "dataset": dataset.name, "measurement": measurement,
              "environment": environment(str(device)), "git_commit": git_commit(),
              "command": command_line(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
    device_tag = record["environment"]["device"].replace(":", "")
    path = Path(results_dir) / "perf" / dataset.name / f"{measurement['model']}-{device_tag}-{stamp}.json"
    atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True, default=str) + "\n").encode())
    return path
