"""Paper-style result tables (Tables 2-6) and sweep tables (Figures 3-5) from stored records.

A table cell is the mean over runs of HR@10 or NDCG@10 (main selection of the protocol: best-on-test
for ``paper``, validation-selected for ``honest``; full ranking). Within each group of rows (Table 6
compares pairs, the others the whole table) the best mean of a column is bold and the best baseline
underlined; the proposed row gets a star when a two-sided test against the best baseline gives
p < alpha. The table names its tests, prints the paper's numbers and our difference for every cell
the paper reports, and says why a cell is empty instead of showing a number.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from bench.experiments.loader import Experiment
from bench.report.paper import PaperTable, paper_dataset_stats, paper_table
from bench.data.periods import DEFAULT_AUX_PERIODS
from bench.report.results import CellResult, ResultIndex
from bench.report.split import SplitStat, render_split, split_stat, training_input_lines
from bench.report.significance import SEED_TESTS, USER_TESTS, Significance, seed_test, user_test

STAR = "★"      # the proposed row is significantly better than the best baseline
DAGGER = "†"    # ... significantly worse
FLOOR_MARK = " (floor)"   # after the label of a non-learned reference row (role "floor")
PROTOCOL_TEXT = {"paper": "protocol paper: best-on-test epoch of the reference schedule",
                 "honest": "protocol honest: epoch selected on a validation holdout, test once"}


@dataclass
class Options:
    protocol: str = "paper"
    rule: str = "auto"            # auto: the paper rule under the paper protocol, else default
    seed_test: str = "paired"     # paired | welch
    user_test: str = "wilcoxon"   # wilcoxon | ttest
    alpha: float = 0.05
    epochs: int | None = None
    std: bool = False
    show_paper: bool = True
    datasets: Sequence[str] | None = None
    metrics: Sequence[str] | None = None     # None: the experiment's
    split: str | None = None                 # "seen": add the seen / novel split of every row
    aux_periods: str = DEFAULT_AUX_PERIODS   # which records of data with periods

    @property
    def resolved_rule(self) -> str:
        if self.rule != "auto":
            return self.rule
        return "paper" if self.protocol == "paper" else "default"


@dataclass
class Stat:
    mean: float
    std: float
    n: int
    values: dict[int, float]


def stat_of(values: dict[int, float]) -> Stat | None:
    if not values:
        return None
    arr = np.array([values[k] for k in sorted(values)], dtype=float)
    return Stat(float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, len(arr),
                dict(values))


@dataclass
class Comparison:
    """One group's verdict in one column: best row, best baseline, the proposed row's tests."""

    group: str
    dataset: str
    metric: str
    best: str | None = None
    best_baseline: str | None = None
    proposed: str | None = None
    rel_impr: float | None = None
    seed: Significance | None = None
    user: Significance | None = None


@dataclass
class TableResult:
    experiment: Experiment
    options: Options
    datasets: list[str]
    cells: dict[tuple[str, str], CellResult]
    stats: dict[tuple[str, str, str], Stat]
    comparisons: dict[tuple[str, str, str], Comparison]
    paper: PaperTable | None
    notes: list[str] = field(default_factory=list)
    split: dict[tuple[str, str], "SplitStat"] = field(default_factory=dict)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.options.metrics or self.experiment.metrics)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.experiment.rows]

    def stat(self, label: str, dataset: str, metric: str) -> Stat | None:
        return self.stats.get((label, dataset, metric))

    def paper_value(self, label: str, dataset: str, metric: str) -> float | None:
        return self.paper.value(label, dataset, metric) if self.paper else None

    def paper_datasets(self) -> list[str]:
        if not (self.paper and self.options.show_paper):
            return []
        return [d for d in self.datasets if d in self.paper.datasets]


# ---- building -----------------------------------------------------------------------------------
def build_table(experiment: Experiment, index: ResultIndex, options: Options) -> TableResult:
    datasets = list(options.datasets or experiment.datasets)
    metrics = tuple(options.metrics or experiment.metrics)
    cells, stats = {}, {}
    for cell in experiment.cells(datasets):
        found = index.find(cell, options.protocol, options.rule, options.epochs,
                           aux_periods=options.aux_periods)
        cells[(cell.label, cell.dataset)] = found
        for metric in metrics:
            s = stat_of(found.values(metric)) if found.records else None
            if s is not None:
                stats[(cell.label, cell.dataset, metric)] = s
    result = TableResult(experiment, options, datasets, cells, stats, {},
                         paper_table(experiment.paper))
    if options.split == "seen":
        result.split = {key: split_stat(cell, options.resolved_rule, metrics, index.data_dir)
                        for key, cell in cells.items() if cell.records}
    groups: dict[str, list] = {}
    for row in experiment.rows:
        groups.setdefault(row.group, []).append(row)
    for group, rows in groups.items():
        proposed = next((r.label for r in rows if r.role == "proposed"), None)
        for dataset in datasets:
            for metric in metrics:
                comp = Comparison(group, dataset, metric, proposed=proposed)
                scored = [(r, result.stat(r.label, dataset, metric)) for r in rows]
                scored = [(r, s) for r, s in scored if s is not None]
                if scored:
                    comp.best = max(scored, key=lambda rs: rs[1].mean)[0].label
                # floors are shown beside the baselines but are not the paper's comparison
                baselines = [(r, s) for r, s in scored if r.role == "baseline"]
                if baselines:
                    comp.best_baseline = max(baselines, key=lambda rs: rs[1].mean)[0].label
                mine = result.stat(proposed, dataset, metric) if proposed else None
                if mine is not None and comp.best_baseline is not None:
                    other = result.stat(comp.best_baseline, dataset, metric)
                    if other.mean > 0:
                        comp.rel_impr = mine.mean / other.mean - 1.0
                    comp.seed = seed_test(mine.values, other.values, options.seed_test)
                    a = cells[(proposed, dataset)].per_user(metric)
                    b = cells[(comp.best_baseline, dataset)].per_user(metric)
                    comp.user = user_test(a, b, options.user_test)
                result.comparisons[(group, dataset, metric)] = comp
    return result


# ---- shared text pieces -------------------------------------------------------------------------
def dataset_label(name: str) -> str:
    info = paper_dataset_stats().get(name)
    return info["label"] if info else name


def _value(x: float) -> str:
    return f"{x:.4f}"


def _signed(x: float) -> str:
    return f"{x:+.4f}"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _row_marks(result: TableResult, label: str, dataset: str, metric: str) -> tuple[bool, bool, str]:
    """(bold, underline, significance mark) of one of our cells; the mark is STAR when the
    proposed row is significantly better than the best baseline, DAGGER when significantly
    worse, else empty."""
    row = next(r for r in result.experiment.rows if r.label == label)
    comp = result.comparisons.get((row.group, dataset, metric))
    if comp is None:
        return False, False, ""
    bold = comp.best == label
    under = (result.experiment.underline_best_baseline and comp.best_baseline == label
             and comp.best != label)
    mark = ""
    if (row.role == "proposed" and comp.seed is not None
            and comp.seed.significant(result.options.alpha)):
        mine = result.stat(label, dataset, metric).mean
        other = result.stat(comp.best_baseline, dataset, metric).mean
        mark = STAR if mine > other else DAGGER if mine < other else ""
    return bold, under, mark


def _ours_text(result: TableResult, label: str, dataset: str, metric: str, style: str) -> str:
    s = result.stat(label, dataset, metric)
    if s is None:
        reason = result.cells[(label, dataset)].reason or "no value"
        return {"md": f"_{reason}_", "latex": f"\\textit{{{_tex(reason)}}}"}.get(style, reason)
    text = _value(s.mean)
    if result.options.std:
        text += (" ± " if style != "latex" else " $\\pm$ ") + _value(s.std)
    bold, under, mark = _row_marks(result, label, dataset, metric)
    if style == "md":
        if under:
            text = f"<u>{text}</u>"
        if bold:
            text = f"**{text}**"
        return text + mark
    if style == "latex":
        if under:
            text = f"\\underline{{{text}}}"
        if bold:
            text = f"\\textbf{{{text}}}"
        return text + {STAR: "$^\\star$", DAGGER: "$^\\dagger$"}.get(mark, "")
    return text + mark


_TEX = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "_": "\\_", "#": "\\#",
        "$": "\\$", "{": "\\{", "}": "\\}", "★": "$^\\star$", "†": "$^\\dagger$", "τ": "$\\tau$",
        "α": "$\\alpha$", "Δ": "$\\Delta$", "−": "$-$", "±": "$\\pm$", "~": "\\~{}",
        "—": "---", "<": "$<$", ">": "$>$", "→": "$\\to$"}


def _tex(text: str) -> str:
    """Text made safe for LaTeX, in one pass (so no replacement is escaped twice)."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def header_columns(result: TableResult) -> list[tuple[str, str, str]]:
    """(dataset, metric, kind) per value column; kind is ours, paper or diff."""
    cols = []
    with_paper = set(result.paper_datasets())
    for dataset in result.datasets:
        for metric in result.metrics:
            cols.append((dataset, metric, "ours"))
            if dataset in with_paper:
                cols += [(dataset, metric, "paper"), (dataset, metric, "diff")]
    return cols


