"""``bench tune``: search a model's hyper-parameters on validation, every trial an ordinary record.

For each (model, dataset): load the search space, check every value against the model's
parameter declarations, pick the configurations (grid, random or Optuna), plan one honest trial
per configuration and run (``--seeds``), group the trials into batches whose members differ only
in batchable values, train the batches (in this process, or on ``--jobs`` workers), write the
manifest and print the configurations ranked by validation HR@10 with test beside.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.data.select import FolderOptions, load_datasets
from bench.errors import ConfigError
from bench.folders import refuse_file, writable_folder
from bench.models.registry import ModelSpec, get_model, load_builtin, load_plugin
from bench.params import parse_assignments
from bench.runner import Attempt, dataset_fingerprint, resolve_device
from bench.tune.manifest import load_manifest, manifest_space, space_entry, write_manifest
from bench.tune.plan import PROTOCOL, TunePlan, batch_count, plan_configurations
from bench.tune.search import (OptunaSearch, choose_search, grid_configurations,
                               random_configurations)
from bench.tune.space import Space, check_space, load_space, space_names

DEFAULT_MEMBERS = 16


def add_tune_parser(sub) -> None:
    p = sub.add_parser("tune", help="search hyper-parameters on validation (honest protocol); "
                       "every trial an ordinary record; prints the ranking",
                       description="Search a model's hyper-parameters: grid, random or Optuna "
                       "search over a space file, configurations ranked by validation HR@10 "
                       "with test beside (honest protocol only).")
    p.add_argument("--models", type=_csv, required=True,
                   help="comma-separated model names; each is tuned on its own")
    p.add_argument("--datasets", type=_csv, help="comma-separated datasets or folders of your "
                   "own data (with --layout); default demo")
    p.add_argument("--space", metavar="NAME|FILE.toml",
                   help=f"search space: a shipped one ({', '.join(space_names())}) or a path to "
                        "your own file; default the space named after the model")
    p.add_argument("--budget", type=int, metavar="N",
                   help="configurations to try (default: the space's budget)")
    p.add_argument("--epochs", type=int, help="epochs of every trial (default: the model's)")
    p.add_argument("--search", choices=("grid", "random", "optuna"),
                   help="grid (every grid point, or a seeded random subset of the budget's size "
                        "when the grid is larger), random (seeded draws) or optuna (TPE; pip "
                        "install -e \".[tune]\"); default grid if the grid fits the budget, "
                        "else random")
    p.add_argument("--search-seed", type=int, default=0,
                   help="seed of the grid subset, the random draws or Optuna's sampler")
    p.add_argument("--seeds", type=int, default=1,
                   help="runs per configuration (each run has its own validation holdout); "
                        "the ranking averages them")
    p.add_argument("--base-seed", type=int, default=2025, help="seed all per-run seeds derive from")
    p.add_argument("--protocol", choices=("honest", "paper"),
                   help="honest only: a tune selects on validation (paper would select on test)")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a parameter the space does not search (repeatable)")
    p.add_argument("--members", type=int, default=DEFAULT_MEMBERS, metavar="S",
                   help="at most S trials train together as one batch (default "
                        f"{DEFAULT_MEMBERS}); also Optuna's round size")
    p.add_argument("--write-experiment", type=Path, metavar="FILE.toml",
                   help="write an experiment file whose row is the best configuration")
    p.add_argument("--dry-run", action="store_true",
                   help="list the configurations and batches; train nothing")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--data-dir", help="dataset folder (default: $BENCH_DATA, else the user cache)")
    p.add_argument("--plugin", action="append", default=[],
                   help="a .py file or module whose models register themselves (repeatable)")
    p.add_argument("--checkpoint-every", type=int, default=5, metavar="EPOCHS",
                   help="save training state every EPOCHS epochs so a killed tune resumes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--cuda-graphs", choices=("auto", "off"), default="auto",
                   help="on a CUDA device, capture each training step as a CUDA graph")
    p.add_argument("--jobs", type=int, metavar="N", help="batches run in N worker processes")
    p.add_argument("--backend", choices=("loky", "dask", "ray"), default="loky",
                   help="where parallel batches run (see `bench run --help`)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="the dask or ray cluster to use")
    p.add_argument("--per-gpu", type=int, metavar="M",
                   help="with --device cuda: M batches at once per GPU")
    from bench.data.cli import add_folder_arguments
    add_folder_arguments(p, "your own data (--datasets names a folder)")


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@dataclass
class TuneJob:
    """One model on one dataset, checked and ready to search."""

    spec: ModelSpec
    dataset: MultiBehaviorDataset
    space: Space
    fixed: dict[str, Any]
    budget: int
    search: str


def command_tune(args: argparse.Namespace) -> int:
    load_builtin()
    for plugin in args.plugin:
        load_plugin(plugin)
    _check_arguments(args)
    (refuse_file if args.dry_run else writable_folder)(args.results_dir, "--results-dir")
    specs = [get_model(name) for name in args.models]     # unknown names fail before data loads
    from bench.data.cli import aux_periods_of
    datasets = load_datasets(args.datasets or ["demo"], args.data_dir,
                             FolderOptions.from_args(args), aux_periods_of(args))
    device = resolve_device(args.device)
    jobs = [prepare(args, spec, dataset, specs) for dataset in datasets for spec in specs]
    if args.write_experiment is not None and len(jobs) > 1:
        raise ConfigError("--write-experiment writes one model's tuned row: pass one model and "
                          "one dataset")
    failed = 0
    for job in jobs:
        failed += run_job(job, args, device)
    return 1 if failed else 0


def _check_arguments(args: argparse.Namespace) -> None:
    if args.protocol == "paper":
        raise ConfigError("bench tune selects on validation (--protocol honest); the paper "
                          "protocol reports the best test epoch, so tuning under it would choose "
                          "on the test set: drop --protocol paper")
    for option, value, least in (("--budget", args.budget, 1), ("--seeds", args.seeds, 1),
                                 ("--members", args.members, 1), ("--epochs", args.epochs, 0)):
        if value is not None and value < least:
            raise ConfigError(f"{option} must be at least {least}, got {value}")
    if args.write_experiment is not None:
        if args.write_experiment.is_dir():
            raise ConfigError(f"--write-experiment {args.write_experiment} is a folder; pass a "
                              "file path ending in .toml")
        writable_folder(args.write_experiment.parent, "--write-experiment")


def prepare(args: argparse.Namespace, spec: ModelSpec, dataset: MultiBehaviorDataset,
            all_specs: list[ModelSpec]) -> TuneJob:
    """Load and check the model's space on the dataset: every error before any training."""
    if args.space is None and spec.name not in space_names():
        raise ConfigError(f"no shipped search space for model '{spec.name}' (shipped: "
                          f"{', '.join(space_names())}); pass --space FILE.toml (copy one of "
                          "bench/tune/spaces/ and set model)")
    space = load_space(args.space or spec.name)
    known: dict = {}
    for other in all_specs:
        known.update(other.param_specs())
    fixed = {k: v for k, v in parse_assignments(args.assignments, known).items()
             if k in spec.param_specs()}
    check_space(space, spec, dataset.name, dataset.n_behaviors, fixed)
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    spec.resolve(dataset.name, dataset.n_behaviors, {**fixed, **epochs})
    budget = args.budget or space.budget
    search = choose_search(args.search, space, dataset.n_behaviors, budget)
    return TuneJob(spec, dataset, space, fixed, budget, search)


