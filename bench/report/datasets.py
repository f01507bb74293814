"""Table 1 (dataset statistics) and Figure 6 (behavior patterns) from the dataset layer.

Each dataset of the experiment is read from the data directory. A complete one gives its row; an
absent one says so; an incomplete one (some behavior files missing) says which, and shows the
counts of the files that are there, so a partial copy is described, never passed off as complete.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from bench.data import catalog
from bench.data.dataset import MultiBehaviorDataset
from bench.data.stats import DatasetStats, behavior_patterns, compute_stats
from bench.errors import BenchError
from bench.report.paper import paper_dataset_stats
from bench.report.tables import _md_table, _tex, dataset_label


@dataclass
class DatasetRow:
    name: str
    status: str                    # complete | not found | incomplete | unreadable
    stats: DatasetStats | None = None
    message: str = ""
    partial: dict[str, int] = field(default_factory=dict)   # counts of present behaviors
    shape: tuple[int, int] | None = None
    behaviors: tuple[str, ...] = ()


def dataset_row(name: str, data_dir: str | None) -> DatasetRow:
    try:
        spec = catalog.get(name)
    except BenchError as err:
        return DatasetRow(name, "unknown", message=str(err))
    row = DatasetRow(name, "complete", behaviors=spec.behaviors)
    if spec.layout != "demo":
        folder = catalog.folder_of(name, data_dir)
        missing = catalog.missing_files(name, data_dir)
        if not folder.is_dir():
            row.status = "not found"
            row.message = (f"no folder {folder}; get it with `bench data fetch {name}` or point "
                           "--data-dir at the folder that holds it")
            return row
        if missing:
            row.status = "incomplete"
            what = [f"behavior '{f.behavior}' ({f.name})" if f.behavior and f.split == "train"
                    else f.name for f in missing]
            row.message = (f"missing {', '.join(what)} in {folder}; statistics would be wrong "
                           f"without it (`bench data fetch {name}`)")
            _partial_counts(row, spec, folder, missing)
            return row
    try:
        row.stats = compute_stats(catalog.load_dataset(name, data_dir))
    except BenchError as err:
        row.status = "unreadable"
        row.message = " ".join(str(err).split())
    return row


def folder_row(entry: str, options) -> tuple[DatasetRow, MultiBehaviorDataset | None]:
    """The row of a folder of your own data (read with ``options``, a
    :class:`bench.data.select.FolderOptions`), and the dataset when it could be read."""
    from bench.data.select import folder_name, load_folder
    try:
        dataset = load_folder(entry, options)
    except BenchError as err:
        return DatasetRow(folder_name(entry), "unreadable", message=" ".join(str(err).split()),
                          behaviors=options.behaviors), None
    row = DatasetRow(dataset.name, "complete", stats=compute_stats(dataset),
                     behaviors=dataset.behaviors)
    return row, dataset


def _partial_counts(row: DatasetRow, spec, folder, missing) -> None:
    """Counts of the behavior files that are present (pkef layout only)."""
    if spec.layout != "pkef":
        return
    from bench.data.layouts.pkef import read_matrix
    absent = {f.name for f in missing}
    for file in spec.files:
        if file.split != "train" or file.name in absent:
            continue
        try:
            matrix = read_matrix(folder / file.name)
        except BenchError:
            continue
        row.partial[file.behavior] = int(matrix.nnz)
        row.shape = (int(matrix.shape[0]), int(matrix.shape[1]))


def _int(x: Any) -> str:
    return f"{int(x):,}"


def table1_grid(rows: list[DatasetRow]) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, body (ours, paper and Δ lines per dataset) and notes."""
    paper = paper_dataset_stats()
    header = ["Dataset", "source", "#User", "#Item", "#Interaction", "#Target Interaction",
              "#Interactive Behavior Type", "status"]
    body, notes = [], []
    for row in rows:
        label = dataset_label(row.name)
        p = paper.get(row.name)
        if row.stats is not None:
            s = row.stats
            body.append([label, "files", _int(s.users), _int(s.items), _int(s.interactions),
                         _int(s.target_interactions), " → ".join(s.behaviors), row.status])
        elif row.partial:
            users, items = row.shape
            present = "; ".join(f"{b} {_int(c)}" for b, c in row.partial.items())
            target = row.partial.get(row.behaviors[-1]) if row.behaviors else None
            body.append([label, "files", _int(users), _int(items), f"incomplete ({present})",
                         _int(target) if target is not None else "—",
                         " → ".join(row.behaviors), row.status])
            notes.append(f"{label}: {row.message}")
        else:
            body.append([label, "files", "—", "—", "—", "—", " → ".join(row.behaviors),
                         row.status])
            notes.append(f"{label}: {row.message}")
        if p is None:
            continue
        body.append(["", "paper", _int(p["users"]), _int(p["items"]),
                     f"{p['interactions'] / 1e6:.1f} × 10^6", _int(p["target_interactions"]),
                     ", ".join(p["behaviors"]), ""])
        if row.stats is not None:
            s = row.stats
            rounded = round(s.interactions / 1e5) * 1e5
            inter = ("0 (after rounding)" if rounded == p["interactions"]
                     else f"{s.interactions - p['interactions']:+,.0f} (paper rounds)")
            body.append(["", "Δ", f"{s.users - p['users']:+,}", f"{s.items - p['items']:+,}",
                         inter, f"{s.target_interactions - p['target_interactions']:+,}",
                         "", ""])
        elif row.partial and row.shape:
            users, items = row.shape
            target = row.partial.get(row.behaviors[-1])
            body.append(["", "Δ", f"{users - p['users']:+,}", f"{items - p['items']:+,}", "—",
                         f"{target - p['target_interactions']:+,}" if target is not None else "—",
                         "", ""])
    return header, body, notes


