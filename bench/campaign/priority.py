"""The campaign's priority list: experiments (narrowed to datasets and rows) in the order a device
window should fill them."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from bench.errors import ConfigError

DEFAULT_PRIORITY = Path(__file__).with_name("priority.toml")
_KEYS = {"label", "experiment", "datasets", "models", "set", "protocol"}
PROTOCOLS = ("paper", "honest")


@dataclass(frozen=True)
class Entry:
    """One step of the priority list: an experiment, optionally narrowed and with parameters set
    on top of the experiment's."""

    label: str
    experiment: str
    datasets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    protocol: str | None = None       # None: the experiment's

    def assignments(self) -> list[str]:
        """``overrides`` as ``--set`` strings."""
        return [f"{k}={_literal(v)}" for k, v in self.overrides.items()]


def _literal(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    return tuple(value)


def load_priority(path: Path | str | None = None) -> list[Entry]:
    """The entries of a priority file (the shipped default without ``path``); errors name the
    file, the entry and the field."""
    path = Path(path) if path is not None else DEFAULT_PRIORITY
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--priority {path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    raw = data.get("entry")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: no [[entry]] tables; each needs at least "
                          "experiment = \"NAME\"")
    entries = []
    for n, item in enumerate(raw, 1):
        where = f"{path}: entry {n}"
        unknown = sorted(set(item) - _KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(_KEYS))}")
        experiment = item.get("experiment")
        if not isinstance(experiment, str) or not experiment:
            raise ConfigError(f"{where}: field 'experiment' is missing; set it to an "
                              "experiment name (e.g. \"table2\") or a .toml path")
        overrides = item.get("set", {})
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}: field 'set' must be a table of parameter = value")
        protocol = item.get("protocol")
        if protocol is not None and protocol not in PROTOCOLS:
            raise ConfigError(f"{where}: field 'protocol' is {protocol!r}; use one of "
                              f"{', '.join(PROTOCOLS)} or leave it out (the experiment's)")
        entries.append(Entry(str(item.get("label", experiment)), experiment,
                             _strings(item.get("datasets", []), f"{where}: datasets"),
                             _strings(item.get("models", []), f"{where}: models"),
                             dict(overrides), protocol))
    return entries


def select(entries: Sequence[Entry], experiments: Sequence[str] | None,
           datasets: Sequence[str] | None) -> list[Entry]:
    """The entries of the named experiments, narrowed to ``datasets`` (an entry whose datasets
    do not meet them is dropped; an entry with none takes them); a named experiment no entry
    lists is planned whole after them."""
    chosen = []
    for entry in entries:
        if experiments and entry.experiment not in experiments:
            continue
        if datasets:
            kept = tuple(d for d in (entry.datasets or datasets) if d in datasets)
            if not kept:
                continue
            entry = Entry(entry.label, entry.experiment, kept, entry.models, entry.overrides)
        chosen.append(entry)
    listed = {e.experiment for e in entries}
    for name in experiments or []:
        if name not in listed:        # an experiment the file does not rank comes last, whole
            chosen.append(Entry(name, name, tuple(datasets or ())))
    if not chosen:
        raise ConfigError(f"no priority entry matches --experiments {','.join(experiments or [])}"
                          f" and --datasets {','.join(datasets or [])}; the priority file's "
                          f"experiments: {', '.join(dict.fromkeys(e.experiment for e in entries))}")
    return chosen
