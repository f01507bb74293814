"""Stored records, found again for the cells of an experiment.

A cell's records are those of its model on its dataset under the chosen protocol whose resolved
parameters equal the cell's (``epochs`` aside, so that a short smoke run is still reported; pass
``epochs`` to insist on one length) and whose model code version is the current one. When several
configurations remain (other epochs, base seed, evaluation settings or data), the report uses the
one with the schedule's own length, then the most runs, then the newest, and says so in a note.
A cell without records says why: not registered, configuration error, dataset not found or
incomplete, failed, stale (only records of older code) or not run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from bench.data.periods import DEFAULT_AUX_PERIODS
from bench.experiments.loader import Cell
from bench.experiments.resolve import NOT_REGISTERED, ResolvedCell, resolve_cell
from bench.records import (FAILURE_SUFFIX, Damaged, canonical_json, iter_records,
                           per_user_path, per_user_problem, read_per_user)
from bench.runner import MAIN_SELECTION

RUN_LEVEL = ("epochs",)     # parameters a smoke run may shorten without changing the cell


@dataclass
class CellResult:
    """The records chosen for one cell (one per run), or the reason there are none."""

    cell: Cell
    resolved: ResolvedCell
    protocol: str
    rule: str
    records: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    reason: str | None = None
    detail: str = ""
    notes: list[str] = field(default_factory=list)
    _columns: dict = field(default_factory=dict, repr=False)

    @property
    def selection(self) -> str:
        return MAIN_SELECTION[self.protocol]

    @property
    def runs(self) -> list[int]:
        return [r["config"]["run"] for _, r in self.records]

    def values(self, metric: str) -> dict[int, float]:
        """Per run: the metric of the main selection under full ranking and the chosen rule,
        from the record, or from its ranks file for a metric the record does not hold (runs
        whose record has neither are left out and named by ``without``)."""
        from bench.report.ranked import record_metric
        out = {}
        for path, record in self.records:
            value = record_metric(path, record, metric, self.rule)
            if value is not None:
                out[record["config"]["run"]] = value
        return out

    def without(self, metric: str) -> list[Path]:
        """The records that can give ``metric`` neither themselves nor from stored ranks."""
        from bench.report.ranked import record_metric
        return [p for p, r in self.records if record_metric(p, r, metric, self.rule) is None]

    def per_user(self, metric: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per run: (user ids, per-user values) of the main selection, full ranking, chosen rule.
        The paper rule's column is stored only where it differs from the default rule's."""
        out = {}
        for path, record in self.records:
            if path not in self._columns:
                try:
                    self._columns[path] = read_per_user(path)
                except (OSError, ValueError):
                    self._columns[path] = None
            columns = self._columns[path]
            if columns is None:
                continue
            sel = record["main_selection"]
            for rule in (self.rule, "default"):
                key = f"{sel}/full/{rule}/{metric}"
                if key in columns:
                    out[record["config"]["run"]] = (columns["user"].astype(np.int64), columns[key])
                    break
        return out