def table_grid(result: TableResult, style: str) -> tuple[list[str], list[list[str]]]:
    """Header and body rows as text (markdown, latex or plain cells)."""
    cols = header_columns(result)
    header = ["Model"]
    for dataset, metric, kind in cols:
        name = f"{dataset_label(dataset)} {metric}"
        header.append(name if kind == "ours" else f"{name} (paper)" if kind == "paper" else "Δ")
    body = []
    for row in result.experiment.rows:
        label = row.label + (FLOOR_MARK if row.role == "floor" else "")
        line = [label if style != "latex" else _tex(label)]
        for dataset, metric, kind in cols:
            if kind == "ours":
                line.append(_ours_text(result, row.label, dataset, metric, style))
                continue
            paper = result.paper_value(row.paper_key, dataset, metric)
            ours = result.stat(row.label, dataset, metric)
            if kind == "paper":
                line.append(_value(paper) if paper is not None else "—")
            else:
                line.append(_signed(ours.mean - paper) if paper is not None and ours else "—")
        body.append(line)
    if result.experiment.rel_impr:
        line = ["Rel. Impr." if style != "latex" else "Rel.\\ Impr."]
        for dataset, metric, kind in cols:
            comp = result.comparisons.get(("all", dataset, metric))
            ours = comp.rel_impr if comp else None
            paper = (result.paper.rel_impr.get(dataset, {}).get(metric)
                     if result.paper else None)
            if kind == "ours":
                line.append(_pct(ours) if ours is not None else "—")
            elif kind == "paper":
                line.append(f"{paper:.2f}%" if paper is not None else "—")
            else:
                line.append(f"{100 * ours - paper:+.2f} pp"
                            if ours is not None and paper is not None else "—")
        body.append(line)
    if style == "latex":
        header = [_tex(h) for h in header]
        body = [[x if "\\" in x or i == 0 else _tex(x) for i, x in enumerate(r)] for r in body]
    return header, body


