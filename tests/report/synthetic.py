"""Hand-made records in the real record format, for report tests (no training)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.experiments.loader import Cell
from bench.experiments.resolve import resolve_cell
from bench.records import RECORD_FORMAT, config_hash, write_record
from bench.runner import DEFAULT_EVAL, MAIN_SELECTION


def write_cell_records(results: Path, cell: Cell, hr: Sequence[float], ndcg: Sequence[float],
                       users: dict[int, dict[str, np.ndarray]] | None = None,
                       protocol: str = "paper", epochs: int | None = None,
                       paper_rule_offset: float = 0.0, base_seed: int = 2025,
                       model_version: str | None = None) -> list[Path]:
    """One record per run i with HR@10 = hr[i], NDCG@10 = ndcg[i] (selection of ``protocol``),
    the configuration the report will look for (or another ``base_seed`` or code version), and
    optional per-user values per run."""
    resolved = resolve_cell(cell)
    assert resolved.ok, resolved.detail
    paths = []
    selection = MAIN_SELECTION[protocol]
    for run, (h, n) in enumerate(zip(hr, ndcg)):
        params = dict(resolved.params)
        if epochs is not None:
            params["epochs"] = epochs
        config: dict[str, Any] = {
            "model": resolved.model, "encoder": "x", "decoder": "y",
            "model_version": model_version or resolved.code_version, "dataset": cell.dataset,
            "dataset_fingerprint": "synthetic", "protocol": protocol, "run": run,
            "base_seed": base_seed, "params": params, "evaluation": dict(DEFAULT_EVAL),
            "inferred_defaults": []}
        metrics = {"full/default": {"HR@10": h, "NDCG@10": n},
                   "full/paper": {"HR@10": h + paper_rule_offset, "NDCG@10": n}}
        record = {"format": RECORD_FORMAT, "run_id": config_hash(config), "status": "ok",
                  "config": config, "metrics": {selection: metrics, "last": metrics},
                  "main_selection": selection, "selected_epoch": {selection: 1},
                  "curves": [], "epochs_run": 1, "timing": {"seconds_per_epoch": 0.1},
                  "finished_at": f"2025-01-01T00:00:0{run}"}
        per_user = None
        if users is not None and run in users:
            values = users[run]
            per_user = {f"{selection}/full/default": {
                "users": values["users"], "values": {"HR@10": values["HR@10"],
                                                     "NDCG@10": values["NDCG@10"]}}}
        paths.append(write_record(results, record, per_user))
    return paths
