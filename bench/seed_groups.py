"""Which trials train together as one batch (``bench run --seed-batch``, ``bench tune``).

Trials batch when their model structure agrees: same model, dataset, protocol, base seed, epochs
and every structural hyper-parameter. Two kinds of difference are allowed inside a batch:

- the run index (seeds: initialization and sampling stream), except under the honest protocol,
  where each run has its own validation holdout, hence its own graphs;
- with ``across_params``, the values of batchable hyper-parameters (``Param(batchable=True)``:
  learning rate, regularization, loss weights, temperature), which the members hold as tensors.
  Which of them are zero stays structural (a task with weight 0 is not computed at all), and a
  parameter may declare more structure of its own (``Param.structure``).

Order is kept; ``max_size`` caps a batch (0 = no cap).
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from bench.models.registry import get_model
from bench.runner import Trial


def _signature(value: Any, structure) -> Any:
    if structure is not None:
        return structure(value)
    if isinstance(value, (list, tuple)):
        return [v == 0 for v in value]
    return value == 0


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