def legend_lines(result: TableResult) -> list[str]:
    """What the numbers are, what the marks mean, which tests, and why cells are empty."""
    o, exp = result.options, result.experiment
    n_runs = sorted({s.n for s in result.stats.values()})
    runs = ("no results yet for any cell" if not n_runs else
            f"mean over {n_runs[0]} run(s) per cell" if len(n_runs) == 1 else
            f"mean over {n_runs[0]}-{n_runs[-1]} runs per cell")
    lines = [f"{runs} (the experiment asks for {exp.seeds}); "
             f"{PROTOCOL_TEXT[o.protocol]}; full ranking, rule {o.resolved_rule}"
             + ("; value ± std over runs" if o.std else "") + "."]
    marks = "**bold**: best in its column" + (" within each group" if _grouped(exp) else "")
    if exp.underline_best_baseline:
        marks += "; <u>underline</u>: best baseline"
    lines.append(marks + f"; {STAR} ({DAGGER}): the proposed row is better (worse) than the "
                 f"best baseline at p < {o.alpha:g} ({SEED_TESTS[o.seed_test]}, two-sided).")
    lines.append(f"Per-user test: {USER_TESTS[o.user_test]}, two-sided; p-values in the "
                 "significance table.")
    if result.paper_datasets():
        lines.append("(paper): the number printed in the paper; Δ = ours − paper."
                     + (f" Paper caveat: {result.paper.note}." if result.paper.note else ""))
    if any(r.role == "floor" for r in exp.rows):
        lines.append("(floor): a reference without learned parameters, not in the paper; it can "
                     "be bold, but it is never the best baseline that the proposed row is "
                     "compared with.")
    if exp.rel_impr:
        lines.append("Rel. Impr.: the proposed row over the best baseline of each column "
                     "(ours, and the paper's printed value; Δ in percentage points).")
    lines += training_input_lines(result.cells, result.datasets)
    missing = sorted({str(p) for cell in result.cells.values() for m in result.metrics
                      for p in cell.without(m)})
    if missing:
        lines.append(f"{len(missing)} record(s) hold neither a metric of the table nor the ranks "
                     "to compute it (made before ranks were stored); their runs are left out "
                     "of those cells: " + ", ".join(missing[:5])
                     + (" ..." if len(missing) > 5 else ""))
    return lines


