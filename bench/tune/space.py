"""Search spaces: which hyper-parameters ``bench tune`` searches and over what values.

A space is a TOML file (``bench/tune/spaces/NAME.toml``, or a path to your own)::

    model = "copf"            # the model the space is written for (--models must name it)
    budget = 32               # configurations tried unless --budget says otherwise
    [params]
    cl_temperature = { values = [0.1, 0.2, 0.4] }          # explicit values (grid, random, optuna)
    lr = { range = [1e-4, 1e-2], scale = "log" }            # random and optuna only
    batch_size = { range = [256, 2048], integer = true }    # an integer range
    loss_weights = { simplex = 6 }    # every per-behavior vector on {0, 1/6, ..., 1} summing to 1
    layers = { values = [1, 2, 3], per_behavior = true, also = ["mtl_layers"] }

``per_behavior = true`` turns a searched value v into [v] * K (K behaviors of the dataset);
``also`` sets further parameters to the same value in the same configuration (tied parameters:
COPF's COGCN and DFME layer counts). A searched value is one point of the space; the parameters it
sets are its *overrides*. Every value is checked against the model's parameter declarations
(``Param``) before anything trains, and every error names the file, the field and the fix.
"""
from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.errors import ConfigError

SPACES_DIR = Path(__file__).resolve().parent / "spaces"
SCALES = ("linear", "log")
_TOP_KEYS = {"model", "budget", "description", "params"}
_ENTRY_KEYS = {"values", "range", "scale", "integer", "simplex", "per_behavior", "also"}
_ENTRY_HELP = ("give exactly one of values = [...], range = [low, high] or simplex = STEPS, "
               "e.g. { values = [0.1, 0.2] }")


def simplex_grid(n_behaviors: int, steps: int) -> list[list[float]]:
    """Every vector of ``n_behaviors`` weights on the grid {0, 1/steps, ..., 1} summing to 1, in
    lexicographic order of the numerators (the paper's loss coefficients: steps = 6)."""
    def compositions(total: int, parts: int):
        if parts == 1:
            yield (total,)
            return
        for first in range(total + 1):
            for rest in compositions(total - first, parts - 1):
                yield (first, *rest)
    return [[n / steps for n in numerators] for numerators in compositions(steps, n_behaviors)]


