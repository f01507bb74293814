"""``bench run``: plan trials, skip the stored ones, run the rest, print a summary."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import torch
from tabulate import tabulate
from tqdm import tqdm

from bench.data.dataset import MultiBehaviorDataset
from bench.data.cli import aux_periods_of
from bench.data.select import FolderOptions, load_datasets
from bench.errors import ConfigError
from bench.folders import refuse_file, writable_folder
from bench.models.registry import get_model, load_builtin, load_plugin
from bench.params import parse_assignments
from bench.records import find_record
from bench.report.summary import summarize
from bench.runner import Attempt, Trial, attempt_group, plan_trials, resolve_device
from bench.seed_groups import seed_groups


def parse_overrides(args: argparse.Namespace) -> dict:
    specs = {}
    for name in args.models:
        specs.update(get_model(name).param_specs())
    overrides = parse_assignments(args.assignments, specs)
    if args.epochs is not None:
        if args.epochs < 0:
            raise ConfigError(f"--epochs must be 0 or more, got {args.epochs}")
        overrides["epochs"] = args.epochs
    return overrides


def command_run(args: argparse.Namespace) -> int:
    load_builtin()
    for plugin in args.plugin:
        load_plugin(plugin)
    # a dry run stores nothing; a real one must be able to, before minutes of training
    check_folder = refuse_file if args.dry_run else writable_folder
    check_folder(args.results_dir, "--results-dir")
    if args.experiment:
        from bench.experiments.plan import plan_experiment
        device = resolve_device(args.device)
        plan, datasets = plan_experiment(args)
    else:
        if not args.models:
            raise ConfigError("give --models (comma-separated names) or --experiment NAME")
        args.datasets = args.datasets or ["demo"]
        args.seeds = 5 if args.seeds is None else args.seeds
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
        for name in args.models:
            get_model(name)        # unknown names fail before any data is loaded
        overrides = parse_overrides(args)
        device = resolve_device(args.device)
        datasets = load_datasets(args.datasets, args.data_dir, FolderOptions.from_args(args),
                                 aux_periods_of(args))
        plan = plan_trials(args.models, datasets, args.seeds, args.protocol or "paper",
                           args.base_seed, overrides, args.results_dir)
    for path in plan.corrupted:
        print(f"warning: record {path} is truncated or corrupted; it is not counted and its "
              "trial runs again", file=sys.stderr)
    print(f"{len(plan.trials)} trial(s) to run, {len(plan.stored)} already stored "
          f"in {args.results_dir}/")
    if args.dry_run:
        for trial in plan.stored:
            print(f"  stored  {trial.label}")
        for trial in plan.trials:
            print(f"  to run  {trial.label}")
        return 0
    by_name = {d.name: d for d in datasets}
    groups = seed_groups(plan.trials) if args.seed_batch else [[t] for t in plan.trials]
    attempts = run_groups(groups, by_name, device, args)
    failures = [a.message for a in attempts if a.status == "failed"]
    elsewhere = [a.label for a in attempts if a.status == "elsewhere"]
    records = [r for t in plan.trials + plan.stored
               if (r := find_record(args.results_dir, t.config)) is not None]
    rows = summarize(records)
    if rows:
        print(tabulate(rows, headers="keys", floatfmt=".4f"))
    for label in elsewhere:
        print(f"skipped (another runner holds it): {label}", file=sys.stderr)
    for message in failures:
        print(f"failed: {message}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} trial(s) failed; their notes are stored as <run id>.failed.json "
              "beside the records, and a rerun tries them again", file=sys.stderr)
    return 1 if failures else 0


def run_groups(groups: Sequence[Sequence[Trial]], datasets: dict[str, MultiBehaviorDataset],
               device: torch.device, args: argparse.Namespace) -> list[Attempt]:
    """Train each group (one trial, or a batch) on ``--jobs`` workers, or one after the other in
    this process with a bar over trials; failures are reported as they come and returned."""
    if args.jobs not in (None, 1) or args.per_gpu is not None or args.backend != "loky":
        from bench.parallel import run_parallel
        return run_parallel(groups, args, device)
    attempts: list[Attempt] = []
    total = sum(len(group) for group in groups)
    bar = tqdm(total=total, desc="trials", unit="trial", disable=args.no_progress or not total)
    for group in groups:
        first = group[0]
        bar.set_postfix_str(f"{first.model}/{first.dataset}/run "
                            f"{','.join(str(t.run) for t in group)}")
        done = run_group(group, datasets[first.dataset], device, args)
        for attempt in done:
            if attempt.status == "failed":
                tqdm.write(f"FAILED {attempt.message}", file=sys.stderr)
        attempts += done
        bar.update(len(group))
    bar.close()
    return attempts


def run_group(trials, dataset, device, args) -> list[Attempt]:
    """Run one trial, or a batch of trials, in this process with progress bars."""
    bars = TrialBars(trials, disabled=args.no_progress)
    try:
        return attempt_group(trials, dataset, device, args.results_dir, bars.on_epoch,
                             checkpoint_every=args.checkpoint_every, on_progress=bars.on_progress,
                             cuda_graphs=args.cuda_graphs)
    finally:
        bars.close()


class TrialBars:
    """A bar over a trial's epochs and, when an epoch is long, one over its steps and
    evaluations. A resumed trial's epoch bar starts at the resumed epoch and says so."""

    # an epoch whose steps take longer than this gets its own bar
    LONG_EPOCH_SECONDS = 2.0

    def __init__(self, trials, disabled: bool = False) -> None:
        self.disabled = disabled
        size = f" x{len(trials)}" if len(trials) > 1 else ""
        self.label = f"  {trials[0].model}{size}"
        self.total = trials[0].config["params"]["epochs"]
        self.epochs = tqdm(total=self.total, desc=self.label, unit="ep", leave=False,
                           disable=disabled)
        self.steps = None
        self.epoch_started = time.perf_counter()

    def on_epoch(self, member: int, point: dict) -> None:
        if member != 0:
            return
        self.epochs.update(1)
        shown = {"loss": f"{point['loss']:.4g}"}
        for split in ("test", "valid"):
            if split in point:
                shown[f"{split} HR@10"] = f"{point[split]['HR@10']:.4f}"
        self.epochs.set_postfix(shown)
        self.epoch_started = time.perf_counter()

    def on_progress(self, what: str, done: int, total: int) -> None:
        if what == "resumed":     # the bar starts where training continues
            self.epochs.n = self.epochs.last_print_n = done
            self.epochs.set_description(f"{self.label} (resumed from epoch {done})")
            self.epochs.refresh()
            return
        if self.disabled:
            return
        if what == "steps" and done == 1:
            self.epoch_started = time.perf_counter()
        if self.steps is None:
            if time.perf_counter() - self.epoch_started < self.LONG_EPOCH_SECONDS:
                return
            self.steps = tqdm(total=total, desc="    steps", unit="step", leave=False)
        if what == "steps":
            if self.steps.total != total or done < self.steps.n:
                self.steps.reset(total=total)
                self.steps.set_description("    steps")
            self.steps.n = done
            self.steps.refresh()
        elif what == "evaluate":
            self.steps.set_description("    evaluating" if done < total else "    steps")
            self.steps.refresh()

    def close(self) -> None:
        if self.steps is not None:
            self.steps.close()
        self.epochs.close()