def render_table1(rows: list[DatasetRow], fmt: str, title: str) -> str:
    header, body, notes = table1_grid(rows)
    legend = ("Counts are training interactions read from the files (#Interaction sums all "
              "behaviors; the test items are not counted). The paper rounds #Interaction.")
    if fmt == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["dataset", "status", "users", "items", "interactions", "target_interactions",
                    "behaviors", "paper_users", "paper_items", "paper_interactions",
                    "paper_target_interactions", "message"])
        paper = paper_dataset_stats()
        for row in rows:
            s, p = row.stats, paper.get(row.name, {})
            w.writerow([row.name, row.status, s.users if s else "", s.items if s else "",
                        s.interactions if s else "", s.target_interactions if s else "",
                        " ".join(row.behaviors), p.get("users", ""), p.get("items", ""),
                        p.get("interactions", ""), p.get("target_interactions", ""), row.message])
        return buf.getvalue()
    if fmt == "latex":
        lines = ["\\begin{table}[t]", "\\centering", "\\small",
                 f"\\caption{{{_tex(title)}. {_tex(legend)}}}",
                 "\\begin{tabular}{ll" + "r" * 4 + "ll}", "\\toprule",
                 " & ".join(_tex(h) for h in header) + " \\\\", "\\midrule"]
        lines += [" & ".join(_tex(c) for c in r) + " \\\\" for r in body]
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        lines += [f"% {_tex(n)}" for n in notes]
        return "\n".join(lines) + "\n"
    if fmt == "plain":
        from tabulate import tabulate
        out = [title, tabulate(body, headers=header, disable_numparse=True), legend]
        return "\n".join(out + [f"note: {n}" for n in notes]) + "\n"
    out = [f"### {title}", "", _md_table(header, body), "", legend]
    if notes:
        out += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


# ---- Figure 6 -----------------------------------------------------------------------------------
def pattern_tables(rows: list[DatasetRow], data_dir: str | None, units: list[str],
                   loaded: Mapping[str, MultiBehaviorDataset] | None = None):
    """Per complete dataset and unit: (behaviors, patterns). Others are listed with the reason.
    ``loaded``: datasets already read (folders of your own data), by name."""
    out, skipped = {}, []
    loaded = loaded or {}
    for row in rows:
        if row.stats is None:
            skipped.append(f"{dataset_label(row.name)}: {row.status}"
                           + (f" ({row.message})" if row.message else ""))
            continue
        dataset = loaded.get(row.name) or catalog.load_dataset(row.name, data_dir)
        for unit in units:
            out[(row.name, unit)] = (dataset.behaviors, behavior_patterns(dataset, unit))
    return out, skipped


def render_patterns(tables, skipped: list[str], fmt: str, title: str) -> str:
    lines = [] if fmt != "md" else [f"### {title}", ""]
    if fmt == "csv":
        lines.append("dataset,unit,pattern,behaviors,count,share")
        for (name, unit), (behaviors, patterns) in tables.items():
            for p in patterns:
                lines.append(f"{name},{unit},{p.pattern.replace(' ', '')},{'|'.join(behaviors)},"
                             f"{p.count},{p.share:.6g}")
        return "\n".join(lines) + "\n"
    if fmt == "plain" or fmt == "latex":
        lines.append(title)
    for (name, unit), (behaviors, patterns) in tables.items():
        what = "users" if unit == "user" else "user-item pairs"
        header = ["pattern (" + " ".join(behaviors) + ")", f"#{what}", "share"]
        body = [[p.pattern.replace(" ", ""), _int(p.count), f"{100 * p.share:.2f}%"]
                for p in sorted(patterns, key=lambda p: p.pattern)]
        if fmt == "md":
            lines += [f"{dataset_label(name)}, share of {what} (1 = the behavior is present):", "",
                      _md_table(header, body), ""]
        else:
            from tabulate import tabulate
            lines += [f"{dataset_label(name)}, share of {what}:",
                      tabulate(body, headers=header, disable_numparse=True,
                               tablefmt="latex_booktabs" if fmt == "latex" else "simple"), ""]
    if skipped:
        lines += ["Not shown:"] + [f"- {s}" for s in skipped]
    lines.append("The paper shows Figure 6 only as bars: no numbers to compare with.")
    return "\n".join(lines) + "\n"
