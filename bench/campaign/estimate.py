"""What a group of trials costs on a device kind, from committed records.

A perf record (``results/perf/<dataset>/*.json``, written by ``bench perf``) gives the seconds of
one training step of a batch of ``seed_batch`` runs, the steps per epoch and the seconds of one
full evaluation; a trial record gives its seconds per epoch. Training is priced as seconds per
step x steps per epoch x epochs (a perf record of another batch size is scaled by the members
per run), evaluations as their count x seconds per evaluation x members, and the build-time
pretraining (MB-CGCN, MBGCN) from a trial record with the same pretraining parameters, as its
wall time less its training and evaluation. A part no record covers makes the estimate incomplete:
such a group never counts as fitting a budget, and the estimate says how to make the record.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from bench.trials import Trial

PRETRAIN_PARAMS = ("pretrain_model", "pretrain_epochs", "pretrain_eval_every",
                   "pretrain_patience", "pretrain_lr", "pretrain_reg", "pretrain_batch_size",
                   "pretrain_layers")


def device_kind(name: str) -> str:
    """``cuda:1`` -> ``cuda``."""
    return name.split(":")[0]


@dataclass
class Estimate:
    """Seconds a group needs, what they came from, and what is missing."""

    seconds: float | None = None              # None: no estimate of the training at all
    sources: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)    # parts not covered, with how to cover them

    @property
    def complete(self) -> bool:
        return self.seconds is not None and not self.missing


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RecordIndex:
    """The perf and trial records under a results folder, read once."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)
        self.perf: dict[str, list[tuple[Path, dict]]] = {}
        self.trials: dict[tuple[str, str], list[tuple[Path, dict]]] = {}
        for path in sorted(self.results_dir.glob("perf/*/*.json")):
            record = _read_json(path)
            if record and record.get("kind") == "perf" and "measurement" in record:
                self.perf.setdefault(record.get("dataset", path.parent.name), []).append(
                    (path, record))
        for path in sorted(self.results_dir.glob("*/*/*.json")):
            if path.parts[-3] in ("perf", "tune", "notes", "scratch"):
                continue
            if path.name.endswith((".failed.json", ".per_user.json")):
                continue
            record = _read_json(path)
            if record and record.get("status") == "ok" and "timing" in record:
                config = record.get("config", {})
                key = (config.get("dataset"), config.get("model"))
                self.trials.setdefault(key, []).append((path, record))

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.results_dir.parent))
        except ValueError:
            return str(path)

    def perf_for(self, model: str, dataset: str, kind: str, members: int, version: str,
                 graphs: bool = True) -> tuple[Path, dict] | None:
        """The best perf record of ``model`` on ``dataset`` and device ``kind``: current code
        before older, the batch size nearest ``members``, on CUDA timed with CUDA graphs as
        ``graphs`` says, then the newest."""
        found = []
        for path, record in self.perf.get(dataset, []):
            m = record["measurement"]
            base = str(m.get("model", "")).split("-x")[0] if m.get("seed_batch", 1) > 1 else m.get("model")
            if base != model or "seconds_per_step_median" not in m or "steps_per_epoch" not in m:
                continue
            if device_kind(record.get("environment", {}).get("device", "")) != kind:
                continue
            batch = int(m.get("seed_batch", 1))
            other_graphs = kind == "cuda" and bool(m.get("cuda_graphs")) != graphs
            found.append(((m.get("model_version") != version, abs(batch - members), other_graphs,
                           -batch, _negated(record.get("finished_at", ""))), path, record))
        if not found:
            return None
        found.sort(key=lambda row: row[0])
        return found[0][1], found[0][2]

    def trial_for(self, trial: Trial, kind: str, same_pretraining: bool = False
                  ) -> tuple[Path, dict] | None:
        """A trial record of the same model and dataset on device ``kind`` (with the same
        pretraining parameters when asked), current code first, then the newest."""
        params = trial.config["params"]
        found = []
        for path, record in self.trials.get((trial.dataset, trial.model), []):
            if device_kind(record.get("environment", {}).get("device", "")) != kind:
                continue
            theirs = record["config"].get("params", {})
            if same_pretraining and any(theirs.get(k) != params.get(k) for k in PRETRAIN_PARAMS):
                continue
            found.append(((record["config"].get("model_version") != trial.config["model_version"],
                           _negated(record.get("finished_at", ""))), path, record))
        if not found:
            return None
        found.sort(key=lambda row: row[0])
        return found[0][1], found[0][2]


