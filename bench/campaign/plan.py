"""The campaign's plan: every missing trial of the priority entries, grouped the way the runner
trains them, each group priced, and which groups fit a budget in priority order.

Trials come from ``bench.experiments.plan.plan_experiment`` (the planner of ``bench run
--experiment``) and are grouped by ``bench.seed_groups`` with ``across_params`` (seed batches and
tune-like batches; a model that cannot batch its members runs them looped inside one group, as
the trainer decides). A group with a checkpoint in the results' scratch area is priced for the
epochs it has left.
"""
from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from bench.campaign.estimate import Estimate, RecordIndex, estimate_group
from bench.campaign.priority import Entry
from bench.errors import ConfigError
from bench.experiments.loader import load_experiment
from bench.experiments.plan import plan_experiment
from bench.experiments.resolve import NOT_REGISTERED, resolve_cell
from bench.runner import group_id, scratch_dir
from bench.seed_groups import seed_groups
from bench.trials import Trial

FITS, TOO_COSTLY, NO_ESTIMATE = "fits", "does not fit", "no estimate"


@dataclass
class Group:
    """Trials that train as one batch, with their priority entry, price and verdict."""

    entry: str
    trials: list[Trial]
    estimate: Estimate
    resumed_epoch: int = 0              # epochs already in its checkpoint
    verdict: str = ""

    @property
    def id(self) -> str:
        return group_id(self.trials)

    @property
    def describe(self) -> str:
        first = self.trials[0]
        runs = ",".join(str(t.run) for t in self.trials)
        return f"{first.model} on {first.dataset} runs {runs} ({first.config['params'].get('epochs')} ep)"


@dataclass
class CampaignPlan:
    groups: list[Group] = field(default_factory=list)
    not_registered: list[tuple[str, str]] = field(default_factory=list)   # (entry, row label)
    stored: int = 0
    budget: float = 0.0

    def fitting(self) -> list[Group]:
        return [g for g in self.groups if g.verdict == FITS]


def checkpoint_epoch(results_dir: Path, trials: Sequence[Trial]) -> int:
    """Epochs a group's checkpoint already holds (0: none, or one the trainer would refuse)."""
    path = scratch_dir(results_dir, group_id(trials)) / "checkpoint.pt"
    if not path.exists():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("members_count") != len(trials):
            return 0
        return int(state["epoch"]) + 1
    except Exception:   # the trainer moves such a file aside and starts afresh
        return 0


def _entry_args(entry: Entry, args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(
        experiment=entry.experiment, seeds=getattr(args, "seeds", None), protocol=entry.protocol,
        datasets=list(entry.datasets) or None, data_dir=args.data_dir,
        models=list(entry.models) or None, base_seed=getattr(args, "base_seed", 2025),
        results_dir=Path(args.results_dir), assignments=entry.assignments(),
        epochs=getattr(args, "epochs", None), aux_periods=getattr(args, "aux_periods", None))


def absent_rows(entry: Entry) -> list[str]:
    """The rows of the entry that no registered model can fill."""
    experiment = load_experiment(entry.experiment)
    if not experiment.trains:
        return []
    cells = experiment.cells(list(entry.datasets) or None)
    if entry.models:
        cells = [c for c in cells if set(c.models) & set(entry.models)]
    return sorted({f"{c.label} ({'|'.join(c.models)})" for c in cells
                   if resolve_cell(c).problem == NOT_REGISTERED})


def build_plan(entries: Sequence[Entry], args: argparse.Namespace, kind: str, budget: float,
               max_batch: int = 0, graphs: bool = True) -> CampaignPlan:
    """Plan every entry (in order, each trial once; within an entry in the order of its
    ``models``), price its groups on device ``kind`` (``graphs``: with CUDA graphs) and mark, in
    order, the groups whose complete estimate still fits in ``budget`` seconds."""
    plan = CampaignPlan(budget=budget)
    index = RecordIndex(Path(args.results_dir))
    seen: set[str] = set()
    for entry in entries:
        missing = absent_rows(entry)
        listed = {row for _, row in plan.not_registered}
        plan.not_registered += [(entry.label, row) for row in missing if row not in listed]
        if entry.models and len(missing) == len(entry.models):
            continue            # nothing registered in this entry: planning would find no row
        try:
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                part, _ = plan_experiment(_entry_args(entry, args))
        except ConfigError as err:
            raise ConfigError(f"priority entry '{entry.label}' (experiment {entry.experiment}): "
                              f"{err}") from None
        plan.stored += sum(1 for t in part.stored if t.run_id not in seen)
        seen.update(t.run_id for t in part.stored)
        todo = [t for t in part.trials if t.run_id not in seen]
        if entry.models:
            order = {name: n for n, name in enumerate(entry.models)}
            todo.sort(key=lambda t: order.get(t.model, len(order)))
        seen.update(t.run_id for t in todo)
        for trials in seed_groups(todo, max_batch, across_params=True):
            done = checkpoint_epoch(Path(args.results_dir), trials)
            epochs = int(trials[0].config["params"].get("epochs", 0)) or 1
            estimate = estimate_group(trials, kind, index, min(done / epochs, 1.0), graphs)
            plan.groups.append(Group(entry.label, trials, estimate, done))
    spent = 0.0
    for group in plan.groups:
        if not group.estimate.complete:
            group.verdict = NO_ESTIMATE
        elif spent + group.estimate.seconds <= budget:
            group.verdict = FITS
            spent += group.estimate.seconds
        else:
            group.verdict = TOO_COSTLY
    return plan
