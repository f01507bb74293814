"""The seen / novel split of a table's rows (``bench report ... --split seen``), and the line
every table carries about what its rows' training input was.

For each cell: the table's metrics on the test pairs the training input had already seen under an
auxiliary behavior and on the novel ones (definition: ``bench.report.ranked``), the mean over the
cell's runs, the share of test pairs that are seen, and how many users each subset holds. Records
made before ranks were stored are split from their per-user values where every evaluated user
holds one test item (Taobao, Beibei, Retailrocket): the seen flags then come from the dataset
itself, loaded from ``--data-dir`` and checked against the record's data fingerprint. Records that
can be split neither way are named, never silently dropped.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from bench.data.periods import describe as describe_periods
from bench.data.periods import sees_test_period
from bench.report.ranked import RANKS, SubsetScore, subset_score
from bench.report.results import CellResult, record_periods

if TYPE_CHECKING:
    from bench.report.tables import TableResult


@dataclass
class SplitStat:
    """One cell's split, averaged over the runs whose ranks are stored."""

    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # subset -> metric -> mean
    seen_share: float = float("nan")
    users: dict[str, int] = field(default_factory=dict)                 # subset -> users
    runs: int = 0
    without_ranks: list[Path] = field(default_factory=list)


def split_stat(cell: CellResult, rule: str, metrics: Sequence[str] = ("HR@10", "NDCG@10"),
               data_dir: str | None = None) -> SplitStat:
    out = SplitStat()
    sums: dict[str, list[dict[str, float]]] = {"seen": [], "novel": []}
    shares = []
    per_user = None
    for path, record in cell.records:
        table = RANKS.get(path)
        scores = None if table is None else {
            subset: subset_score(table, record["main_selection"], "full", list(metrics), rule,
                                 subset) for subset in sums}
        if scores is None or any(s is None for s in scores.values()):
            if per_user is None:
                per_user = {m: cell.per_user(m) for m in metrics}
            scores = scores_from_per_user(record, {m: v.get(record["config"]["run"])
                                                   for m, v in per_user.items()}, data_dir)
        if scores is None:
            out.without_ranks.append(path)
            continue
        for subset, score in scores.items():
            sums[subset].append(score.values)
            out.users[subset] = score.users
        total = scores["seen"].pairs + scores["novel"].pairs
        shares.append(scores["seen"].pairs / total if total else float("nan"))
        out.runs += 1
    for subset, runs in sums.items():
        if runs:
            out.metrics[subset] = {m: _mean_of_defined([r[m] for r in runs]) for m in metrics}
    if shares:
        out.seen_share = float(np.mean(shares))
    return out


def _mean_of_defined(values: Sequence[float]) -> float:
    """The mean of the values that are defined; NaN, without numpy's warning, when none is (a
    subset no evaluated user holds, such as Retailrocket's seen test items)."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


_SEEN_USERS: dict[tuple, tuple[np.ndarray, np.ndarray] | None] = {}


def seen_by_user(record: dict, data_dir: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(users, seen) for a catalog dataset whose evaluated users hold one test item each, from
    the data the record trained on (its fingerprint must match); None where that cannot be told."""
    from bench.data import catalog
    from bench.runner import dataset_fingerprint
    config = record["config"]
    periods = record_periods(record)
    key = (config["dataset"], periods, config.get("dataset_fingerprint"), data_dir)
    if key not in _SEEN_USERS:
        _SEEN_USERS[key] = None
        try:
            dataset = catalog.load_dataset(config["dataset"], data_dir, periods or "train")
        except Exception:       # absent, incomplete or not a catalog name: nothing to split on
            return None
        held = dataset.test
        if dataset_fingerprint(dataset) == key[2] and np.all(np.diff(held.indptr) <= 1):
            users = dataset.eval_users("test")
            items = held.indices[held.indptr[users]]
            seen = np.zeros(len(users), dtype=bool)
            for behavior in dataset.behaviors[:-1]:
                seen |= np.asarray(dataset.train[behavior][users, items]).ravel() > 0
            _SEEN_USERS[key] = (users, seen)
    return _SEEN_USERS[key]


