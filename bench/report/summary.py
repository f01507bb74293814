"""The summary table: mean and std over runs, one row per stored configuration.

A row pools only records that share everything but the run index (see
:func:`bench.report.results.configuration_key`): records of 8 and of 20 epochs, of two batch sizes
or of two code versions are different experiments, not repeat runs, and get rows of their own.
Where a model and dataset have several rows, the ``setting`` column names what tells them apart;
a row recorded by an older version of the model's code is marked ``stale``.

For reading (the md, plain and latex tables) settings are written compactly, and csv keeps every
value as recorded:

- a list is written without brackets or quotes (``layers=2,2,2``, ``seen_behaviors=cart,pv``);
- a number that 3 significant digits give exactly stays as it is (``lr=0.0001``, ``reg=1e-05``);
  else one that is a fraction with a denominator up to 12 (float noise aside) is written as that
  fraction, so ``loss_weights=1/3,1/3,1/3`` and ``0,1/6,5/6`` read as what was meant; anything
  else is rounded to 3 significant digits (``0.123``). Fractions win over rounding because the
  weights that need them are exact thirds and sixths, which ``0.333`` would only approximate.
- where rounding would make two rows of a model read alike, that setting keeps its full value.

A terminal table (md, plain) keeps within :data:`WIDTH` columns: each metric and its std over runs
share a cell (``0.0908 ± 0.0009``; a single run has no std), a dataset or protocol that every row
shares is named once above the table instead of in a column, and a setting too long for the rest
of the row is replaced by a key (``[a]``) spelled out below the table. csv keeps every column.
"""
from __future__ import annotations

import json
import math
import textwrap
from fractions import Fraction
from itertools import count, product
from string import ascii_lowercase
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from bench.report.results import configuration_key, current_code_version, is_stale

CURRENT, STALE, UNREGISTERED = "current", "stale", "not registered"
WIDTH = 120               # columns a terminal table keeps within
MAX_DENOMINATOR = 12      # the largest denominator a setting is written as a fraction with
SHARED = ("dataset", "protocol")   # columns a terminal table names once when every row agrees


