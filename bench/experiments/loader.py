"""Experiments as data: one TOML file per paper table or figure, readable by a person.

An experiment names what to train (rows of a table, or one model swept over a parameter), on which
datasets, how many runs, and the hyper-parameters per dataset. ``bench run --experiment NAME``
trains exactly its trials (stored ones are skipped by configuration hash) and ``bench report NAME``
rebuilds the table or figure from the stored records. ``NAME`` is a file of this folder
(``table2``) or a path to your own file (``--experiment my/exp.toml``).

File format (``kind`` and ``datasets`` are required, a table needs ``[[rows]]``, a sweep ``[sweep]``
and ``[[series]]``; the rest is optional; the files beside this one are complete examples)::

    title = "Table 2: overall performance comparison"
    kind = "table"            # table | sweep | dataset-stats | behavior-patterns
    paper = "table2"          # section of bench/report/paper_numbers.toml to compare with
    datasets = ["beibei", "taobao", "tmall"]
    seeds = 5                 # runs per cell
    protocol = "paper"        # paper | honest: the default of `run` and `report` (--protocol wins)
    metrics = ["HR@10", "NDCG@10"]
    underline_best_baseline = true            # tables: underline the best baseline per column
    rel_impr = false                          # tables: add the paper's "Rel. Impr." row
    params = { epochs = 200 }                 # for every model that has the parameter
    [dataset_params.taobao]                   # ... on one dataset only
    cl_temperature = 0.2

    [[rows]]                  # kind = "table": one row per model
    label = "COPF"            # the paper's label (keys the paper's numbers)
    model = "copf"            # a registered name, or a list of candidates: first registered wins
    role = "proposed"         # proposed | baseline (default) | floor (a non-learned reference:
                              # shown and marked, never the "best baseline" of a comparison)
    group = "all"             # rows compared with each other (Table 6 compares pairs)
    in_paper = true           # false: a learned row the paper's table does not have (no number)
    paper_label = "COPF"      # the paper's label where ours differs (default: label)
    note = "..."              # printed under the table's notes
    params = { }              # this row only (the model must have the parameter)
    [rows.dataset_params.beibei]
    layers = [1, 1, 1]

    # kind = "sweep": one model, one or more series over the same x values
    model = "copf"
    x_label = "temperature"   # the figure's x axis; x_scale = "log" for a log axis
    [sweep]
    values = [0.1, 0.2, 0.4]
    [[series]]
    label = "COPF"
    param = "cl_temperature"  # or a list of parameters set together
    per_behavior = false      # true: value v becomes [v] * K (one entry per behavior)

    # kind = "dataset-stats" (Table 1) or "behavior-patterns" (Figure 6) train nothing;
    # behavior-patterns takes unit = "user" | "pair" | "both".

Parameters resolve as: the model's defaults < experiment ``params`` < experiment
``dataset_params`` < row/series ``params`` < row/series ``dataset_params`` < the swept value <
``--set`` / ``--epochs`` on the command line. An override equal to what the model resolves anyway is
dropped, so one trial shared by two experiments (Table 2's COPF is Figure 4's tau = 0.1 on Beibei)
is trained and stored once.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.errors import ConfigError

HERE = Path(__file__).resolve().parent
KINDS = ("table", "sweep", "dataset-stats", "behavior-patterns")
TRAINING_KINDS = ("table", "sweep")
ROLES = ("proposed", "baseline", "floor")
DEFAULT_METRICS = ("HR@10", "NDCG@10")


@dataclass(frozen=True)
class Row:
    """A table row: a label (the paper's), candidate model names and its own parameters."""

    label: str
    models: tuple[str, ...]
    role: str = "baseline"
    group: str = "all"
    params: Mapping[str, Any] = field(default_factory=dict)
    dataset_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    note: str = ""
    in_paper: bool = True      # False: a row the paper's table does not have (floors never are)
    paper_label: str = ""      # the paper's label for its numbers, where ours says more

    @property
    def paper_key(self) -> str:
        """The label the paper's numbers are stored under (``paper_numbers.toml``)."""
        return self.paper_label or self.label


@dataclass(frozen=True)
class Series:
    """One curve of a sweep: which parameter(s) the swept value sets, and on which model."""

    label: str
    params: tuple[str, ...]
    models: tuple[str, ...]
    per_behavior: bool = False
    fixed: Mapping[str, Any] = field(default_factory=dict)
    dataset_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One (dataset, row or sweep point) of an experiment: what to train ``seeds`` times.

    ``overrides`` are the experiment's parameters for this cell, before filtering by the chosen
    model's parameters and before the command line's ``--set``/``--epochs``."""

    experiment: str
    dataset: str
    label: str                 # row label, or series label for sweeps
    models: tuple[str, ...]
    overrides: Mapping[str, Any]
    role: str = "baseline"
    group: str = "all"
    x: Any = None              # the swept value (sweeps only)
    strict: frozenset = frozenset()   # keys the chosen model must have (row/series parameters)

    @property
    def key(self) -> tuple:
        return (self.dataset, self.label, self.x)


@dataclass(frozen=True)
class Experiment:
    name: str
    kind: str
    title: str
    source: Path
    datasets: tuple[str, ...]
    seeds: int = 5
    metrics: tuple[str, ...] = DEFAULT_METRICS
    paper: str | None = None
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    dataset_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rows: tuple[Row, ...] = ()
    series: tuple[Series, ...] = ()
    values: tuple[Any, ...] = ()
    x_label: str = ""
    x_scale: str = "linear"
    underline_best_baseline: bool = True
    rel_impr: bool = False
    unit: str = "user"         # behavior-patterns: count users, user-item pairs, or both
    protocol: str = "paper"    # what `run` trains and `report` shows unless --protocol says

    @property
    def trains(self) -> bool:
        return self.kind in TRAINING_KINDS

    def cells(self, datasets: Sequence[str] | None = None) -> list[Cell]:
        """Every (dataset, row) or (dataset, series, value) of the experiment, in table order."""
        out: list[Cell] = []
        for dataset in (list(datasets) if datasets else list(self.datasets)):
            base = {**self.params, **self.dataset_params.get(dataset, {})}
            if self.kind == "table":
                for row in self.rows:
                    own = {**row.params, **row.dataset_params.get(dataset, {})}
                    out.append(Cell(self.name, dataset, row.label, row.models, {**base, **own},
                                    row.role, row.group, strict=frozenset(own)))
            elif self.kind == "sweep":
                for series in self.series:
                    own = {**series.fixed, **series.dataset_params.get(dataset, {})}
                    for value in self.values:
                        swept = {p: _sweep_value(value, series.per_behavior, dataset)
                                 for p in series.params}
                        out.append(Cell(self.name, dataset, series.label, series.models,
                                        {**base, **own, **swept}, x=value,
                                        strict=frozenset(own) | frozenset(swept)))
        return out

    def model_names(self) -> list[str]:
        """Every candidate model name the experiment mentions, in order, without repeats."""
        names: list[str] = []
        for models in [r.models for r in self.rows] + [s.models for s in self.series]:
            names.extend(m for m in models if m not in names)
        return names


def _sweep_value(value: Any, per_behavior: bool, dataset: str) -> Any:
    if not per_behavior:
        return value
    return [value] * n_behaviors(dataset)


def n_behaviors(dataset: str) -> int:
    """The number of behaviors of a catalogued dataset, or of a folder named on this command line
    (no file is read)."""
    from bench.data.select import behaviors_of
    try:
        return len(behaviors_of(dataset))
    except Exception as err:   # DataError: an unknown name lists the known ones
        raise ConfigError(str(err)) from None


# ---- loading ------------------------------------------------------------------------------------
def experiment_names() -> list[str]:
    """The experiments shipped with the suite (the TOML files of this folder)."""
    return sorted(p.stem for p in HERE.glob("*.toml"))


def experiment_path(name_or_path: str | Path) -> Path:
    """A shipped experiment's file by name, or the given path to a user's TOML file."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"experiment file '{path}' does not exist")
        return path
    shipped = HERE / f"{text}.toml"
    if not shipped.is_file():
        raise ConfigError(f"unknown experiment '{text}'; shipped experiments: "
                          f"{', '.join(experiment_names())} (or give a path to a .toml file)")
    return shipped


def load_experiment(name_or_path: str | Path) -> Experiment:
    """Read and validate an experiment file; errors name the file and the offending key."""
    path = experiment_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return parse_experiment(data, path)


_TOP_KEYS = {"name", "title", "kind", "paper", "description", "datasets", "seeds", "metrics",
             "params", "dataset_params", "rows", "model", "sweep", "series", "x_label", "x_scale",
             "underline_best_baseline", "rel_impr", "unit", "protocol"}


def parse_experiment(data: Mapping[str, Any], path: Path) -> Experiment:
    where = f"{path}"
    _no_unknown(data, _TOP_KEYS, where)
    kind = data.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    datasets = tuple(_strings(data.get("datasets", []), f"{where}: datasets"))
    if not datasets:
        raise ConfigError(f"{where}: 'datasets' must list at least one dataset")
    seeds = data.get("seeds", 5)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ConfigError(f"{where}: 'seeds' must be a positive integer, got {seeds!r}")
    metrics = tuple(_strings(data.get("metrics", list(DEFAULT_METRICS)), f"{where}: metrics"))
    protocol = data.get("protocol", "paper")
    if protocol not in ("paper", "honest"):
        raise ConfigError(f"{where}: 'protocol' must be paper or honest, got {protocol!r}")
    params = _table(data.get("params", {}), f"{where}: params")
    dataset_params = _per_dataset(data.get("dataset_params", {}), f"{where}: dataset_params")
    common = dict(name=str(data.get("name", path.stem)), kind=kind, source=path,
                  title=str(data.get("title", path.stem)), datasets=datasets, seeds=seeds,
                  metrics=metrics, paper=data.get("paper"),
                  description=str(data.get("description", "")).strip(), params=params,
                  dataset_params=dataset_params,
                  underline_best_baseline=bool(data.get("underline_best_baseline", True)),
                  rel_impr=bool(data.get("rel_impr", False)), x_label=str(data.get("x_label", "")),
                  x_scale=str(data.get("x_scale", "linear")), unit=str(data.get("unit", "user")),
                  protocol=protocol)
    if kind == "table":
        raw_rows = data.get("rows")
        if not isinstance(raw_rows, list) or not raw_rows:
            raise ConfigError(f"{where}: a table needs [[rows]] entries")
        rows = tuple(_row(r, f"{where}: rows[{i}]") for i, r in enumerate(raw_rows))
        labels = [r.label for r in rows]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{where}: row labels must be unique, got {labels}")
        return Experiment(**common, rows=rows)
    if kind == "sweep":
        sweep = _table(data.get("sweep"), f"{where}: sweep")
        _no_unknown(sweep, {"values"}, f"{where}: sweep")
        values = sweep.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: [sweep] needs a non-empty 'values' list")
        model = data.get("model")
        raw_series = data.get("series")
        if not isinstance(raw_series, list) or not raw_series:
            raise ConfigError(f"{where}: a sweep needs [[series]] entries (label, param)")
        series = tuple(_series(s, model, f"{where}: series[{i}]") for i, s in enumerate(raw_series))
        if common["x_scale"] not in ("linear", "log"):
            raise ConfigError(f"{where}: x_scale must be linear or log")
        return Experiment(**common, series=series, values=tuple(values))
    if common["unit"] not in ("user", "pair", "both"):
        raise ConfigError(f"{where}: unit must be user, pair or both")
    return Experiment(**common)


def _row(data: Any, where: str) -> Row:
    data = _table(data, where)
    _no_unknown(data, {"label", "model", "role", "group", "params", "dataset_params", "note",
                       "in_paper", "paper_label"}, where)
    in_paper = data.get("in_paper", True)
    if not isinstance(in_paper, bool):
        raise ConfigError(f"{where}: in_paper must be true or false, got {in_paper!r}")
    if "label" not in data or "model" not in data:
        raise ConfigError(f"{where}: a row needs 'label' and 'model'")
    role = data.get("role", "baseline")
    if role not in ROLES:
        raise ConfigError(f"{where}: role must be one of {ROLES}, got {role!r}")
    return Row(label=str(data["label"]), models=_models(data["model"], where), role=role,
               group=str(data.get("group", "all")),
               params=_table(data.get("params", {}), f"{where}: params"),
               dataset_params=_per_dataset(data.get("dataset_params", {}),
                                           f"{where}: dataset_params"),
               note=str(data.get("note", "")), in_paper=in_paper and role != "floor",
               paper_label=str(data.get("paper_label", "")))


def _series(data: Any, model: Any, where: str) -> Series:
    data = _table(data, where)
    _no_unknown(data, {"label", "param", "model", "per_behavior", "params", "dataset_params"}, where)
    if "param" not in data:
        raise ConfigError(f"{where}: a series needs 'param' (the parameter the value sets)")
    params = data["param"]
    params = tuple(_strings(params if isinstance(params, list) else [params], f"{where}: param"))
    chosen = data.get("model", model)
    if chosen is None:
        raise ConfigError(f"{where}: no model: give 'model' at the top or in the series")
    return Series(label=str(data.get("label", "+".join(params))), params=params,
                  models=_models(chosen, where), per_behavior=bool(data.get("per_behavior", False)),
                  fixed=_table(data.get("params", {}), f"{where}: params"),
                  dataset_params=_per_dataset(data.get("dataset_params", {}),
                                              f"{where}: dataset_params"))


def _models(value: Any, where: str) -> tuple[str, ...]:
    names = _strings(value if isinstance(value, list) else [value], f"{where}: model")
    if not names:
        raise ConfigError(f"{where}: 'model' is empty")
    return tuple(names)


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    return list(value)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table (key = value pairs), got {value!r}")
    return dict(value)


def _per_dataset(value: Any, where: str) -> dict[str, dict[str, Any]]:
    value = _table(value, where)
    return {name: _table(v, f"{where}.{name}") for name, v in value.items()}


def _no_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(allowed))}")
