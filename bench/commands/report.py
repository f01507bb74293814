"""``bench report``: paper tables and figures, or a summary, from the stored records.

    bench report summary                       mean/std over runs per model and dataset
    bench report NAME                          one experiment (table1..table6, fig3_layers, ...,
                                               or a path to your own experiment .toml)
    bench report all                           every shipped experiment: tables as files under
                                               <figures dir>/tables/, figures under <figures dir>/
    bench report tune [MANIFEST|latest]        a `bench tune` ranking, rebuilt from its manifest
                                               and records, and its plot under <figures dir>/

Tables print to standard output (``--output FILE`` writes them to a file); figures are written as
PNG and PDF under ``--figures-dir`` (default ``figures/``) and their paths go to standard error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import ConfigError
from bench.folders import refuse_file, writable_folder

FORMATS = {"md": "github", "latex": "latex", "plain": "simple"}
EXTENSIONS = {"md": "md", "latex": "tex", "csv": "csv", "plain": "txt"}
FIGURE_KINDS = ("behavior-patterns", "sweep")     # the experiment kinds that draw figures
RECORD_KINDS = ("table", "sweep")                 # ... and those built from result records


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    """The ``report`` parser's arguments (kept here so the CLI module only registers the parser)."""
    p.add_argument("name", metavar="NAME",
                   help="summary, all, tune, an experiment (table1..table6, fig3_layers, "
                        "fig4_temperature, fig5_scaling, fig6_patterns) or a path to an "
                        "experiment .toml file")
    p.add_argument("manifest", nargs="?", metavar="MANIFEST",
                   help="report tune only: a manifest under <results-dir>/tune/ (a path or "
                        "its file name), or latest (the default)")
    p.add_argument("--results-dir", type=Path, default=Path("results"))
    p.add_argument("--datasets", type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
                   help="comma-separated datasets, or folders of your own data with --layout "
                        "(default: the experiment's)")
    p.add_argument("--models", type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
                   help="summary only: keep these models")
    p.add_argument("--stale", action="store_true",
                   help="summary only: also show rows recorded by an older version of the "
                        "model's code (left out by default)")
    p.add_argument("--protocol", choices=("paper", "honest"),
                   help="which records: paper (best-on-test, the default for experiments) or "
                        "honest (validation-selected); summary: no filter unless given")
    p.add_argument("--format", choices=("md", "csv", "latex", "plain"), default="md")
    p.add_argument("--metrics", type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
                   help="tables: the metric columns, NAME@K with NAME one of HR, NDCG, Recall, "
                        "Precision, MRR and any K (default: the experiment's); a metric a "
                        "record does not hold comes from its stored ranks")
    p.add_argument("--split", choices=("seen",),
                   help="tables: add each row's metrics on the test items its training input "
                        "already held under an auxiliary behavior (seen) and on the others "
                        "(novel), with the seen share")
    p.add_argument("--std", action="store_true", help="show the std over runs beside each mean")
    p.add_argument("--test", dest="seed_test", choices=("paired", "welch"), default="paired",
                   help="test over runs behind the star: paired t-test by run index (default) "
                        "or Welch's t-test")
    p.add_argument("--user-test", choices=("wilcoxon", "ttest"), default="wilcoxon",
                   help="paired test over per-user values of run-matched records")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the star")
    p.add_argument("--rule", choices=("auto", "default", "paper"), default="auto",
                   help="metric rule for users with several test items: auto = paper under "
                        "--protocol paper (the reference code's), default otherwise")
    p.add_argument("--epochs", type=int,
                   help="use only records trained for this many epochs (default: prefer the "
                        "schedule's own length, else whatever is stored)")
    p.add_argument("--no-paper", action="store_true",
                   help="leave out the paper's numbers and the difference columns")
    p.add_argument("--data-dir", help="dataset folder for table1/fig6 and for telling why a "
                   "cell is empty (default: $BENCH_DATA, else the user cache)")
    p.add_argument("--figures-dir", type=Path, default=Path("figures"),
                   help="where figures go (default figures/); `report all` puts tables in "
                        "<figures dir>/tables/")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument("--output", type=Path, help="write the table to this file instead of stdout")
    p.add_argument("--plugin", action="append", default=[],
                   help="a .py file or module whose models register themselves (repeatable)")
    from bench.data.cli import add_folder_arguments
    add_folder_arguments(p, "your own data (--datasets names a folder; --test stays the "
                            "significance test, so the csv test file is --test-file)",
                         test_option=False)