def _grouped(exp: Experiment) -> bool:
    return len({r.group for r in exp.rows}) > 1


def significance_grid(result: TableResult) -> tuple[list[str], list[list[str]]]:
    header = ["group", "column", "proposed", "best baseline", "rel. impr.",
              f"p ({result.options.seed_test}, runs)", f"p ({result.options.user_test}, users)",
              "runs", "users"]
    body = []
    if not result.stats:
        return header, body
    for (group, dataset, metric), comp in result.comparisons.items():
        if comp.proposed is None:
            continue
        col = f"{dataset_label(dataset)} {metric}"
        if comp.seed is None:
            why = ("proposed row has no results" if result.stat(comp.proposed, dataset, metric)
                   is None else "no baseline with results")
            body.append([group, col, comp.proposed, comp.best_baseline or "—", "—", why, "—",
                         "—", "—"])
            continue
        body.append([group, col, comp.proposed, comp.best_baseline,
                     _pct(comp.rel_impr) if comp.rel_impr is not None else "—",
                     comp.seed.format_p(), comp.user.format_p(), str(comp.seed.n),
                     str(comp.user.n)])
    return header, body


def note_lines(result: TableResult) -> list[str]:
    """Why cells are empty (with details) and what a shown cell is made of, grouped."""
    grouped: dict[str, list[str]] = {}
    absent: list[str] = []
    for (label, dataset), cell in result.cells.items():
        where = f"{label} on {dataset}"
        if cell.reason == "not registered":
            name = f"{label} ({' or '.join(cell.cell.models)})"
            if name not in absent:
                absent.append(name)
        elif cell.reason:
            text = cell.reason + (f": {cell.detail}" if cell.detail else "")
            grouped.setdefault(text, []).append(where)
        for note in cell.notes:
            grouped.setdefault(note, []).append(where)
        n = len(cell.records)
        if cell.records and n < result.experiment.seeds:
            grouped.setdefault(f"{n} of {result.experiment.seeds} runs", []).append(where)
    lines = [f"{text}: {', '.join(wheres)}" for text, wheres in grouped.items()]
    lines += [f"{row.label}: {row.note}" for row in result.experiment.rows
              if getattr(row, "note", "")]
    if absent:
        lines.append("not registered in this suite (no model of that name): " + ", ".join(absent))
    return lines


