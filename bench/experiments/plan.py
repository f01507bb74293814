"""``bench run --experiment NAME``: the runner's trials for exactly the cells an experiment needs.

The command line narrows or overrides the file: ``--datasets`` replaces its datasets, ``--seeds``
its number of runs, ``--models`` keeps only the rows whose model it names, ``--epochs`` and
``--set`` apply on top of the file's parameters. Rows whose model is not registered are listed and
skipped (their cells will read "not registered" in the report); a configuration error in any other
row stops the command before anything is trained.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from bench.data.cli import aux_periods_of
from bench.data.periods import DEFAULT_AUX_PERIODS
from bench.data.select import FolderOptions, load_datasets
from bench.errors import ConfigError
from bench.experiments.loader import Experiment, load_experiment
from bench.experiments.resolve import NOT_REGISTERED, choose_model, resolve_cell
from bench.runner import RunPlan, plan_trials


def experiment_datasets(experiment: Experiment, names: list[str] | None, data_dir: str | None,
                        options: FolderOptions | None = None,
                        aux_periods: str = DEFAULT_AUX_PERIODS) -> list:
    """The datasets to run: the command line's (all must load; folders of your own data with
    ``options``), else the experiment's (those whose files are absent are skipped with a message)."""
    from bench.data import catalog
    if names:
        return load_datasets(names, data_dir, options, aux_periods)
    chosen = []
    for name in experiment.datasets:
        missing = catalog.missing_files(name, data_dir)
        if missing:
            print(f"skipping dataset {name}: {len(missing)} file(s) missing "
                  f"({', '.join(f.name for f in missing)}); see `bench data check {name}`",
                  file=sys.stderr)
        else:
            chosen.append(name)
    if not chosen:
        raise ConfigError(f"experiment {experiment.name}: none of its datasets "
                          f"({', '.join(experiment.datasets)}) is available; fetch one with "
                          "`bench data fetch NAME` or pass --datasets")
    return load_datasets(chosen, data_dir, aux_periods=aux_periods)


def cli_overrides(args: argparse.Namespace, experiment: Experiment) -> dict[str, Any]:
    """``--set`` parsed against the experiment's models' parameters, plus ``--epochs``."""
    from bench.params import parse_assignments
    specs: dict = {}
    for name in experiment.model_names():
        found, spec = choose_model((name,))
        if found is not None:
            specs.update(spec.param_specs())
    overrides = parse_assignments(getattr(args, "assignments", []) or [], specs)
    if getattr(args, "epochs", None) is not None:
        if args.epochs < 0:
            raise ConfigError(f"--epochs must be 0 or more, got {args.epochs}")
        overrides["epochs"] = args.epochs
    return overrides


def plan_experiment(args: argparse.Namespace) -> tuple[RunPlan, list]:
    """The trials of ``args.experiment`` (stored ones split off), and the loaded datasets."""
    experiment = load_experiment(args.experiment)
    if not experiment.trains:
        print(f"experiment {experiment.name} ({experiment.kind}) trains nothing; build it with "
              f"`bench report {experiment.name}`")
        return RunPlan(), []
    seeds = args.seeds if args.seeds is not None else experiment.seeds
    protocol = args.protocol or experiment.protocol
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    extra = cli_overrides(args, experiment)
    datasets = experiment_datasets(experiment, args.datasets, args.data_dir,
                                   FolderOptions.from_args(args), aux_periods_of(args))
    cells = experiment.cells([d.name for d in datasets])
    if args.models:
        cells = [c for c in cells if set(c.models) & set(args.models)]
        if not cells:
            raise ConfigError(f"--models {','.join(args.models)}: no row of experiment "
                              f"{experiment.name} uses them; its models: "
                              f"{', '.join(experiment.model_names())}")
    resolved = [resolve_cell(c, extra) for c in cells]
    errors = [r.detail for r in resolved if r.problem and r.problem != NOT_REGISTERED]
    if errors:
        raise ConfigError("; ".join(errors))
    absent = sorted({f"{r.cell.label} ({'|'.join(r.cell.models)})" for r in resolved
                     if r.problem == NOT_REGISTERED})
    if absent:
        print(f"not registered, skipped: {', '.join(absent)}", file=sys.stderr)
    plan, seen = RunPlan(), set()
    by_name = {d.name: d for d in datasets}
    for r in resolved:
        if not r.ok:
            continue
        part = plan_trials([r.model], [by_name[r.cell.dataset]], seeds, protocol,
                           args.base_seed, r.overrides, args.results_dir)
        for bucket, trials in ((plan.trials, part.trials), (plan.stored, part.stored)):
            for trial in trials:
                if trial.run_id not in seen:
                    seen.add(trial.run_id)
                    bucket.append(trial)
        plan.corrupted.extend(p for p in part.corrupted if p not in plan.corrupted)
    print(f"experiment {experiment.name}: {len(cells)} cell(s) x {seeds} run(s) on "
          f"{', '.join(by_name)}")
    return plan, datasets

