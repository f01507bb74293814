"""The summary table: mean and std over runs, one row per stored configuration.

A row pools only records that share everything but the run index (see
:func:`bench.report.results.configuration_key`): records of 8 and of 20 epochs, of two batch sizes
or of two code versions are different experiments, not repeat runs, and get rows of their own.
Where a model and dataset have several rows, the ``setting`` column names what tells them apart;
a row recorded by an older version of the model's code is marked ``stale``.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from bench.report.results import configuration_key, current_code_version, is_stale

CURRENT, STALE, UNREGISTERED = "current", "stale", "not registered"


def summarize(records: Sequence[dict[str, Any]], metrics: Sequence[str] = ("HR@10", "NDCG@10"),
              label: str = "full/default") -> list[dict[str, Any]]:
    """Rows of mean and std over runs of the main selection, per (dataset, model, protocol,
    configuration); a configuration's latest record of a run index counts once."""
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
        settings = distinguishing_settings([g[0]["config"] for g in groups])
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


def distinguishing_settings(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Per configuration, ``epochs=N`` and every setting whose value differs among ``configs``
    (the configurations of one model, dataset and protocol), as ``key=value``. Derived fields
    (encoder, decoder, which defaults were inferred) are named only where nothing else differs."""
    flat = [flatten(c) for c in configs]
    primary = _differing(flat, [k for k in _ordered_keys(flat) if k not in DERIVED])
    out = [_describe(f, primary) for f in flat]
    if len(set(out)) < len(out):
        everything = _differing(flat, _ordered_keys(flat))
        out = [_describe(f, everything) for f in flat]
    return out


DERIVED = ("encoder", "decoder", "inferred_defaults")


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """The settings of a configuration under short names, in the order a row names them:
    ``epochs``, the other parameters by name, the evaluation's as ``eval.<name>``, ``base_seed``,
    ``data`` (fingerprint), ``code`` (version), then the derived fields."""
    params = dict(config.get("params", {}))
    out: dict[str, Any] = {"epochs": params.pop("epochs", None)}
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


def _describe(settings: dict[str, Any], differing: Sequence[str]) -> str:
    return " ".join([f"epochs={_text(settings.get('epochs'))}"]
                    + [f"{k}={_text(settings.get(k))}" for k in differing])


def _text(value: Any) -> str:
    """A setting's value as written in a row; 1 and 1.0 read alike, as configurations compare
    numbers by value."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