@dataclass(frozen=True)
class Dimension:
    """One searched value and the parameters it sets."""

    name: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    scale: str = "linear"
    integer: bool = False
    simplex: int | None = None
    per_behavior: bool = False
    also: tuple[str, ...] = ()

    @property
    def targets(self) -> tuple[str, ...]:
        """The parameters one searched value sets."""
        return (self.name, *self.also)

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def choices(self, n_behaviors: int) -> list[Any]:
        """The finite values of a ``values`` or ``simplex`` dimension (a range has none)."""
        if self.simplex is not None:
            return simplex_grid(n_behaviors, self.simplex)
        if self.is_range:
            raise ConfigError(f"parameter '{self.name}' is a range: it has no grid of values; "
                              "grid search needs values = [...] (use --search random or optuna)")
        return list(self.values)

    def overrides(self, value: Any, n_behaviors: int) -> dict[str, Any]:
        """The parameters this value sets (a fresh list per parameter)."""
        if self.per_behavior:
            return {t: [value] * n_behaviors for t in self.targets}
        return {t: (list(value) if isinstance(value, (list, tuple)) else value)
                for t in self.targets}

    def label(self, value: Any) -> str:
        """The value as a person reads it: weights in steps (``1/6,2/6,3/6``), lists joined."""
        if self.simplex is not None:
            return ",".join(_fraction(v, self.simplex) for v in value)
        if isinstance(value, (list, tuple)):
            return ",".join(_number(v) for v in value)
        return _number(value)

    def describe(self) -> str:
        """One line for a report header: what is searched and how."""
        if self.simplex is not None:
            what = f"per-behavior weights on {{0, 1/{self.simplex}, ..., 1}} summing to 1"
        elif self.is_range:
            kind = "integers" if self.integer else "numbers"
            what = f"{kind} in [{_number(self.low)}, {_number(self.high)}] ({self.scale} scale)"
        else:
            what = "{" + ", ".join(self.label(v) for v in self.values) + "}"
        extra = []
        if self.per_behavior:
            extra.append("one value for every behavior")
        if self.also:
            extra.append("also sets " + ", ".join(self.also))
        return f"{self.name} in {what}" + (f" ({'; '.join(extra)})" if extra else "")

    def entry(self) -> dict[str, Any]:
        """The dimension as a space file's entry (manifests store spaces this way)."""
        out: dict[str, Any] = {}
        if self.simplex is not None:
            out["simplex"] = self.simplex
        elif self.is_range:
            out.update(range=[self.low, self.high], scale=self.scale, integer=self.integer)
        else:
            out["values"] = list(self.values)
        if self.per_behavior:
            out["per_behavior"] = True
        if self.also:
            out["also"] = list(self.also)
        return out


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _fraction(value: float, steps: int) -> str:
    numerator = round(value * steps)
    if numerator == 0 or numerator == steps:
        return str(numerator // steps)
    return f"{numerator}/{steps}"


@dataclass(frozen=True)
class Space:
    """A parsed space file."""

    name: str
    model: str
    budget: int
    source: str
    sha256: str
    dimensions: tuple[Dimension, ...]
    description: str = ""
    entries: Mapping[str, Any] = field(default_factory=dict)   # [params] as written

    def dimension(self, name: str) -> Dimension:
        return next(d for d in self.dimensions if d.name == name)

    def grid_size(self, n_behaviors: int) -> int | None:
        """The number of grid points; None when a dimension is a range."""
        if any(d.is_range for d in self.dimensions):
            return None
        return math.prod(len(d.choices(n_behaviors)) for d in self.dimensions)

    def targets(self) -> list[str]:
        return [t for d in self.dimensions for t in d.targets]


# ---- loading and parsing ------------------------------------------------------------------------
def space_names() -> list[str]:
    """The spaces shipped with the suite."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.toml"))


def space_path(name_or_path: str | Path) -> Path:
    """A shipped space by name, or the given path to a TOML file."""
    text = str(name_or_path)
    path = Path(text)
    # a bare name is a shipped space even where a folder of that name exists (./copf)
    if path.suffix == ".toml" or path.is_file() or "/" in text:
        if not path.is_file():
            raise ConfigError(f"space file '{path}' does not exist; pass a shipped space "
                              f"({', '.join(space_names())}) or a path to a .toml file")
        return path
    shipped = SPACES_DIR / f"{text}.toml"
    if not shipped.is_file():
        raise ConfigError(f"unknown space '{text}'; shipped spaces: {', '.join(space_names())} "
                          "(or pass a path to your own .toml file, see bench/tune/spaces/)")
    return shipped


def load_space(name_or_path: str | Path) -> Space:
    """Read and parse a space file; errors name the file and the field."""
    path = space_path(name_or_path)
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return parse_space(data, _display(path), hashlib.sha256(raw).hexdigest(), path.stem)


def _display(path: Path) -> str:
    """A shipped space by its path in the repository (the same on every machine), else as given."""
    try:
        return str(path.resolve().relative_to(SPACES_DIR.parents[2]))
    except ValueError:
        return str(path)


def parse_space(data: Mapping[str, Any], source: str, sha256: str = "", name: str = "") -> Space:
    where = source
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(_TOP_KEYS))}")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{where}: 'model' must name the model the space is for, e.g. "
                          'model = "copf"')
    budget = data.get("budget", 32)
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ConfigError(f"{where}: 'budget' must be a positive integer (configurations to "
                          f"try), got {budget!r}")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{where}: [params] must list at least one searched parameter, e.g. "
                          "[params] cl_temperature = { values = [0.1, 0.2] }")
    dimensions = tuple(parse_dimension(key, entry, f"{where}: params.{key}")
                       for key, entry in params.items())
    seen: dict[str, str] = {}
    for dim in dimensions:
        for target in dim.targets:
            if target in seen:
                raise ConfigError(f"{where}: params.{dim.name}: parameter '{target}' is already "
                                  f"set by params.{seen[target]}; a parameter may be searched "
                                  "once (remove it from one of them)")
            seen[target] = dim.name
    return Space(name=name or Path(source).stem, model=model, budget=budget, source=source,
                 sha256=sha256, dimensions=dimensions,
                 description=str(data.get("description", "")).strip(), entries=dict(params))


def parse_dimension(name: str, entry: Any, where: str) -> Dimension:
    """One ``[params]`` entry."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a table, got {entry!r}; {_ENTRY_HELP}")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(_ENTRY_KEYS))}")
    kinds = [k for k in ("values", "range", "simplex") if k in entry]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: {'has ' + ' and '.join(kinds) if kinds else 'says nothing'}"
                          f"; {_ENTRY_HELP}")
    per_behavior = entry.get("per_behavior", False)
    if not isinstance(per_behavior, bool):
        raise ConfigError(f"{where}.per_behavior: expected true or false, got {per_behavior!r}")
    also = entry.get("also", [])
    if not isinstance(also, list) or not all(isinstance(a, str) and a for a in also):
        raise ConfigError(f"{where}.also: expected a list of parameter names, e.g. "
                          f'also = ["mtl_layers"], got {also!r}')
    common = dict(name=name, per_behavior=per_behavior, also=tuple(also))
    for key in ("scale", "integer"):
        if key in entry and kinds[0] != "range":
            raise ConfigError(f"{where}.{key}: only a range has a {key}; remove it or write "
                              "range = [low, high]")
    if kinds[0] == "values":
        values = entry["values"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.values: expected a non-empty list, e.g. values = [1, 2]")
        if any(v == w for i, v in enumerate(values) for w in values[:i]):
            raise ConfigError(f"{where}.values: {values!r} repeats a value; list each once")
        return Dimension(values=tuple(values), **common)
    if kinds[0] == "simplex":
        steps = entry["simplex"]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"{where}.simplex: expected the number of steps of the grid "
                              f"{{0, 1/N, ..., 1}} as a positive integer (the paper: 6), got "
                              f"{steps!r}")
        if per_behavior:
            raise ConfigError(f"{where}: a simplex is already one weight per behavior; remove "
                              "per_behavior")
        return Dimension(simplex=steps, **common)
    bounds = entry["range"]
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
            or not all(math.isfinite(b) for b in bounds) or not bounds[0] < bounds[1]):
        raise ConfigError(f"{where}.range: expected [low, high] with low < high, e.g. "
                          f"range = [1e-4, 1e-2], got {bounds!r}")
    scale = entry.get("scale", "linear")
    if scale not in SCALES:
        raise ConfigError(f"{where}.scale: expected one of {', '.join(SCALES)}, got {scale!r}")
    if scale == "log" and bounds[0] <= 0:
        raise ConfigError(f"{where}.range: a log scale needs low > 0, got {bounds!r}")
    integer = entry.get("integer", False)
    if not isinstance(integer, bool):
        raise ConfigError(f"{where}.integer: expected true or false, got {integer!r}")
    if integer and not all(float(b).is_integer() for b in bounds):
        raise ConfigError(f"{where}.range: an integer range needs whole bounds, got {bounds!r}")
    low, high = (int(b) for b in bounds) if integer else (float(b) for b in bounds)
    return Dimension(low=low, high=high, scale=scale, integer=integer, **common)


