"""From configurations to trials to batches.

Each configuration becomes ``seeds`` ordinary honest-protocol trials of the runner, with the
configuration's values as overrides (plus ``--set`` and ``--epochs``): the same trials, and run
ids, that ``bench run --protocol honest --set ...`` plans, so stored ones are skipped either way.
The trials to run are then grouped into batches with ``bench.seed_groups``: members that differ
only in batchable values (learning rate, regularization, loss weights, temperature) train
together as one computation, each with its own values; structural parameters (layers), which
weights are zero, and the run index (each honest run has its own validation holdout) split
batches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.data.dataset import MultiBehaviorDataset
from bench.models.registry import ModelSpec
from bench.runner import Trial, plan_trials
from bench.seed_groups import seed_groups
from bench.tune.search import Configuration
from bench.tune.space import Space

PROTOCOL = "honest"


@dataclass
class PlannedConfiguration:
    """One configuration: its searched values, the parameters they set, and its trials."""

    index: int
    values: Configuration
    overrides: dict[str, Any]
    trials: list[Trial]

    @property
    def run_ids(self) -> list[str]:
        return [t.run_id for t in self.trials]


@dataclass
class TunePlan:
    configurations: list[PlannedConfiguration] = field(default_factory=list)
    to_run: list[Trial] = field(default_factory=list)
    stored: list[Trial] = field(default_factory=list)
    corrupted: list[Path] = field(default_factory=list)
    batches: list[list[Trial]] = field(default_factory=list)     # of the trials to run

    @property
    def trials(self) -> list[Trial]:
        """Every distinct trial of the plan, in configuration order."""
        seen: dict[str, Trial] = {}
        for config in self.configurations:
            for trial in config.trials:
                seen.setdefault(trial.run_id, trial)
        return list(seen.values())


def configuration_overrides(space: Space, values: Configuration, n_behaviors: int,
                            fixed: Mapping[str, Any], epochs: int | None) -> dict[str, Any]:
    """The parameters a configuration sets: ``--set`` values, the searched ones, ``--epochs``."""
    out = dict(fixed)
    for dim in space.dimensions:
        out.update(dim.overrides(values[dim.name], n_behaviors))
    if epochs is not None:
        out["epochs"] = epochs
    return out


def plan_configurations(spec: ModelSpec, dataset: MultiBehaviorDataset, space: Space,
                        configurations: Sequence[Configuration], fixed: Mapping[str, Any],
                        epochs: int | None, seeds: int, base_seed: int, results_dir: Path,
                        members: int, first_index: int = 0) -> TunePlan:
    """Trials for each configuration (stored ones split off) and the batches of those to run."""
    plan = TunePlan()
    planned: set[str] = set()
    for offset, values in enumerate(configurations):
        overrides = configuration_overrides(space, values, dataset.n_behaviors, fixed, epochs)
        part = plan_trials([spec.name], [dataset], seeds, PROTOCOL, base_seed, overrides,
                           results_dir)
        trials = sorted(part.trials + part.stored, key=lambda t: t.run)
        plan.configurations.append(PlannedConfiguration(first_index + offset, dict(values),
                                                        overrides, trials))
        stored_ids = {t.run_id for t in part.stored}
        for trial in trials:
            if trial.run_id in planned:      # a configuration met twice trains once
                continue
            planned.add(trial.run_id)
            (plan.stored if trial.run_id in stored_ids else plan.to_run).append(trial)
        plan.corrupted += [p for p in part.corrupted if p not in plan.corrupted]
    plan.batches = seed_groups(plan.to_run, max_size=members, across_params=True)
    return plan


def batch_count(trials: Sequence[Trial], members: int) -> int:
    """How many batches ``trials`` form (the plan's batches cover only the trials to run)."""
    return len(seed_groups(list(trials), max_size=members, across_params=True))
