"""The planning types every planner shares: one trial and a plan of trials.

They live apart from the runner so that the modules that group and plan trials
(``bench.seed_groups``, ``bench.campaign``) and the runner that trains them can all import them
without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Trial:
    """One (model, dataset, protocol, run) with its resolved configuration."""

    model: str
    dataset: str
    protocol: str
    run: int
    config: dict[str, Any]
    run_id: str

    @property
    def label(self) -> str:
        return (f"{self.model} on {self.dataset} ({self.protocol}, run {self.run}, base seed "
                f"{self.config['base_seed']}) [{self.run_id}]")


@dataclass
class RunPlan:
    trials: list[Trial] = field(default_factory=list)
    stored: list[Trial] = field(default_factory=list)
    corrupted: list[Path] = field(default_factory=list)   # unreadable records, to be rerun