def _negated(stamp: str) -> tuple:
    return tuple(-ord(c) for c in stamp)


# parameters that change what one epoch costs only through their count, which the estimate
# takes from the trial itself
SCHEDULE_PARAMS = {"epochs", "eval_every", "eval_schedule", "patience", *PRETRAIN_PARAMS}


def differing_params(measured: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Parameters whose values differ between a perf record's run and the trial (beyond the
    schedule): the step it timed may cost otherwise."""
    return sorted(k for k in set(measured) | set(wanted)
                  if k not in SCHEDULE_PARAMS and measured.get(k) != wanted.get(k))


def evaluations(params: dict[str, Any]) -> int:
    """Full test evaluations of one run: one every ``eval_every`` epochs and the last."""
    epochs = int(params.get("epochs", 0))
    every = max(int(params.get("eval_every", 1) or 1), 1)
    return math.ceil(epochs / every) + 1


def perf_command(model: str, dataset: str, kind: str, members: int) -> str:
    batch = f" --seed-batch {members}" if members > 1 else ""
    return (f"python -m bench perf --models {model} --datasets {dataset} --device {kind} "
            f"--repeats 1 --steps 10{batch}")


def estimate_group(group: Sequence[Trial], kind: str, index: RecordIndex,
                   done_fraction: float = 0.0, graphs: bool = True) -> Estimate:
    """The seconds ``group`` (trials that train as one batch) needs on device ``kind``;
    ``done_fraction`` of its epochs are already checkpointed; ``graphs``: trained with CUDA
    graphs."""
    first = group[0]
    params = first.config["params"]
    members = len(group)
    epochs = int(params.get("epochs", 0))
    left = 1.0 - done_fraction
    out = Estimate()
    found = index.perf_for(first.model, first.dataset, kind, members, first.config["model_version"],
                           graphs)
    if found is not None:
        path, record = found
        m = record["measurement"]
        batch = int(m.get("seed_batch", 1))
        step = float(m["seconds_per_step_median"]) * members / batch
        training = step * int(m["steps_per_epoch"]) * epochs * left
        evaluation = (evaluations(params) * float(m.get("evaluation_seconds_median", 0.0))
                      * members * left)
        scaled = "" if batch == members else f", scaled x{members}/{batch}"
        older = "" if m.get("model_version") == first.config["model_version"] else ", older code"
        if kind == "cuda":
            older += ", CUDA graphs " + ("on" if m.get("cuda_graphs") else "off")
        differ = differing_params(m.get("params", {}), params)
        if differ:
            older += f", measured with other {', '.join(differ)}"
        out.seconds = training + evaluation
        out.sources.append(f"perf {index.rel(path)} ({kind}, {1000 * float(m['seconds_per_step_median']):.1f} ms/step "
                           f"x{batch}{scaled}{older})")
    else:
        found = index.trial_for(first, kind)
        if found is not None:
            path, record = found
            timing = record["timing"]
            per_epoch = float(timing.get("seconds_per_epoch", 0.0))
            evaluating = float(timing.get("evaluation_seconds", 0.0))
            run_epochs = max(int(record.get("epochs_run", epochs) or 1), 1)
            out.seconds = (per_epoch * epochs + evaluating * epochs / run_epochs) * members * left
            out.sources.append(f"trial {index.rel(path)} ({kind}, {per_epoch:.2f} s/epoch)")
        else:
            out.missing.append(f"training: no perf or trial record on {kind}; make one with "
                               f"`{perf_command(first.model, first.dataset, kind, members)}`")
    if params.get("pretrain_model") not in (None, "none") and done_fraction == 0.0:
        found = index.trial_for(first, kind, same_pretraining=True)
        if found is None:
            out.missing.append(f"pretraining: no {kind} trial record with these pretraining "
                               "parameters (a perf record does not time it)")
        else:
            path, record = found
            timing = record["timing"]
            overhead = max(float(timing.get("wall_seconds", 0.0))
                           - float(timing.get("training_seconds", 0.0))
                           - float(timing.get("evaluation_seconds", 0.0)), 0.0)
            out.seconds = (out.seconds or 0.0) + overhead * members
            out.sources.append(f"pretraining {index.rel(path)} ({kind}, {overhead:.0f} s/run)")
    return out