def base_manifest(job: TuneJob, args: argparse.Namespace) -> dict[str, Any]:
    return {"kind": "tune", "model": job.spec.name, "dataset": job.dataset.name,
            "dataset_fingerprint": dataset_fingerprint(job.dataset),
            "space": space_entry(job.space), "search": job.search, "search_note": "",
            "search_seed": args.search_seed, "budget": job.budget, "epochs": args.epochs,
            "seeds": args.seeds, "base_seed": args.base_seed, "fixed": job.fixed,
            "protocol": PROTOCOL, "configurations": [],
            "batches": {"trials": 0, "batches": 0, "members": args.members}}


def _configuration_entries(plan: TunePlan) -> list[dict[str, Any]]:
    return [{"index": c.index, "values": c.values, "overrides": c.overrides,
             "run_ids": c.run_ids} for c in plan.configurations]


def run_job(job: TuneJob, args: argparse.Namespace, device: torch.device) -> int:
    """Search, train and rank one model on one dataset; returns the number of failed trials."""
    manifest = base_manifest(job, args)
    k = job.dataset.n_behaviors
    epochs = "the model's own epochs" if args.epochs is None else f"{args.epochs} epoch(s)"
    print(f"tune {job.spec.name} on {job.dataset.name}: space {job.space.name} "
          f"({job.space.source}), budget {job.budget}, {epochs}, {args.seeds} run(s) per "
          "configuration, honest protocol")
    if job.search == "optuna":
        attempts, path = _run_optuna(job, args, device, manifest)
    else:
        pick = grid_configurations if job.search == "grid" else random_configurations
        configurations, note = pick(job.space, k, job.budget, args.search_seed)
        manifest["search_note"] = note
        print(note)
        plan = plan_configurations(job.spec, job.dataset, job.space, configurations, job.fixed,
                                   args.epochs, args.seeds, args.base_seed, args.results_dir,
                                   args.members)
        manifest["configurations"] = _configuration_entries(plan)
        manifest["batches"].update(trials=len(plan.trials),
                                   batches=batch_count(plan.trials, args.members))
        _describe_plan(plan, job, args)
        if args.dry_run:
            _print_dry_run(plan, job)
            return 0
        path = write_manifest(args.results_dir, manifest)
        attempts = _train(plan, job, args, device)
        path = write_manifest(args.results_dir, manifest)
    return _finish(job, args, path, attempts)