def summarize(records: Sequence[dict[str, Any]], metrics: Sequence[str] = ("HR@10", "NDCG@10"),
              label: str = "full/default", compact: bool = False) -> list[dict[str, Any]]:
    """Rows of mean and std over runs of the main selection, per (dataset, model, protocol,
    configuration); a configuration's latest record of a run index counts once. ``compact``
    writes the settings for reading (see the module's docstring), else in full."""
    families: dict[tuple[str, str, str], dict[str, dict[int, dict]]] = {}
    for record in sorted(records, key=lambda r: r.get("finished_at", "")):
        c = record["config"]
        runs = families.setdefault((c["dataset"], c["model"], c["protocol"]), {})
        runs.setdefault(configuration_key(c), {})[c["run"]] = record
    versions: dict[str, str | None] = {}
    rows = []
    for (dataset, model, protocol), configurations in sorted(families.items()):
        if model not in versions:
            versions[model] = current_code_version(model)
        groups = [[by_run[k] for k in sorted(by_run)] for by_run in configurations.values()]
        settings = distinguishing_settings([g[0]["config"] for g in groups], compact)
        family_rows = []
        for group, setting in zip(groups, settings):
            config = group[0]["config"]
            row: dict[str, Any] = {"dataset": dataset, "model": model, "protocol": protocol,
                                   "setting": setting, "runs": len(group)}
            for metric in metrics:
                values = np.array([r["metrics"][r["main_selection"]][label][metric]
                                   for r in group])
                row[metric] = float(values.mean())
                row[f"{metric} std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            row["s/epoch"] = float(np.mean([r["timing"]["seconds_per_epoch"] for r in group]))
            row["code"] = (UNREGISTERED if versions[model] is None else
                           STALE if is_stale(config, versions[model]) else CURRENT)
            epochs = config.get("params", {}).get("epochs") or 0
            family_rows.append(((row["code"] != CURRENT, -epochs, -len(group), setting), row))
        # current code first, then the longest training, then the most runs
        rows += [row for _, row in sorted(family_rows, key=lambda pair: pair[0])]
    return rows


def without_stale(records: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The records not recorded by an older version of their model's code, and how many rows
    (configurations) of the summary the others would have made."""
    versions: dict[str, str | None] = {}
    kept, stale = [], set()
    for record in records:
        c = record["config"]
        if c["model"] not in versions:
            versions[c["model"]] = current_code_version(c["model"])
        if is_stale(c, versions[c["model"]]):
            stale.add((c["dataset"], c["model"], c["protocol"], configuration_key(c)))
        else:
            kept.append(record)
    return kept, len(stale)


def distinguishing_settings(configs: Sequence[dict[str, Any]],
                            compact: bool = False) -> list[str]:
    """Per configuration, ``epochs=N`` and every setting whose value differs among ``configs``
    (the configurations of one model, dataset and protocol), as ``key=value``. Derived fields
    (encoder, decoder, which defaults were inferred) are named only where nothing else differs.
    ``compact`` writes values with :func:`compact_text` where that keeps the rows apart."""
    flat = [flatten(c) for c in configs]
    primary = _differing(flat, [k for k in _ordered_keys(flat) if k not in DERIVED])
    out = [_describe(f, _differing_texts(flat, primary, compact)) for f in flat]
    if len(set(out)) < len(out):
        everything = _differing(flat, _ordered_keys(flat))
        out = [_describe(f, _differing_texts(flat, everything, compact)) for f in flat]
    return out


DERIVED = ("encoder", "decoder", "inferred_defaults")


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """The settings of a configuration under short names, in the order a row names them:
    ``epochs``, the other parameters by name, the evaluation's as ``eval.<name>``, ``base_seed``,
    ``data`` (fingerprint), ``code`` (version), then the derived fields; ``aux_periods`` first
    after ``epochs`` where the data has periods (what the training input held)."""
    params = dict(config.get("params", {}))
    out: dict[str, Any] = {"epochs": params.pop("epochs", None)}
    if "aux_periods" in config:
        out["aux_periods"] = config["aux_periods"]
    out.update(sorted(params.items()))
    out.update({f"eval.{k}": v for k, v in sorted((config.get("evaluation") or {}).items())})
    out["base_seed"] = config.get("base_seed")
    out["data"] = config.get("dataset_fingerprint")
    out["code"] = config.get("model_version")
    out.update({k: config.get(k) for k in DERIVED})
    return out


def _ordered_keys(flat: Sequence[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for f in flat:
        keys.update(dict.fromkeys(f))
    return list(keys)


def _differing(flat: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[str]:
    return [k for k in keys if k != "epochs" and len({_text(f.get(k)) for f in flat}) > 1]


def _differing_texts(flat: Sequence[dict[str, Any]], keys: Sequence[str],
                     compact: bool) -> dict[str, Callable[[Any], str]]:
    """Per key, how its values are written: compactly unless that makes two differing values of
    ``flat`` read alike (0.1234 and 0.1231 both 0.123), then in full."""
    out: dict[str, Callable[[Any], str]] = {}
    for k in keys:
        same_count = compact and (len({compact_text(f.get(k)) for f in flat})
                                  == len({_text(f.get(k)) for f in flat}))
        out[k] = compact_text if same_count else _text
    return out


def _describe(settings: dict[str, Any], writers: dict[str, Callable[[Any], str]]) -> str:
    return " ".join([f"epochs={_text(settings.get('epochs'))}"]
                    + [f"{k}={write(settings.get(k))}" for k, write in writers.items()])


def _text(value: Any) -> str:
    """A setting's value as written in a row; 1 and 1.0 read alike, as configurations compare
    numbers by value."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def compact_text(value: Any) -> str:
    """A setting's value for reading: lists without brackets or quotes, numbers as 3 significant
    digits give them exactly, else as a simple fraction, else rounded (the module's docstring
    says why)."""
    if isinstance(value, (list, tuple)):
        return ",".join(_nested(v) for v in value) if value else "[]"
    if isinstance(value, dict):
        return ",".join(f"{k}:{_nested(v)}" for k, v in sorted(value.items())) if value else "{}"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if value.is_integer():
        return str(int(value))
    if not math.isfinite(value):
        return str(value)
    rounded = f"{value:.3g}"
    if math.isclose(float(rounded), value, rel_tol=1e-9):
        return rounded
    fraction = Fraction(value).limit_denominator(MAX_DENOMINATOR)
    if math.isclose(float(fraction), value, rel_tol=1e-9):
        return f"{fraction.numerator}/{fraction.denominator}"
    return rounded


def _nested(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"[{compact_text(value)}]"
    if isinstance(value, dict):
        return "{" + compact_text(value) + "}"
    return compact_text(value)


def render_table(rows: Sequence[dict[str, Any]], tablefmt: str, width: int = WIDTH) -> str:
    """The rows as a terminal table in tabulate's ``tablefmt``: each metric in one cell with its
    std over runs; a dataset or protocol that every row shares named once above the table, not
    in a column; and every setting that would push a line past ``width`` columns replaced by a
    key spelled out (wrapped to ``width``) below the table."""
    from tabulate import tabulate
    if not rows:
        return ""
    metrics = [k for k in rows[0] if f"{k} std" in rows[0]]
    shared = [k for k in SHARED if len(rows) > 1 and len({row[k] for row in rows}) == 1]
    caption = ("every row: " + ", ".join(f"{k}={rows[0][k]}" for k in shared) + "\n\n"
               if shared else "")
    cells = [_cells(row, metrics, shared) for row in rows]
    align = tuple("right" if isinstance(v, (int, float)) and k not in metrics else "left"
                  for k, v in rows[0].items() if k not in shared and not _is_std(k, metrics))

    def table(body: list[dict[str, str]]) -> str:
        return tabulate(body, headers="keys", tablefmt=tablefmt, colalign=align,
                        disable_numparse=True)

    header = "setting"
    room = width - _width(table([{**c, header: ""} for c in cells])) + len(header)
    keys: dict[str, str] = {}
    names = _key_names()
    for c in cells:
        if len(c[header]) > room:
            if c[header] not in keys:
                keys[c[header]] = next(names)
            c[header] = keys[c[header]]
    notes = [line for setting, key in keys.items()
             for line in textwrap.wrap(f"{key} {setting}", width, break_long_words=False,
                                       break_on_hyphens=False,
                                       subsequent_indent=" " * (len(key) + 1))]
    return caption + table(cells) + "\n" + "".join(f"{line}\n" for line in notes)


def _is_std(key: str, metrics: Sequence[str]) -> bool:
    return key.endswith(" std") and key[: -len(" std")] in metrics


def _cells(row: dict[str, Any], metrics: Sequence[str], shared: Sequence[str]) -> dict[str, str]:
    out = {}
    for key, value in row.items():
        if key in shared:
            continue
        if key in metrics:
            std = f" ± {row[f'{key} std']:.4f}" if row["runs"] > 1 else ""
            out[f"{key} ± std"] = f"{value:.4f}{std}"
        elif not _is_std(key, metrics):
            out[key] = f"{value:.4f}" if isinstance(value, float) else str(value)
    return out


def _width(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def _key_names() -> Iterator[str]:
    """[a] .. [z], then [aa], [ab], ..."""
    for n in count(1):
        for letters in product(ascii_lowercase, repeat=n):
            yield f"[{''.join(letters)}]"