# ---- rendering ------------------------------------------------------------------------------
def _md_table(header: list[str], body: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")
    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def render_markdown(result: TableResult) -> str:
    header, body = table_grid(result, "md")
    out = [f"### {result.experiment.title}", "", _md_table(header, body), ""]
    out += [f"{line}  " for line in legend_lines(result)]
    sig_header, sig_body = significance_grid(result)
    if sig_body:
        out += ["", "Significance (proposed vs best baseline):", "", _md_table(sig_header, sig_body)]
    if result.options.split:
        out += ["", render_split(result, "md")]
    notes = note_lines(result)
    if notes:
        out += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def render_plain(result: TableResult) -> str:
    from tabulate import tabulate
    header, body = table_grid(result, "plain")
    out = [result.experiment.title, tabulate(body, headers=header, tablefmt="simple",
                                             disable_numparse=True), ""]
    out += [line.replace("**bold**", "bold").replace("<u>underline</u>", "underline")
            for line in legend_lines(result)]
    out.append("(plain text shows no bold or underline; see the md, latex or csv formats)")
    sig_header, sig_body = significance_grid(result)
    if sig_body:
        out += ["", tabulate(sig_body, headers=sig_header, tablefmt="simple",
                             disable_numparse=True)]
    if result.options.split:
        out += ["", render_split(result, "plain")]
    out += [f"note: {n}" for n in note_lines(result)]
    return "\n".join(out) + "\n"


def render_latex(result: TableResult) -> str:
    header, body = table_grid(result, "latex")
    cols = header_columns(result)
    spec = "l" + "r" * len(cols)
    out = ["\\begin{table*}[t]", "\\centering", "\\small",
           f"\\caption{{{_tex(result.experiment.title)}. "
           + _tex(" ".join(legend_lines(result)).replace("**bold**", "bold")
                  .replace("<u>underline</u>", "underline")) + "}",
           f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    # first header line: datasets spanning their columns
    spans, top = [], ["Model"]
    for dataset in result.datasets:
        width = sum(1 for c in cols if c[0] == dataset)
        top.append(f"\\multicolumn{{{width}}}{{c}}{{{_tex(dataset_label(dataset))}}}")
        start = 2 + sum(s[1] - s[0] + 1 for s in spans)
        spans.append((start, start + width - 1))
    out.append(" & ".join(top) + " \\\\")
    out.append(" ".join(f"\\cmidrule(lr){{{a}-{b}}}" for a, b in spans))
    second = [""] + [_tex(m if k == "ours" else "paper" if k == "paper" else "Δ")
                     for _, m, k in cols]
    out.append(" & ".join(second) + " \\\\")
    out.append("\\midrule")
    for line in body:
        if line[0].startswith("Rel."):
            out.append("\\midrule")
        out.append(" & ".join(line) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "\\end{table*}"]
    sig_header, sig_body = significance_grid(result)
    if sig_body:
        out += ["", "\\begin{table}[t]", "\\centering", "\\small",
                f"\\caption{{{_tex(result.experiment.title)}: significance of the proposed row "
                "against the best baseline.}", "\\begin{tabular}{lllll" + "r" * 4 + "}",
                "\\toprule", " & ".join(_tex(h) for h in sig_header) + " \\\\", "\\midrule"]
        out += [" & ".join(_tex(c) for c in line) + " \\\\" for line in sig_body]
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    if result.options.split:
        out += ["", "% seen / novel split (see the md or plain format for its table):"]
        out += ["% " + _tex(line) for line in render_split(result, "plain").splitlines()]
    notes = note_lines(result)
    if notes:
        out += ["% " + _tex(n) for n in notes]
    return "\n".join(out) + "\n"


def render_csv(result: TableResult) -> str:
    """Tidy CSV: one line per (row, dataset, metric) with every number behind the table."""
    import csv
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["experiment", "row", "model", "group", "role", "dataset", "metric", "protocol",
                "rule", "mean", "std", "runs", "best", "best_baseline", "significant",
                "p_runs", "p_users", "rel_impr", "paper", "diff", "reason", "detail"])
    for row in result.experiment.rows:
        for dataset in result.datasets:
            cell = result.cells[(row.label, dataset)]
            for metric in result.metrics:
                s = result.stat(row.label, dataset, metric)
                comp = result.comparisons.get((row.group, dataset, metric))
                bold, under, mark = _row_marks(result, row.label, dataset, metric)
                paper = result.paper_value(row.paper_key, dataset, metric)
                is_prop = row.role == "proposed" and comp is not None and comp.seed is not None
                w.writerow([result.experiment.name, row.label, cell.resolved.model or "",
                            row.group, row.role, dataset, metric, result.options.protocol,
                            result.options.resolved_rule,
                            _num(s.mean if s else None), _num(s.std if s else None),
                            s.n if s else 0, int(bold), int(comp is not None
                                                          and comp.best_baseline == row.label),
                            {STAR: "better", DAGGER: "worse"}.get(mark, ""),
                            _num(comp.seed.p if is_prop else None),
                            _num(comp.user.p if is_prop else None),
                            _num(comp.rel_impr if is_prop else None), _num(paper),
                            _num(s.mean - paper if s and paper is not None else None),
                            cell.reason or "", cell.detail])
    if result.options.split:
        buf.write("\n" + render_split(result, "csv"))
    return buf.getvalue()


def _num(x: Any) -> str:
    return "" if x is None else f"{x:.6g}"


RENDERERS = {"md": render_markdown, "latex": render_latex, "csv": render_csv,
             "plain": render_plain}
