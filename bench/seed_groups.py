"""Which trials train together as one batch (``bench run --seed-batch``, ``bench tune``).

Trials batch when their model structure agrees: same model, dataset, protocol, base seed, epochs
and every structural hyper-parameter. Two kinds of difference are allowed inside a batch:

- the run index (seeds: initialization and sampling stream), except under the honest protocol,
  where each run has its own validation holdout, hence its own graphs;
- with ``across_params``, the values of batchable hyper-parameters (``Param(batchable=True)``:
  learning rate, regularization, loss weights, temperature), which the members hold as tensors.
  A parameter may declare what of its value stays structural (``Param.structure``: the
  temperature's fast path). Zeros do not split a batch: the batch's structure
  (``template_params``) computes a term when any member needs it, and a member whose weight is 0
  multiplies it by 0.

Order is kept; ``max_size`` caps a batch (0 = no cap).
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from bench.models.registry import get_model
from bench.trials import Trial


def _signature(value: Any, structure) -> Any:
    return None if structure is None else structure(value)


def batch_key(trial: Trial, across_params: bool = False) -> str:
    """Trials with equal keys can train as members of one batch."""
    config = {k: v for k, v in trial.config.items() if k != "run" or trial.protocol == "honest"}
    if across_params:
        specs = get_model(trial.model).param_specs()
        params = dict(config["params"])
        for name, spec in specs.items():
            if spec.batchable and name in params:
                params[name] = ["batchable", _signature(params[name], spec.structure)]
        config["params"] = params
    return json.dumps(config, sort_keys=True, default=str)


def template_params(configs: Sequence[dict[str, Any]], specs: dict) -> dict[str, Any]:
    """The parameters a batch's structure is built from: the first member's, with every batchable
    number (or list entry) replaced by its largest magnitude over the members, so that a term is
    computed whenever some member's weight for it is not 0. Members read their own values as
    tensors; the structure only decides which terms exist."""
    merged = dict(configs[0])
    for name, spec in specs.items():
        if not spec.batchable or spec.structure is not None or name not in merged:
            continue
        values = [c[name] for c in configs]
        if isinstance(values[0], (list, tuple)):
            merged[name] = [max(abs(v[i]) for v in values) for i in range(len(values[0]))]
        else:
            merged[name] = max(abs(v) for v in values)
    return merged


def seed_groups(trials: Sequence[Trial], max_size: int = 0,
                across_params: bool = False) -> list[list[Trial]]:
    """Trials in batches that can train together (order kept)."""
    groups: dict[str, list[list[Trial]]] = {}
    out: list[list[Trial]] = []
    for trial in trials:
        chains = groups.setdefault(batch_key(trial, across_params), [])
        if not chains or (max_size and len(chains[-1]) >= max_size):
            chains.append([])
            out.append(chains[-1])
        chains[-1].append(trial)
    return out
