"""``bench report summary``: mean and std over runs per model and dataset from stored records."""
from __future__ import annotations

import argparse

from tabulate import tabulate

from bench.records import iter_records
from bench.runner import summarize

FORMATS = {"md": "github", "latex": "latex", "plain": "simple"}


def command_report(args: argparse.Namespace) -> int:
    records = [r for _, r in iter_records(args.results_dir)
               if (not args.datasets or r["config"]["dataset"] in args.datasets)
               and (not args.models or r["config"]["model"] in args.models)
               and (not args.protocol or r["config"]["protocol"] == args.protocol)]
    rows = summarize(records)
    if not rows:
        print(f"no records in {args.results_dir}/ match")
        return 1
    if args.format == "csv":
        import pandas as pd
        print(pd.DataFrame(rows).to_csv(index=False), end="")
    else:
        print(tabulate(rows, headers="keys", floatfmt=".4f", tablefmt=FORMATS[args.format]))
    return 0
