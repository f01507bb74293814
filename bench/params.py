"""Hyper-parameter declarations: name, default, type, allowed values, and parsing from the CLI."""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from bench.errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One hyper-parameter. ``low``/``high`` bound numbers (``low_open`` excludes ``low``);
    ``choices`` lists the allowed values; ``kind`` is int, float, bool, str or list."""

    name: str
    default: Any
    help: str
    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple | None = None
    length: str | None = None   # for lists: "behaviors" means one entry per behavior
    # A number (or list of numbers) the model reads as a tensor (``Component.hp``), so members of
    # one batch may hold different values (zeros included: bench.seed_groups.template_params).
    batchable: bool = False
    # For a batchable parameter: what of its value is structural (members of one batch must agree
    # on it); None = which entries are zero.
    structure: Callable[[Any], Any] | None = None

    def describe_range(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        if self.low is None and self.high is None:
            return "-"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open else '['}{lo}, {hi}]"

    def parse(self, text: str) -> Any:
        """A value given on the command line as text."""
        try:
            if self.kind is bool:
                low = text.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            if self.kind is list:
                value = ast.literal_eval(text)
                return list(value) if isinstance(value, (list, tuple)) else [value]
            if self.kind is str:
                return text
            if self.kind is int:
                return int(text)
            return float(text)
        except (ValueError, SyntaxError):
            raise ConfigError(f"parameter '{self.name}' expects {self.kind.__name__}, got '{text}'")

    def validate(self, value: Any, where: str = "") -> Any:
        label = f"{where}parameter '{self.name}'"
        if self.kind is list:
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{label} expects a list such as [1, 1, 1], got {value!r}")
            values = list(value)
            for item in values:
                self._check_number(item, label)
            return values
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{label} expects true or false, got {value!r}")
            return value
        if self.kind is str:
            if not isinstance(value, str):
                raise ConfigError(f"{label} expects text, got {value!r}")
        elif self.kind is int:
            if isinstance(value, bool) or not isinstance(value, (int,)) and not (
                    isinstance(value, float) and value.is_integer()):
                raise ConfigError(f"{label} expects an integer, got {value!r}")
            value = int(value)
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{label} expects a number, got {value!r}")
            value = float(value)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{label} must be one of {list(self.choices)}, got {value!r}")
        if self.kind in (int, float):
            self._check_number(value, label)
        return value

    def _check_number(self, value: Any, label: str) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ConfigError(f"{label} expects finite numbers, got {value!r}")
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise ConfigError(f"{label} must lie in {self.describe_range()}, got {value!r}")
        if self.high is not None and value > self.high:
            raise ConfigError(f"{label} must lie in {self.describe_range()}, got {value!r}")


def merge_params(groups: Iterable[Sequence[Param]]) -> dict[str, Param]:
    """Merge declarations; the same name twice must mean the same parameter (a later default wins)."""
    merged: dict[str, Param] = {}
    for group in groups:
        for p in group:
            old = merged.get(p.name)
            if old is not None and (old.kind, old.help) != (p.kind, p.help):
                raise ConfigError(f"parameter '{p.name}' is declared twice with different meanings")
            merged[p.name] = p
    return merged


def resolve(specs: Mapping[str, Param], layers: Sequence[Mapping[str, Any]], where: str = "",
            n_behaviors: int | None = None) -> dict[str, Any]:
    """Defaults, then each override layer in order; every key checked and every value validated."""
    values = {name: p.default for name, p in specs.items()}
    for layer in layers:
        for key, value in layer.items():
            if key not in specs:
                raise ConfigError(f"{where}unknown parameter '{key}'; valid parameters: "
                                  f"{', '.join(sorted(specs))}")
            values[key] = value
    out = {}
    for name, p in specs.items():
        value = p.validate(values[name], where)
        if p.length == "behaviors" and n_behaviors is not None and len(value) != n_behaviors:
            raise ConfigError(f"{where}parameter '{name}' needs one entry per behavior "
                              f"({n_behaviors}), got {value!r}")
        out[name] = value
    return out


def parse_assignments(items: Sequence[str], specs: Mapping[str, Param]) -> dict[str, Any]:
    """``key=value`` strings from ``--set`` parsed with each parameter's type."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in specs:
            raise ConfigError(f"unknown parameter '{key}' in --set; valid parameters: "
                              f"{', '.join(sorted(specs))}")
        out[key] = specs[key].parse(text.strip())
    return out


# Parameters shared by many components: declared once so that encoder and decoder agree.
DIM = Param("dim", 64, "embedding size d", int, low=1)
TF_REG = Param("reg", 1e-2, "TF-family L2 weight on the full regularized tables, every step",
               float, low=0.0, batchable=True)
