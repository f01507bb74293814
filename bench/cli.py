"""Command line: ``python -m bench run|tune|list|data|report|perf|speedcheck``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from bench.errors import BenchError, ConfigError


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_run_parser(sub) -> None:
    p = sub.add_parser("run", help="train and evaluate models on datasets; store one record per trial")
    p.add_argument("--models", type=_csv, help="comma-separated model names "
                   "(see `bench list models`); 'encoder+decoder' composes; required unless "
                   "--experiment is given (then it keeps only the rows using these models)")
    p.add_argument("--experiment", metavar="NAME|FILE.toml",
                   help="train what a paper table or figure needs (bench/experiments/NAME.toml "
                        "or your own file): its models, datasets, seeds and parameters")
    p.add_argument("--datasets", type=_csv,
                   help="comma-separated dataset names, 'all' (those whose files are present), "
                        "or folders of your own data with --layout; default demo, or the "
                        "experiment's")
    p.add_argument("--seeds", type=int,
                   help="runs per model and dataset (default 5, or the experiment's)")
    p.add_argument("--base-seed", type=int, default=2025, help="seed all per-run seeds derive from")
    p.add_argument("--protocol", choices=("paper", "honest"),
                   help="paper (the default, or the experiment's): best-on-test over the "
                        "reference schedule and last epoch; honest: validation holdout, early "
                        "stopping, test once")
    p.add_argument("--epochs", type=int, help="override every model's number of epochs")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyper-parameter (repeatable); see `bench list params MODEL`")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--data-dir", help="dataset folder (default: $BENCH_DATA, else the user cache)")
    p.add_argument("--plugin", action="append", default=[],
                   help="a .py file or module whose models register themselves (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="list the trials; train nothing")
    p.add_argument("--checkpoint-every", type=int, default=5, metavar="EPOCHS",
                   help="save training state every EPOCHS epochs so a killed run resumes (0: never)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--seed-batch", action="store_true",
                   help="train the runs (seeds) of one model and dataset together as one batch "
                        "(paper protocol): the same per-run results, one computation")
    p.add_argument("--cuda-graphs", choices=("auto", "off"), default="auto",
                   help="on a CUDA device, capture each training step as a CUDA graph and replay "
                        "it (auto, the default); off: launch every operator from Python")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="trials run in N parallel worker processes (-1: one per CPU, or every "
                        "cluster worker); default 1, in this process")
    p.add_argument("--backend", choices=("loky", "dask", "ray"), default="loky",
                   help="where parallel trials run: loky (local processes), dask or ray (a "
                        "cluster, see --scheduler)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="the cluster to use: a dask scheduler (tcp://HOST:PORT) or a ray address")
    p.add_argument("--per-gpu", type=int, metavar="M",
                   help="with --device cuda: M trials at once per GPU, GPUs assigned in turn")
    from bench.data.cli import add_folder_arguments
    add_folder_arguments(p, "your own data (--datasets names a folder)")


def _add_list_parser(sub) -> None:
    p = sub.add_parser("list", help="list registered models, parameters, datasets, components")
    p.add_argument("what", choices=("models", "params", "datasets", "encoders", "decoders",
                                    "samplers"))
    p.add_argument("model", nargs="?", help="the model, for `list params`")
    p.add_argument("--plugin", action="append", default=[])
    p.add_argument("--data-dir")


def _add_report_parser(sub) -> None:
    from bench.commands.report import add_report_arguments
    p = sub.add_parser("report", help="paper tables and figures, or a summary, from stored records",
                       description="bench report summary | all | NAME (an experiment: table1.."
                                   "table6, fig3_layers, fig4_temperature, fig5_scaling, "
                                   "fig6_patterns, or a path to an experiment .toml file) | "
                                   "tune [MANIFEST|latest] (a `bench tune` ranking and plot)")
    add_report_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    from bench.version import package_version
    parser = argparse.ArgumentParser(prog="bench", description="mbbench: multi-behavior "
                                     "recommendation benchmark (COPF and baselines)")
    parser.add_argument("--version", action="version", version=f"mbbench {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(sub)
    from bench.commands.tune import add_tune_parser
    add_tune_parser(sub)
    _add_list_parser(sub)
    _add_report_parser(sub)
    from bench.commands.perf import add_perf_parser
    from bench.commands.speedcheck import add_speedcheck_parser
    from bench.data.cli import add_data_parser
    add_data_parser(sub)
    add_perf_parser(sub)
    add_speedcheck_parser(sub)
    from bench.commands.campaign import add_campaign_parser
    add_campaign_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from bench.commands.run import command_run
            return command_run(args)
        if args.command == "tune":
            from bench.commands.tune import command_tune
            return command_tune(args)
        if args.command == "list":
            from bench.commands.listing import command_list
            return command_list(args)
        if args.command == "report":
            from bench.commands.report import command_report
            return command_report(args)
        if args.command == "perf":
            from bench.commands.perf import command_perf
            return command_perf(args)
        if args.command == "speedcheck":
            from bench.commands.speedcheck import command_speedcheck
            return command_speedcheck(args)
        if args.command == "campaign":
            from bench.commands.campaign import command_campaign
            return command_campaign(args)
        if args.command == "data":
            return args.handler(args)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are stored; rerun the same command to resume "
              "(stored trials are skipped)", file=sys.stderr)
        return 130
    raise ConfigError(f"unknown command {args.command}")  # pragma: no cover