# ---- checking a space against a model -----------------------------------------------------------
def check_space(space: Space, spec, dataset: str, n_behaviors: int,
                fixed: Mapping[str, Any] | None = None) -> None:
    """Refuse a space that does not fit ``spec`` (a registered model) on ``dataset``: a searched
    parameter the model lacks, a value its ``Param`` declaration refuses, a parameter both
    searched and fixed with ``--set``. Every value is resolved as a trial would resolve it."""
    where = space.source
    fixed = dict(fixed or {})
    if space.model != spec.name:
        raise ConfigError(f"{where}: model: the space is written for '{space.model}', not "
                          f"'{spec.name}'; pass --models {space.model}, or copy the file and set "
                          f'model = "{spec.name}"')
    declared = spec.param_specs()
    for dim in space.dimensions:
        field_name = f"{where}: params.{dim.name}"
        for target in dim.targets:
            if target not in declared:
                raise ConfigError(f"{field_name}: model '{spec.name}' has no parameter "
                                  f"'{target}'; its parameters: {', '.join(sorted(declared))} "
                                  f"(see `bench list params {spec.name}`)")
            if target in fixed:
                raise ConfigError(f"{field_name}: '{target}' is searched, so --set {target}=... "
                                  "cannot fix it; drop the --set or remove it from the space")
            param = declared[target]
            if (dim.per_behavior or dim.simplex is not None) and param.length != "behaviors":
                key = "per_behavior" if dim.per_behavior else "simplex"
                raise ConfigError(f"{field_name}: {key} needs a parameter with one entry per "
                                  f"behavior, and '{target}' is a {param.kind.__name__}; remove "
                                  f"{key} (or search a per-behavior parameter)")
        for value in _values_to_check(dim, n_behaviors):
            try:
                spec.resolve(dataset, n_behaviors, {**fixed, **dim.overrides(value, n_behaviors)})
            except ConfigError as err:
                fix = _fix_for(declared[dim.name], dim, value, n_behaviors)
                raise ConfigError(f"{field_name}: value {value!r} is not valid for "
                                  f"{spec.name} on {dataset} ({n_behaviors} behaviors): "
                                  f"{str(err).removeprefix(f'{spec.name}: ')}; {fix}") from None


def _fix_for(param, dim: Dimension, value: Any, n_behaviors: int) -> str:
    """How to repair a value the model refuses."""
    if param.length == "behaviors" and not dim.per_behavior:
        if not isinstance(value, (list, tuple)):
            return "add per_behavior = true (one value for every behavior)"
        if len(value) != n_behaviors:
            return (f"list {n_behaviors} entries per value for this dataset (copy the space "
                    "file and pass it with --space FILE)")
    return "change or remove that value"


def _values_to_check(dim: Dimension, n_behaviors: int) -> Sequence[Any]:
    if dim.is_range:
        return [dim.low, dim.high]
    return dim.choices(n_behaviors)

