"""Parameter sweeps (the paper's Figures 3-5) as tables: one line per (series, value), one column
per (dataset, metric), mean ± std over runs; the best value of each curve is bold. The paper shows
these only as plots, so there are no paper numbers to compare with."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from bench.experiments.loader import Experiment
from bench.report.results import CellResult, ResultIndex
from bench.report.tables import PROTOCOL_TEXT, Options, Stat, _md_table, _tex, dataset_label, stat_of


@dataclass
class SweepResult:
    experiment: Experiment
    options: Options
    datasets: list[str]
    points: dict[tuple[str, str, Any], CellResult]
    stats: dict[tuple[str, str, Any, str], Stat]

    @property
    def series(self) -> list[str]:
        return [s.label for s in self.experiment.series]

    @property
    def values(self) -> list[Any]:
        return list(self.experiment.values)

    def curve(self, dataset: str, series: str, metric: str) -> list[tuple[Any, Stat]]:
        return [(x, self.stats[(dataset, series, x, metric)]) for x in self.values
                if (dataset, series, x, metric) in self.stats]

    def best_x(self, dataset: str, series: str, metric: str) -> Any:
        curve = self.curve(dataset, series, metric)
        return max(curve, key=lambda xs: xs[1].mean)[0] if curve else None


def build_sweep(experiment: Experiment, index: ResultIndex, options: Options) -> SweepResult:
    datasets = list(options.datasets or experiment.datasets)
    points, stats = {}, {}
    for cell in experiment.cells(datasets):
        found = index.find(cell, options.protocol, options.rule, options.epochs)
        points[(cell.dataset, cell.label, cell.x)] = found
        for metric in experiment.metrics:
            s = stat_of(found.values(metric)) if found.records else None
            if s is not None:
                stats[(cell.dataset, cell.label, cell.x, metric)] = s
    return SweepResult(experiment, options, datasets, points, stats)


def _grid(result: SweepResult, style: str) -> tuple[list[str], list[list[str]]]:
    exp = result.experiment
    header = ["series", exp.x_label or "value"]
    header += [f"{dataset_label(d)} {m}" for d in result.datasets for m in exp.metrics]
    body = []
    for series in result.series:
        for x in result.values:
            line = [series, _fmt_x(x)]
            for d in result.datasets:
                cell = result.points[(d, series, x)]
                for m in exp.metrics:
                    s = result.stats.get((d, series, x, m))
                    if s is None:
                        reason = cell.reason or "no value"
                        line.append(f"_{reason}_" if style == "md" else reason)
                        continue
                    text = f"{s.mean:.4f} ± {s.std:.4f}"
                    if result.best_x(d, series, m) == x and len(result.curve(d, series, m)) > 1:
                        text = f"**{text}**" if style == "md" else (
                            f"\\textbf{{{_tex(text)}}}" if style == "latex" else text)
                    line.append(text)
            body.append(line)
    return header, body


def _fmt_x(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _legend(result: SweepResult) -> list[str]:
    o = result.options
    ns = sorted({s.n for s in result.stats.values()})
    runs = ("no results yet for any point" if not ns else
            f"mean ± std over {ns[0]} run(s)" if len(ns) == 1
            else f"mean ± std over {ns[0]}-{ns[-1]} runs")
    params = ", ".join(f"{s.label}: {'/'.join(s.params)}"
                       + (" (one entry per behavior)" if s.per_behavior else "")
                       for s in result.experiment.series)
    return [f"{runs} (the experiment asks for {result.experiment.seeds}); "
            f"{PROTOCOL_TEXT[o.protocol]}; full ranking, rule {o.resolved_rule}.",
            f"Swept parameter(s): {params}. **bold**: the best value of each curve.",
            "The paper shows this experiment only as a plot: no paper numbers to compare with."]


def _notes(result: SweepResult) -> list[str]:
    grouped: dict[str, list[str]] = {}
    for (d, series, x), cell in result.points.items():
        where = f"{series}={_fmt_x(x)} on {d}"
        if cell.reason:
            text = cell.reason + (f": {cell.detail}" if cell.detail else "")
            grouped.setdefault(text, []).append(where)
        for note in cell.notes:
            grouped.setdefault(note, []).append(where)
    return [f"{text}: {', '.join(w)}" for text, w in grouped.items()]


def render_sweep(result: SweepResult, fmt: str) -> str:
    header, body = _grid(result, "md" if fmt == "md" else "latex" if fmt == "latex" else "plain")
    if fmt == "csv":
        import csv
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["experiment", "series", "value", "dataset", "metric", "protocol", "rule",
                    "mean", "std", "runs", "reason"])
        for (d, series, x), cell in result.points.items():
            for m in result.experiment.metrics:
                s = result.stats.get((d, series, x, m))
                w.writerow([result.experiment.name, series, x, d, m, result.options.protocol,
                            result.options.resolved_rule, "" if s is None else f"{s.mean:.6g}",
                            "" if s is None else f"{s.std:.6g}", 0 if s is None else s.n,
                            cell.reason or ""])
        return buf.getvalue()
    if fmt == "latex":
        spec = "ll" + "r" * (len(header) - 2)
        lines = ["\\begin{table}[t]", "\\centering", "\\small",
                 f"\\caption{{{_tex(result.experiment.title)}. "
                 f"{_tex(' '.join(_legend(result)).replace('**bold**', 'bold'))}}}",
                 f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                 " & ".join(_tex(h) for h in header) + " \\\\", "\\midrule"]
        lines += [" & ".join(c if c.startswith("\\textbf") else _tex(c) for c in row) + " \\\\"
                  for row in body]
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        return "\n".join(lines) + "\n"
    if fmt == "plain":
        from tabulate import tabulate
        out = [result.experiment.title, tabulate(body, headers=header, disable_numparse=True)]
        out += [line.replace("**bold**", "best") for line in _legend(result)]
        out += [f"note: {n}" for n in _notes(result)]
        return "\n".join(out) + "\n"
    out = [f"### {result.experiment.title}", "", _md_table(header, body), ""]
    out += [f"{line}  " for line in _legend(result)]
    notes = _notes(result)
    if notes:
        out += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"
