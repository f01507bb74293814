"""Speed benchmarks: seconds per training step and epoch, full-ranking evaluation time, peak memory.

Each measurement is appended as a JSON record under ``<results-dir>/perf/<dataset>/`` with the device
name, library versions, commit and command, so every timing quoted anywhere has a record behind it.
"""
from __future__ import annotations

import statistics
import time
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
from bench.train.samplers import endless_batches, make_sampler
from bench.train.seed_batch import RandomStreams, SeedBatch
from bench.train.seeds import derive_seed, generator
from bench.train.trainer import make_optimizer


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


def perf_model(name: str, dataset: MultiBehaviorDataset, device: torch.device, steps: int,
               overrides: dict[str, Any] | None = None, repeats: int = 3,
               seed_batch: int = 1) -> dict[str, Any]:
    """Median seconds per training step (and the epoch estimate), full-evaluation seconds.
    ``seed_batch`` > 1 times one step of that many runs trained together (``--seed-batch``)."""
    spec = get_model(name)
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, overrides or {})
    seed = lambda run, purpose: derive_seed(0, dataset.name, run, purpose)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    models = [build_model(spec, dataset, cfg, device, generator(seed(run, "init")))
              for run in range(max(seed_batch, 1))]
    model = models[0]
    label = name if seed_batch <= 1 else f"{name}-x{seed_batch}"
    out: dict[str, Any] = {"model": label, "params": cfg, "model_version": spec.code_version(),
                           "seed_batch": seed_batch}
    samplers = [make_sampler(m, dataset, cfg, device) for m in models]
    if samplers[0] is not None:
        if seed_batch > 1:
            batch = SeedBatch(models)
            streams = RandomStreams([RandomStreams.capture(device)] * seed_batch, device)
            opt, schedule = make_optimizer(batch.parameters(), cfg, samplers[0].steps_per_epoch(),
                                           dataset.n_users)
        else:
            opt, schedule = make_optimizer(model, cfg, samplers[0].steps_per_epoch(),
                                           dataset.n_users)
        gens = [generator(seed(run, "sampling"), device) for run in range(len(models))]
        streams_of_batches = [endless_batches(smp, g) for smp, g in zip(samplers, gens)]

        def step():
            batches = [next(b) for b in streams_of_batches]
            if seed_batch > 1:
                loss = torch.stack([t for t, _ in batch.losses(batches, streams)]).sum()
            else:
                loss, _ = model.loss(batches[0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        _timed(step, device, 3)                       # warm-up
        step_times = _timed(step, device, steps)
        per_step = statistics.median(step_times)
        out.update({"steps_timed": steps, "seconds_per_step_median": per_step,
                    "seconds_per_step_mean": statistics.fmean(step_times),
                    "steps_per_epoch": samplers[0].steps_per_epoch(),
                    "seconds_per_epoch_estimate": per_step * samplers[0].steps_per_epoch()})
        if seed_batch > 1:
            out.update({"seed_batch_mode": batch.mode,
                        "seconds_per_step_per_seed": per_step / seed_batch})
            batch.sync_models()
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