def command_report(args: argparse.Namespace) -> int:
    from bench.models.registry import load_builtin, load_plugin
    load_builtin()
    for plugin in getattr(args, "plugin", []) or []:
        load_plugin(plugin)
    refuse_file(args.results_dir, "--results-dir")
    args.folders = name_dataset_entries(args)
    if args.manifest is not None and args.name != "tune":
        raise ConfigError(f"bench report {args.name} takes no second name ({args.manifest}); "
                          "only `bench report tune MANIFEST` does")
    if args.name == "tune":
        return report_tune(args)
    if args.name == "summary":
        return report_summary(args)
    if args.name == "all":
        writable_folder(args.figures_dir, "--figures-dir")
        return report_all(args)
    from bench.experiments import load_experiment
    experiment = load_experiment(args.name)
    check_outputs(experiment, args)
    index = None
    if experiment.kind in RECORD_KINDS:
        index = read_results(args)
    text, files, messages = build_report(experiment, args, args.format, index=index)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    for path in files:
        print(f"figure: {path}", file=sys.stderr)
    for message in messages:
        print(message, file=sys.stderr)
    return 0


def name_dataset_entries(args: argparse.Namespace) -> dict[str, str]:
    """Turn --datasets into the names records carry (a folder of your own data is named after
    the folder); returns name -> folder for those folders."""
    from bench.data.select import FolderOptions, dataset_name, is_folder
    options = FolderOptions.from_args(args)
    args.folder_options = options
    folders: dict[str, str] = {}
    if args.datasets:
        names = []
        for entry in args.datasets:
            name = dataset_name(entry, options)
            if is_folder(entry, options):
                folders[name] = entry
            names.append(name)
        args.datasets = names
    return folders


def check_outputs(experiment, args: argparse.Namespace) -> None:
    """Refuse an --output or --figures-dir that cannot be written, before anything is built."""
    if args.output:
        if args.output.is_dir():
            raise ConfigError(f"--output {args.output} is a folder; pass a file path "
                              f"(e.g. --output {args.output / (experiment.name + '.md')})")
        writable_folder(args.output.parent, "--output")
    if not args.no_figures and experiment.kind in FIGURE_KINDS:
        writable_folder(args.figures_dir, "--figures-dir")


def read_results(args: argparse.Namespace):
    """The records of --results-dir, after naming every file that could not be used on stderr
    (a damaged record would otherwise only lower a run count, unexplained)."""
    from bench.report.results import ResultIndex
    index = ResultIndex(args.results_dir, args.data_dir)
    for line in index.warnings():
        print(line, file=sys.stderr)
    return index


def report_tune(args: argparse.Namespace) -> int:
    """A tune's ranking (the text `bench tune` printed) from its manifest and records, and the
    plot of validation HR@10 against each searched parameter."""
    from bench.report.tune import collect, plot, render
    from bench.tune.manifest import find_manifest, load_manifest, manifest_space
    path = find_manifest(args.results_dir, args.manifest)
    manifest = load_manifest(path)
    space = manifest_space(manifest, str(path))
    ranked = collect(manifest, args.results_dir)
    text = render(manifest, space, ranked)
    if args.output:
        if args.output.is_dir():
            raise ConfigError(f"--output {args.output} is a folder; pass a file path")
        writable_folder(args.output.parent, "--output")
        args.output.write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    if not args.no_figures:
        writable_folder(args.figures_dir, "--figures-dir")
        for figure in plot(manifest, space, ranked, args.figures_dir, f"tune_{path.stem}"):
            print(f"figure: {figure}", file=sys.stderr)
    return 0


