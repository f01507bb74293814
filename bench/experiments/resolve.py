"""From an experiment cell to a model and its parameters, shared by ``run`` and ``report``.

Both sides must agree exactly: ``run`` trains a cell with these overrides, ``report`` finds the cell's
records by comparing their resolved parameters with :attr:`ResolvedCell.params`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from bench.errors import ConfigError
from bench.experiments.loader import Cell, n_behaviors

NOT_REGISTERED = "not registered"
_VERSIONS: dict[tuple[str, str, str], str] = {}   # code cannot change within one process


@dataclass
class ResolvedCell:
    cell: Cell
    model: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] | None = None
    code_version: str | None = None
    problem: str | None = None       # NOT_REGISTERED, or a configuration error
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None


def choose_model(names: tuple[str, ...]):
    """The first candidate name the registry knows (registered, or a valid composition)."""
    from bench.models.registry import get_model
    errors = []
    for name in names:
        try:
            return name, get_model(name)
        except ConfigError as err:
            errors.append(f"{name}: {str(err).split(';')[0]}")
    return None, "; ".join(errors)


def code_version(spec) -> str:
    """The model's current code version, hashed once per process (it reads source files)."""
    key = (spec.name, spec.encoder, spec.decoder)
    if key not in _VERSIONS:
        _VERSIONS[key] = spec.code_version()
    return _VERSIONS[key]


def resolve_cell(cell: Cell, extra: Mapping[str, Any] | None = None) -> ResolvedCell:
    """Pick the cell's model and resolve its parameters.

    ``extra`` (from ``--set``/``--epochs``) applies where the model has the parameter. Overrides equal
    to what the model resolves without them are dropped, so equal trials share one hash."""
    name, spec = choose_model(cell.models)
    if name is None:
        return ResolvedCell(cell, problem=NOT_REGISTERED, detail=spec)
    out = ResolvedCell(cell, model=name)
    try:
        specs = spec.param_specs()
        lacking = sorted(k for k in cell.strict if k not in specs)
        if lacking:
            raise ConfigError(f"model '{name}' has no parameter {', '.join(lacking)}")
        wanted = {k: v for k, v in cell.overrides.items() if k in specs}
        wanted.update({k: v for k, v in (extra or {}).items() if k in specs})
        k = n_behaviors(cell.dataset)
        plain = spec.resolve(cell.dataset, k, {})
        full = spec.resolve(cell.dataset, k, wanted)
        out.overrides = {key: full[key] for key in wanted if full[key] != plain[key]}
        out.params = spec.resolve(cell.dataset, k, out.overrides)
        out.code_version = code_version(spec)
    except ConfigError as err:
        out.problem = "configuration error"
        out.detail = f"{cell.experiment}, {cell.label} on {cell.dataset}: {err}"
    return out
