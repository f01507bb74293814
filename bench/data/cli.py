"""``bench data``: list, inspect, check and download datasets.

    bench data list  [--data-dir DIR]
    bench data stats NAME [--data-dir DIR] [--patterns user|pair|both]
    bench data check NAME [--data-dir DIR]
    bench data fetch NAME [--data-dir DIR] [--base-url URL]

NAME is a catalog name, or a folder of your own data together with ``--layout``:
``--layout pkef|bvae --behaviors a,b,target`` reads the folder itself; ``--layout csv --behaviors
view,cart,buy`` reads train.csv, test.csv and valid.csv (if present) in it, or the files
``--train FILE --test FILE [--valid FILE]`` name (relative to the folder). ``bench run``, ``perf``
and ``report`` take the same options (:func:`add_folder_arguments`).

Exit codes: 0 fine; 1 ``check`` found a problem; 2 an error (one line ``error: ...`` on stderr).
The main CLI calls :func:`add_data_parser` and then ``args.handler(args)`` (alias ``args.func``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from bench.data import catalog
from bench.data.dataset import MultiBehaviorDataset
from bench.data.layouts import LAYOUTS
from bench.data.location import resolve_data_dir
from bench.data.periods import AUX_PERIODS, DEFAULT_AUX_PERIODS
from bench.data.select import FolderOptions, load_folder
from bench.errors import BenchError, DataError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_ERROR = 0, 1, 2


def add_data_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``data`` and its commands on the main CLI's subparsers; the handler is
    ``args.handler`` (also ``args.func``), returning the exit code."""
    parser = subparsers.add_parser(
        "data", help="list, inspect, check and download datasets",
        description="List, inspect, check and download the multi-behavior datasets.")
    commands = parser.add_subparsers(dest="data_command", metavar="COMMAND")
    commands.required = True

    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--data-dir", metavar="DIR",
                       help="data directory (default: $BENCH_DATA, else ~/.cache/mbbench/datasets)")
    source = argparse.ArgumentParser(add_help=False)
    source.add_argument("name", metavar="NAME",
                        help=f"dataset name ({', '.join(catalog.names())}) or, with --layout, "
                             "a folder of your own data")
    add_folder_arguments(source, "your own data (NAME is a folder)")

    commands.add_parser("list", parents=[where], help="the catalog and what is present")
    stats = commands.add_parser("stats", parents=[where, source],
                                help="Table 1 statistics, the share of test items already seen "
                                     "under an auxiliary behavior, and behavior patterns")
    stats.add_argument("--patterns", choices=("user", "pair", "both"), default="both",
                       help="pattern distribution over users, user-item pairs, or both")
    commands.add_parser("check", parents=[where, source],
                        help="compare a folder with the catalog (exit 1 on a problem)")
    fetch = commands.add_parser("fetch", parents=[where],
                                help="download and verify a dataset")
    fetch.add_argument("name", metavar="NAME", choices=catalog.names())
    fetch.add_argument("--base-url", metavar="URL", help="mirror holding the files by name")
    fetch.add_argument("--timeout", type=float, default=60.0, help="seconds per connection")
    parser.set_defaults(func=run_data_command, handler=run_data_command)
    return parser


def add_folder_arguments(parser: argparse.ArgumentParser, title: str,
                         test_option: bool = True) -> None:
    """The options that read a folder of your own data, shared by ``data``, ``run``, ``perf`` and
    ``report`` (which keeps ``--test`` for its significance test: ``test_option=False`` leaves
    only ``--test-file``)."""
    own = parser.add_argument_group(title)
    own.add_argument("--layout", choices=LAYOUTS, help="layout of the folder(s)")
    own.add_argument("--behaviors", metavar="A,B,TARGET",
                     help="behavior order, upstream -> target (required with --layout)")
    own.add_argument("--train", "--train-file", dest="train_file", metavar="FILE",
                     help="csv layout: user,item,behavior table, relative to the folder "
                          "(default train.csv or train.tsv)")
    own.add_argument(*(("--test", "--test-file") if test_option else ("--test-file",)),
                     dest="test_file", metavar="FILE",
                     help="csv layout: user,item test table (default test.csv or test.tsv)")
    own.add_argument("--valid", "--valid-file", dest="valid_file", metavar="FILE",
                     help="csv layout: optional user,item validation table (default valid.csv "
                          "or valid.tsv where present)")
    own.add_argument("--delimiter", help="csv layout: field delimiter (default from extension)")
    own.add_argument("--prefixes", metavar="P1,P2,...",
                     help="bvae layout: file prefix per behavior (default: names, 'target' last)")
    add_periods_argument(parser)