def report_summary(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.report.summary import STALE, render_table, summarize, without_stale
    index = read_results(args)
    records = [r for stored in index.records.values() for _, r in stored
               if (not args.datasets or r["config"]["dataset"] in args.datasets)
               and (not args.models or r["config"]["model"] in args.models)
               and (not args.protocol or r["config"]["protocol"] == args.protocol)]
    hidden = 0
    if not args.stale:
        records, hidden = without_stale(records)
    left_out = (f"{hidden} row{'s' if hidden != 1 else ''} of older model code left out "
                "(--stale shows them)")
    # csv is for programs: its settings keep every value as recorded
    rows = summarize(records, compact=args.format != "csv")
    if not rows:
        print(f"no records of the current model code in {args.results_dir}/ match; {left_out}"
              if hidden else f"no records in {args.results_dir}/ match")
        return 1
    if args.format == "csv":
        import pandas as pd
        print(pd.DataFrame(rows).to_csv(index=False), end="")
    elif args.format == "latex":
        print(tabulate(rows, headers="keys", floatfmt=".4f", tablefmt=FORMATS[args.format]))
    else:
        print(render_table(rows, FORMATS[args.format]), end="")
    if hidden:
        print(left_out, file=sys.stderr if args.format in ("csv", "latex") else sys.stdout)
    if any(row["code"] == STALE for row in rows):
        print(f"note: code '{STALE}': recorded by an older version of the model's code; rerun "
              "to refresh", file=sys.stderr)
    return 0


def _options(args, experiment=None):
    from bench.report.tables import Options
    if args.alpha <= 0 or args.alpha >= 1:
        raise ConfigError(f"--alpha must lie in (0, 1), got {args.alpha}")
    protocol = args.protocol or (experiment.protocol if experiment is not None else "paper")
    from bench.data.cli import aux_periods_of
    from bench.evaluate import parse_metric
    metrics = getattr(args, "metrics", None) or None
    for metric in metrics or ():
        parse_metric(metric)
    return Options(protocol=protocol, rule=args.rule, seed_test=args.seed_test,
                   user_test=args.user_test, alpha=args.alpha, epochs=args.epochs, std=args.std,
                   show_paper=not args.no_paper, datasets=args.datasets, metrics=metrics,
                   split=getattr(args, "split", None), aux_periods=aux_periods_of(args))


def build_report(experiment, args: argparse.Namespace, fmt: str,
                 index=None) -> tuple[str, list[Path], list[str]]:
    """(table text, figure files written, messages) for one experiment."""
    from bench.report import datasets as ds
    names = list(args.datasets or experiment.datasets)
    draw = not args.no_figures
    messages: list[str] = []
    if experiment.kind in ("dataset-stats", "behavior-patterns"):
        folders = getattr(args, "folders", {})
        rows, loaded = [], {}
        for name in names:
            if name in folders:
                row, dataset = ds.folder_row(folders[name], args.folder_options)
                if dataset is not None:
                    loaded[name] = dataset
            else:
                row = ds.dataset_row(name, args.data_dir)
            rows.append(row)
    if experiment.kind == "dataset-stats":
        return ds.render_table1(rows, fmt, experiment.title), [], messages
    if experiment.kind == "behavior-patterns":
        units = ["user", "pair"] if experiment.unit == "both" else [experiment.unit]
        tables, skipped = ds.pattern_tables(rows, args.data_dir, units, loaded)
        files: list[Path] = []
        if draw:
            from bench.report.figures import plot_patterns
            for (name, unit), (behaviors, patterns) in tables.items():
                suffix = "" if len(units) == 1 else f"_{unit}"
                files += plot_patterns(experiment.name, name, behaviors, patterns,
                                       args.figures_dir, unit, suffix)
        messages += [f"{experiment.name}: not drawn: {s}" for s in skipped]
        return ds.render_patterns(tables, skipped, fmt, experiment.title), files, messages
    from bench.report.results import ResultIndex
    index = index or ResultIndex(args.results_dir, args.data_dir)
    options = _options(args, experiment)
    if experiment.kind == "table":
        from bench.report.tables import RENDERERS, build_table
        result = build_table(experiment, index, options)
        return RENDERERS[fmt](result), [], messages
    from bench.report.sweeps import build_sweep, render_sweep
    result = build_sweep(experiment, index, options)
    files = []
    if draw:
        from bench.report.figures import plot_sweep
        files, empty = plot_sweep(result, args.figures_dir)
        messages += [f"{experiment.name}: no figure for {d} (no results)" for d in empty]
    return render_sweep(result, fmt), files, messages


def report_all(args: argparse.Namespace) -> int:
    """Every shipped experiment: tables under <figures dir>/tables/, figures under <figures dir>/."""
    from bench.experiments import experiment_names, load_experiment
    fmt = args.format
    tables_dir = args.figures_dir / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    index = read_results(args)
    print(f"{len(index)} record(s) in {args.results_dir}/")
    for name in experiment_names():
        experiment = load_experiment(name)
        text, files, messages = build_report(experiment, args, fmt, index=index)
        path = tables_dir / f"{name}.{EXTENSIONS[fmt]}"
        path.write_text(text)
        print(f"{name}: table {path}")
        for file in files:
            print(f"{name}: figure {file}")
        for message in messages:
            print(f"  {message}")
    print(f"tables in {tables_dir}/, figures in {args.figures_dir}/")
    return 0