def _describe_plan(plan: TunePlan, job: TuneJob, args: argparse.Namespace) -> None:
    for path in plan.corrupted:
        print(f"warning: record {path} is truncated or corrupted; its trial runs again",
              file=sys.stderr)
    configs = len(plan.configurations)
    print(f"{configs} configuration(s) x {args.seeds} run(s): {len(plan.trials)} trial(s), "
          f"{len(plan.to_run)} to run, {len(plan.stored)} already stored in {args.results_dir}/")
    if plan.to_run:
        sizes = ", ".join(str(len(b)) for b in plan.batches)
        print(f"the {len(plan.to_run)} trial(s) to run train as {len(plan.batches)} batch(es) "
              f"of sizes {sizes} (at most {args.members} member(s) each): "
              f"{batching_rule(job)}")


def batching_rule(job: TuneJob) -> str:
    """Which searched parameters join batches and which split them, for this model."""
    declared = job.spec.param_specs()
    joining = [t for t in job.space.targets() if declared[t].batchable]
    splitting = [t for t in job.space.targets() if not declared[t].batchable]
    parts = []
    if joining:
        parts.append(f"members differing in {', '.join(joining)} train together, each with its "
                     "own values")
    if splitting:
        parts.append(f"{', '.join(splitting)} {'is' if len(splitting) == 1 else 'are'} "
                     "structural and split batches")
    return "; ".join(parts)


def _print_dry_run(plan: TunePlan, job: TuneJob) -> None:
    position = {t.run_id: i for i, batch in enumerate(plan.batches) for t in batch}
    for config in plan.configurations:
        values = ", ".join(f"{d.name}={d.label(config.values[d.name])}"
                           for d in job.space.dimensions)
        where = [f"batch {position[r] + 1}" if r in position else "stored"
                 for r in config.run_ids]
        print(f"  configuration {config.index}: {values}  [{', '.join(where)}]")