def add_periods_argument(parser: argparse.ArgumentParser) -> None:
    """``--aux-periods``: which periods of the auxiliary behaviors are training input."""
    parser.add_argument("--aux-periods", choices=AUX_PERIODS, default=DEFAULT_AUX_PERIODS,
                        help="datasets whose files split behaviors by period (bvae, csv with "
                             "auxiliary rows in valid/test): the periods of the auxiliary "
                             "behaviors a model may read (default: train; 'all' includes the "
                             "test period, and every record and report says so)")


def aux_periods_of(args: argparse.Namespace) -> str:
    return getattr(args, "aux_periods", None) or DEFAULT_AUX_PERIODS


def run_data_command(args: argparse.Namespace) -> int:
    """Run one ``bench data`` command; returns the exit code (errors: one line on stderr)."""
    try:
        return _COMMANDS[args.data_command](args)
    except BenchError as exc:
        message = " ".join(line.strip() for line in str(exc).splitlines())
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR


def _cmd_list(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    print(f"data dir: {data_dir}")
    rows = [("name", "layout", "behaviors (upstream -> target)", "users x items", "status")]
    for name in catalog.names():
        spec = catalog.get(name)
        size = f"{spec.users:,} x {spec.items:,}" if spec.users and spec.items else "-"
        if spec.layout == "demo":
            status = "generated"
        else:
            missing = catalog.missing_files(name, data_dir)
            status = ("present" if not missing else
                      "absent" if len(missing) == len(spec.files) else
                      f"incomplete (missing {', '.join(f.name for f in missing)})")
        rows.append((name, spec.layout, " -> ".join(spec.behaviors), size, status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return EXIT_OK


def _cmd_stats(args: argparse.Namespace) -> int:
    from bench.data.stats import (behavior_patterns, compute_stats, format_patterns,
                                  format_seen_share, format_stats, seen_share,
                                  training_input_line)
    dataset = load_from_args(args)
    print(format_stats(compute_stats(dataset)))
    print(training_input_line(dataset))
    print(format_seen_share(seen_share(dataset, "test")))
    units = ("user", "pair") if args.patterns == "both" else (args.patterns,)
    for unit in units:
        print(format_patterns(behavior_patterns(dataset, unit), dataset.behaviors, unit))
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from bench.data.stats import (check, format_seen_share, seen_share,
                                  training_input_line)
    if args.layout:
        try:
            dataset = load_from_args(args)
        except DataError as exc:
            print(f"{args.name}: FAILED\n  problem: {exc}")
            return EXIT_CHECK_FAILED
        print(f"{args.name}: OK (loads; no catalog entry to compare with)\n  {dataset.describe()}"
              f"\n  {training_input_line(dataset)}\n  {format_seen_share(seen_share(dataset))}")
        return EXIT_OK
    report = check(args.name, args.data_dir, aux_periods_of(args))
    print(report.format())
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _cmd_fetch(args: argparse.Namespace) -> int:
    from bench.data.fetch import fetch
    report = fetch(args.name, args.data_dir, base_url=args.base_url, timeout=args.timeout,
                   progress=lambda message: print(message, file=sys.stderr))
    print(report.format())
    return EXIT_OK


_COMMANDS = {"list": _cmd_list, "stats": _cmd_stats, "check": _cmd_check, "fetch": _cmd_fetch}


def load_from_args(args: argparse.Namespace) -> MultiBehaviorDataset:
    """The dataset NAME names: a catalog entry, or a folder of the given ``--layout``."""
    options = FolderOptions.from_args(args)
    if options is None:
        if args.name not in catalog.CATALOG and Path(args.name).is_dir():
            raise DataError(f"'{args.name}' is a folder, not a catalog name; pass --layout "
                            f"({'|'.join(LAYOUTS)}) and --behaviors to read it")
        return catalog.load_dataset(args.name, args.data_dir, aux_periods_of(args))
    return load_folder(args.name, options, aux_periods_of(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m bench.data.cli stats taobao``) until the main CLI wires it."""
    parser = argparse.ArgumentParser(prog="bench")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