def scores_from_per_user(record: dict, columns: dict[str, tuple[np.ndarray, np.ndarray] | None],
                         data_dir: str | None) -> dict | None:
    """The seen and novel subsets' scores from per-user values (one test item per user)."""
    if any(c is None for c in columns.values()):
        return None
    known = seen_by_user(record, data_dir)
    if known is None:
        return None
    users, seen = known
    out = {}
    for subset, wanted in (("seen", True), ("novel", False)):
        chosen = set(users[seen == wanted].tolist())
        values, count = {}, 0
        for metric, (ids, column) in columns.items():
            mask = np.isin(ids, list(chosen))
            values[metric] = float(column[mask].mean()) if mask.any() else float("nan")
            count = int(mask.sum())
        out[subset] = SubsetScore(values, count, count)
    return out


def split_grid(result: "TableResult") -> tuple[list[str], list[list[str]]]:
    metrics = list(result.metrics)
    header = ["Model"]
    for dataset in result.datasets:
        header.append(f"{dataset} seen share")
        for metric in metrics:
            header += [f"{dataset} {metric} seen", f"{dataset} {metric} novel"]
    body = []
    for row in result.experiment.rows:
        line = [row.label]
        for dataset in result.datasets:
            stat = result.split.get((row.label, dataset))
            if stat is None or not stat.runs:
                cell = result.cells[(row.label, dataset)]
                why = ("no ranks stored" if stat is not None else cell.reason or "no value")
                line += [f"({why})"] + ["—"] * (2 * len(metrics))
                continue
            line.append(f"{100 * stat.seen_share:.1f}%")
            for metric in metrics:
                for subset in ("seen", "novel"):
                    value = stat.metrics.get(subset, {}).get(metric)
                    line.append("—" if value is None or np.isnan(value) else f"{value:.4f}")
        body.append(line)
    return header, body


def split_notes(result: "TableResult") -> list[str]:
    lines = []
    for dataset in result.datasets:
        users = {}
        for (label, d), stat in result.split.items():
            if d == dataset and stat.runs:
                users = stat.users
                break
        if users:
            lines.append(f"{dataset}: {users.get('seen', 0):,} users hold a seen test item, "
                         f"{users.get('novel', 0):,} a novel one (a user holding both counts in "
                         "both)")
    missing = sorted({str(p) for stat in result.split.values() for p in stat.without_ranks})
    if missing:
        lines.append(f"{len(missing)} record(s) have no stored ranks (made before ranks were "
                     "stored) and are left out of the split; rerun them to include them: "
                     + ", ".join(missing))
    return lines


SPLIT_TEXT = ("Seen / novel test items: a test item is seen when the row's training input holds "
              "it under an auxiliary behavior of that user, else novel; each subset is scored on "
              "the full ranking, a user counting in a subset when it holds a test item of it; "
              "mean over the runs; seen share: the share of test pairs that are seen.")


def render_split(result: "TableResult", style: str) -> str:
    header, body = split_grid(result)
    notes = split_notes(result)
    if style == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["split"] + header)
        for line in body:
            writer.writerow(["seen/novel"] + line)
        return buf.getvalue()
    if style == "md":
        from bench.report.tables import _md_table
        out = ["Seen / novel split:", "", _md_table(header, body), "", SPLIT_TEXT + "  "]
        return "\n".join(out + [f"{n}  " for n in notes])
    from tabulate import tabulate
    out = ["Seen / novel split", tabulate(body, headers=header, tablefmt="simple",
                                          disable_numparse=True), SPLIT_TEXT]
    return "\n".join(out + notes)


def training_input_lines(cells: dict[tuple[str, str], CellResult],
                         datasets: Sequence[str]) -> list[str]:
    """Per dataset, what the training input of the shown rows was; a loud line when any row saw
    the test period of an auxiliary behavior."""
    lines, saw_test = [], []
    parts = []
    for dataset in datasets:
        periods = {record_periods(r) for (_, d), cell in cells.items() if d == dataset
                   for _, r in cell.records}
        if not periods:
            continue
        parts.append(f"{dataset}: " + "; ".join(describe_periods(p) for p in sorted(
            periods, key=str)))
        saw_test += [f"{label} on {d}" for (label, d), cell in cells.items() if d == dataset
                     and any(sees_test_period(record_periods(r)) for _, r in cell.records)]
    if parts:
        lines.append("Training input: " + " | ".join(parts) + ".")
    if saw_test:
        lines.append("CAUTION: these rows trained on the auxiliary behaviors' test period "
                     "(--aux-periods all), so they saw the test period coming: "
                     + ", ".join(saw_test) + ".")
    return lines
