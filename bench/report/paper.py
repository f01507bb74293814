"""The COPF paper's own numbers (``paper_numbers.toml`` beside this file), as data for reports."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

PAPER_FILE = Path(__file__).resolve().parent / "paper_numbers.toml"


@dataclass(frozen=True)
class PaperTable:
    """``rows[label][dataset][metric]``; ``rel_impr[dataset][metric]`` in percent, where printed."""

    name: str
    caption: str
    datasets: tuple[str, ...]
    metrics: tuple[str, ...]
    rows: dict[str, dict[str, dict[str, float]]]
    rel_impr: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str = ""

    def value(self, label: str, dataset: str, metric: str) -> float | None:
        return self.rows.get(label, {}).get(dataset, {}).get(metric)


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    return tomllib.loads(PAPER_FILE.read_text())


def paper_table(name: str | None) -> PaperTable | None:
    """A results table of the paper (table2..table6), or None when the paper has no numbers."""
    if not name:
        return None
    raw = _raw().get(name)
    if raw is None or "rows" not in raw or name == "table1":
        return None
    metrics = tuple(raw["metrics"])
    rows = {label: {ds: dict(zip(metrics, values)) for ds, values in per_ds.items()}
            for label, per_ds in raw["rows"].items()}
    rel = {ds: dict(zip(metrics, values)) for ds, values in raw.get("rel_impr", {}).items()}
    return PaperTable(name, raw.get("caption", ""), tuple(raw["datasets"]), metrics, rows, rel,
                      raw.get("note", ""))


def paper_dataset_stats() -> dict[str, dict[str, Any]]:
    """Table 1 of the paper: per dataset users, items, interactions (rounded in the paper),
    target_interactions, behaviors and the paper's label."""
    return {name: dict(row) for name, row in _raw()["table1"]["rows"].items()}
