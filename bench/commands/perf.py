"""``bench perf``: time training steps and full-ranking evaluation; write perf records."""
from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from bench.commands.run import parse_overrides
from bench.data.cli import add_folder_arguments, aux_periods_of
from bench.data.select import FolderOptions, load_datasets
from bench.errors import ConfigError
from bench.folders import writable_folder
from bench.kernels import plain_kernels
from bench.models.registry import get_model, load_builtin, load_plugin
from bench.perf import perf_model, perf_random_scorer, write_perf_record
from bench.runner import resolve_device


def add_perf_parser(sub) -> None:
    p = sub.add_parser("perf", help="seconds per training step/epoch, evaluation time, peak memory")
    p.add_argument("--models", type=lambda s: [x for x in s.split(",") if x], default=[])
    p.add_argument("--datasets", type=lambda s: [x for x in s.split(",") if x], default=["demo"],
                   help="comma-separated dataset names, or folders of your own data with "
                        "--layout (default demo)")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=20, help="timed training steps (after 3 warm-up)")
    p.add_argument("--repeats", type=int, default=3, help="timed full evaluations")
    p.add_argument("--random-scorer", type=int, metavar="DIM",
                   help="also time the evaluator alone with a random DIM-d dot-product scorer")
    p.add_argument("--plain", action="store_true",
                   help="time the plain PyTorch forms of the suite's exact fast paths (the "
                        "baseline they are measured against; see bench/kernels.py)")
    p.add_argument("--seed-batch", type=int, default=1, metavar="S",
                   help="time steps of S runs trained together as one batch (and count one "
                        "run's operators beside the batch's)")
    p.add_argument("--cuda-graphs", choices=("auto", "off"), default="auto",
                   help="on CUDA, time steps replayed from a captured CUDA graph (auto) or "
                        "launched operator by operator (off)")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    p.add_argument("--results-dir", default="results")
    p.add_argument("--data-dir")
    p.add_argument("--plugin", action="append", default=[])
    add_folder_arguments(p, "your own data (--datasets names a folder)")


def command_perf(args: argparse.Namespace) -> int:
    load_builtin()
    for plugin in args.plugin:
        load_plugin(plugin)
    if not args.models and args.random_scorer is None:
        raise ConfigError("give --models and/or --random-scorer DIM")
    if args.steps < 1 or args.repeats < 1 or args.seed_batch < 1:
        raise ConfigError("--steps, --repeats and --seed-batch must be at least 1")
    for name in args.models:
        get_model(name)
    writable_folder(Path(args.results_dir), "--results-dir")
    overrides = parse_overrides(args)
    device = resolve_device(args.device)
    rows = []
    for dataset in load_datasets(args.datasets, args.data_dir, FolderOptions.from_args(args),
                                 aux_periods_of(args)):
        measurements = []
        if args.random_scorer is not None:
            measurements.append(perf_random_scorer(dataset, device, args.random_scorer, args.repeats))
        for name in args.models:
            own = {k: v for k, v in overrides.items() if k in get_model(name).param_specs()}
            with plain_kernels(args.plain):
                m = perf_model(name, dataset, device, args.steps, own, args.repeats,
                               args.seed_batch, args.cuda_graphs)
            m["kernels"] = "plain" if args.plain else "fast"
            if args.plain:
                m["model"] += "-plain"
            measurements.append(m)
        for m in measurements:
            path = write_perf_record(args.results_dir, dataset, device, m)
            rows.append((dataset.name, m["model"], m.get("seconds_per_step_median"),
                         m.get("seconds_per_epoch_estimate"), m["evaluation_seconds_median"],
                         m.get("ops_per_step_one_run", m.get("ops_per_step")),
                         m.get("ops_per_step") if "ops_per_step_one_run" in m else None,
                         m.get("ops_ratio"), str(path)))
    print(tabulate(rows, headers=["dataset", "model", "s/step", "s/epoch (est.)", "eval s",
                                  "ops_per_step (1 run)", "ops_per_step (batch)", "ratio",
                                  "record"], floatfmt=".4f"))
    return 0