def _train(plan: TunePlan, job: TuneJob, args: argparse.Namespace,
           device: torch.device) -> list[Attempt]:
    from bench.commands.run import run_groups
    return run_groups(plan.batches, {job.dataset.name: job.dataset}, device, args)


def _run_optuna(job: TuneJob, args: argparse.Namespace, device: torch.device,
                manifest: dict[str, Any]) -> tuple[list[Attempt], Path | None]:
    """Ask-and-tell rounds of at most ``--members`` configurations: each round's trials batch
    together, and their validation HR@10 is told before the next round is asked."""
    from bench.report.tune import OK, collect
    search = OptunaSearch(job.space, job.dataset.n_behaviors, args.search_seed)
    rounds = -(-job.budget // args.members)
    manifest["search_note"] = (f"optuna search: TPE sampler (search seed {args.search_seed}) in "
                               f"{rounds} ask-and-tell round(s) of at most {args.members}")
    print(manifest["search_note"])
    attempts: list[Attempt] = []
    path = None
    done = 0
    while done < job.budget:
        asked = search.ask(min(args.members, job.budget - done))
        plan = plan_configurations(job.spec, job.dataset, job.space, [c for _, c in asked],
                                   job.fixed, args.epochs, args.seeds, args.base_seed,
                                   args.results_dir, args.members, first_index=done)
        manifest["configurations"] += _configuration_entries(plan)
        manifest["batches"]["trials"] += len(plan.trials)
        manifest["batches"]["batches"] += batch_count(plan.trials, args.members)
        print(f"round {done // args.members + 1} of {rounds}:")
        _describe_plan(plan, job, args)
        if args.dry_run:
            _print_dry_run(plan, job)
            print("(a dry run shows Optuna's first round only: later rounds depend on its "
                  "results)")
            return [], None
        path = write_manifest(args.results_dir, manifest)
        attempts += _train(plan, job, args, device)
        round_manifest = {**manifest, "configurations": _configuration_entries(plan)}
        scores = {tuple(c.run_ids): c.score if c.status == OK else None
                  for c in collect(round_manifest, args.results_dir)}
        for (trial, _), config in zip(asked, plan.configurations):
            search.tell(trial, scores[tuple(config.run_ids)])
        done += len(asked)
    path = write_manifest(args.results_dir, manifest)
    return attempts, path


def _finish(job: TuneJob, args: argparse.Namespace, path: Path | None,
            attempts: list[Attempt]) -> int:
    """Print the ranking (as ``bench report tune`` does) and write the experiment file."""
    if path is None:
        return 0
    from bench.report.tune import best, collect, experiment_file, render
    failures = [a for a in attempts if a.status == "failed"]
    for attempt in attempts:
        if attempt.status == "elsewhere":
            print(f"skipped (another runner holds it): {attempt.label}", file=sys.stderr)
    for attempt in failures:
        print(f"failed: {attempt.message}", file=sys.stderr)
    manifest = load_manifest(path)
    ranked = collect(manifest, args.results_dir)
    trained = sum(a.status == "trained" for a in attempts)
    folder = args.results_dir / job.dataset.name / job.spec.name
    print(f"\n{trained} record(s) written under {folder}/; manifest {path}")
    print(f"plot: python -m bench report tune {path} --results-dir {args.results_dir}\n")
    print(render(manifest, manifest_space(manifest, str(path)), ranked), end="")
    if args.write_experiment is not None:
        chosen = best(ranked)
        if chosen is None:
            raise ConfigError("--write-experiment: no configuration has complete results, so "
                              "there is nothing to write; rerun the tune")
        args.write_experiment.write_text(experiment_file(manifest, chosen, path.name,
                                                         str(args.write_experiment)))
        print(f"wrote {args.write_experiment} (run it: python -m bench run --experiment "
              f"{args.write_experiment})")
    return len(failures)