class ResultIndex:
    """Every readable record (and failure note) of a results folder, indexed by dataset and model;
    the files that could not be used are kept in ``damaged`` so a report can name them."""

    def __init__(self, results_dir: Path, data_dir: str | None = None):
        self.results_dir = Path(results_dir)
        self.data_dir = data_dir
        self.records: dict[tuple[str, str], list[tuple[Path, dict]]] = {}
        self.failures: dict[tuple[str, str], list[dict]] = {}
        self.damaged: list[Damaged] = []
        for path, record in iter_records(self.results_dir, self.damaged):
            c = record["config"]
            self.records.setdefault((c["dataset"], c["model"]), []).append((path, record))
            problem = per_user_problem(path, record)
            if problem:
                self.damaged.append(Damaged(per_user_path(path), "per-user values", problem))
        if self.results_dir.is_dir():
            for path in sorted(self.results_dir.glob(f"*/*/*{FAILURE_SUFFIX}")):
                try:
                    note = json.loads(path.read_text())
                    c = note["config"]
                    self.failures.setdefault((c["dataset"], c["model"]), []).append(note)
                except (OSError, ValueError, KeyError, TypeError):
                    self.damaged.append(Damaged(path, "failure note", "cannot be read"))

    def warnings(self) -> list[str]:
        """One line per damaged file: which, what is wrong, what it means and how to repair it."""
        lines = []
        for d in self.damaged:
            if d.kind == "record":
                consequence = ("it is not counted; rerun the `bench run` command that wrote it "
                               "(it trains that trial again)")
            elif d.kind == "per-user values":
                record = d.path.name.replace(".users.csv.gz", ".json")
                consequence = (f"its record is counted, but not in per-user tests; delete "
                               f"{record} and this file, then rerun the trial")
            else:
                consequence = "a failed trial may be reported as not run; delete the file"
            lines.append(f"warning: {d.kind} {d.path} {d.problem}; {consequence}")
        return lines

    def __len__(self) -> int:
        return sum(len(v) for v in self.records.values())

    def find(self, cell: Cell, protocol: str = "paper", rule: str = "auto",
             epochs: int | None = None, resolved: ResolvedCell | None = None,
             aux_periods: str = DEFAULT_AUX_PERIODS) -> CellResult:
        """The cell's records under ``protocol``; on data with periods only those trained on
        ``aux_periods`` (records of data without periods always qualify)."""
        resolved = resolved or resolve_cell(cell)
        rule = ("paper" if protocol == "paper" else "default") if rule == "auto" else rule
        result = CellResult(cell, resolved, protocol, rule)
        if not resolved.ok:
            result.reason = resolved.problem
            result.detail = resolved.detail
            return result
        key = (cell.dataset, resolved.model)
        candidates = [(p, r) for p, r in self.records.get(key, [])
                      if r["config"]["protocol"] == protocol
                      and record_periods(r) in (None, aux_periods)]
        if not candidates:
            result.reason = self._why_absent(cell, resolved, protocol)
            return result
        matching = [(p, r) for p, r in candidates if _same_params(r["config"]["params"],
                                                                  resolved.params, epochs)]
        if not matching:
            result.reason = "not run"
            result.detail = (f"{len(candidates)} stored run(s) of {resolved.model} on "
                             f"{cell.dataset} use other parameters")
            return result
        current = [(p, r) for p, r in matching
                   if not is_stale(r["config"], resolved.code_version)]
        if not current:
            result.reason = "stale"
            result.detail = (f"{len(matching)} stored run(s) come from an older version of "
                             f"{resolved.model}'s code; rerun to refresh them")
            return result
        groups: dict[str, list[tuple[Path, dict]]] = {}
        for p, r in current:
            groups.setdefault(configuration_key(r["config"]), []).append((p, r))
        default_epochs = resolved.params.get("epochs")

        def rank(item):
            members = item[1]
            config = members[0][1]["config"]
            runs = {r["config"]["run"] for _, r in members}
            newest = max(r.get("finished_at", "") for _, r in members)
            return (config["params"].get("epochs") == default_epochs, len(runs), newest)
        ordered = sorted(groups.items(), key=rank, reverse=True)
        chosen = ordered[0][1]
        by_run: dict[int, tuple[Path, dict]] = {}
        for p, r in sorted(chosen, key=lambda pr: pr[1].get("finished_at", "")):
            by_run[r["config"]["run"]] = (p, r)
        result.records = [by_run[k] for k in sorted(by_run)]
        epochs_used = chosen[0][1]["config"]["params"].get("epochs")
        if epochs_used != default_epochs:
            result.notes.append(f"trained {epochs_used} epoch(s), not the schedule's "
                                f"{default_epochs}")
        if len(ordered) > 1:
            result.notes.append(f"{len(ordered) - 1} other stored configuration(s) of this cell "
                                "(other epochs, base seed or data) not used")
        return result

    def _why_absent(self, cell: Cell, resolved: ResolvedCell, protocol: str) -> str:
        notes = [n for n in self.failures.get((cell.dataset, resolved.model), [])
                 if n["config"].get("protocol") == protocol
                 and _same_params(n["config"].get("params", {}), resolved.params, None)]
        if notes:
            return "failed"
        status = dataset_status(cell.dataset, self.data_dir)
        return status if status else "not run"


def record_periods(record: dict) -> str | None:
    """The periods of the auxiliary behaviors a record trained on (None: its data has none). A
    record of a bvae dataset made before periods were an option trained on every period."""
    config = record["config"]
    if "aux_periods" in config:
        return config["aux_periods"]
    if "training_input" in record:
        return (record["training_input"] or {}).get("aux_periods")
    from bench.data import catalog
    spec = catalog.CATALOG.get(config.get("dataset"))
    return "all" if spec is not None and spec.layout == "bvae" else None


def dataset_status(name: str, data_dir: str | None) -> str | None:
    """None when the dataset's files are all present, else "dataset not found"/"dataset incomplete"."""
    from bench.data import catalog
    try:
        spec = catalog.get(name)
    except Exception:      # not a catalogued name
        return None
    if spec.layout == "demo":
        return None
    missing = catalog.missing_files(name, data_dir)
    if not missing:
        return None
    return "dataset not found" if len(missing) == len(spec.files) else "dataset incomplete"


def _same_params(stored: dict, wanted: dict | None, epochs: int | None) -> bool:
    if wanted is None:
        return False
    skip = set(RUN_LEVEL)
    a = {k: v for k, v in stored.items() if k not in skip}
    b = {k: v for k, v in wanted.items() if k not in skip}
    if canonical_json(_numbers(a)) != canonical_json(_numbers(b)):
        return False
    return epochs is None or stored.get("epochs") == epochs


def _numbers(value: Any) -> Any:
    """Ints and floats compared by value (1 == 1.0), through lists and tables."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    return value


def configuration_key(config: dict) -> str:
    """What the runs of one configuration share: the whole configuration but the run index
    (parameters, epochs, base seed, evaluation, data fingerprint, code version; numbers compared
    by value). Records with equal keys are runs of one experiment; others are never pooled."""
    return canonical_json(_numbers({k: v for k, v in config.items() if k != "run"}))


def current_code_version(model: str) -> str | None:
    """The code version the registered model has now; None when no such model is registered."""
    from bench.errors import ConfigError
    from bench.experiments.resolve import code_version
    from bench.models.registry import get_model
    try:
        return code_version(get_model(model))
    except ConfigError:
        return None


def is_stale(config: dict, current: str | None) -> bool:
    """Whether a record comes from another version of its model's code than ``current``."""
    return current is not None and config.get("model_version") != current


def collect(cells: Iterable[Cell], index: ResultIndex, protocol: str, rule: str = "auto",
            epochs: int | None = None,
            aux_periods: str = DEFAULT_AUX_PERIODS) -> list[CellResult]:
    return [index.find(c, protocol, rule, epochs, aux_periods=aux_periods) for c in cells]


__all__ = ["CellResult", "NOT_REGISTERED", "ResultIndex", "collect", "configuration_key",
           "current_code_version", "dataset_status", "is_stale", "record_periods"]
