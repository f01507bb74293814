"""The training loop and the two protocols.

``paper``: train on the paper's data; evaluate test on the reference schedule and report both the
best-on-test epoch (test-set selection, as the reference code reports) and the last epoch.
``honest``: the dataset carries a validation split removed from training; select the epoch on
validation with early stopping and evaluate the test set once, with the selected weights.
"""
from __future__ import annotations

import copy
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import TrainingError
from bench.evaluate import EvalResult, evaluate_all
from bench.records import atomic_write_bytes
from bench.models.base import Model
from bench.train.samplers import make_sampler

SELECT_ON = ("full/default", "HR@10")
PROTOCOLS = ("paper", "honest")


@dataclass
class TrainOutcome:
    """The reported test evaluations per selection (each keyed ``protocol/rule``), the epochs they
    come from, and the learning curves."""

    reported: dict[str, dict[str, EvalResult]]
    selected_epoch: dict[str, int]
    curves: list[dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    resumed_from: int | None = None
    seconds_training: float = 0.0
    seconds_evaluating: float = 0.0


def make_optimizer(model: Model | Iterable[torch.Tensor], cfg: dict, steps_per_epoch: int,
                   n_users: int):
    """Adam with the TF family's staircase decay per optimizer step:
    lr * lr_decay ** floor(step / decay_steps), decay_steps defaulting to users // batch_size.
    ``model`` is a model or the parameters to train."""
    params = model.parameters() if isinstance(model, torch.nn.Module) else model
    opt = torch.optim.Adam([p for p in params if p.requires_grad], lr=cfg["lr"])
    decay_steps = cfg["decay_steps"] or max(1, n_users // cfg["batch_size"])
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=decay_steps, gamma=cfg["lr_decay"])
    return opt, schedule


def paper_test_epochs(cfg: dict) -> set[int]:
    """Epochs (0-based, after training that epoch) at which the paper protocol evaluates test."""
    n = cfg["epochs"]
    if cfg["eval_schedule"] == "copf":
        return {ep for ep in range(n) if ep % 3 == 0 and (ep > 90 or ep < 2)}
    if cfg["eval_schedule"] == "every":
        return {ep for ep in range(n) if ep % cfg["eval_every"] == 0}
    return set()


def _selection_value(results: dict[str, EvalResult]) -> float:
    label, metric = SELECT_ON
    return results[label].metrics[metric]


class Checkpoint:
    """Saves and restores a trial's training state (a torch pickle in the results' scratch area).

    The state holds parameters, optimizer and schedule, the sampling generator and torch's global
    generator, the epoch, the curves and the best state so far: resuming gives the same numbers
    on CPU as an uninterrupted run."""

    def __init__(self, path: Path, every: int) -> None:
        self.path = Path(path)
        self.every = max(int(every), 1)

    def load(self, device: torch.device) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            return torch.load(self.path, map_location=device, weights_only=False)
        except Exception:       # a checkpoint cut short by a kill: start the trial afresh
            return None

    def save(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def remove(self) -> None:
        if self.path.exists():
            self.path.unlink()
        try:
            self.path.parent.rmdir()
        except OSError:
            pass


def _raise_oom(describe: str, epoch: int, cfg: dict, err: BaseException):
    raise TrainingError(f"{describe}: out of device memory while training at epoch {epoch}; "
                        f"lower the batch size (--set batch_size={max(cfg['batch_size'] // 2, 1)}) "
                        "or run on a larger device or on --device cpu") from err


class EpochSums:
    """A training epoch's loss and loss parts, summed over its steps on the device: one
    host-device sync per epoch, not per step."""

    def __init__(self) -> None:
        self.loss: torch.Tensor | None = None
        self.parts: dict[str, Any] = {}
        self.steps = 0

    def add(self, loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        self.loss = loss.detach() if self.loss is None else self.loss + loss.detach()
        for key, value in parts.items():
            self.parts[key] = self.parts.get(key, 0.0) + value.detach()
        self.steps += 1


class TrialProgress:
    """One trial's bookkeeping across epochs: evaluations on the protocol's schedule, the best
    state so far, the learning curves and, at the end, the reported test evaluations. Shared by
    ``train`` and the seed-batched trainer, which keeps one per seed."""

    def __init__(self, model: Model, dataset: MultiBehaviorDataset, cfg: dict, protocol: str,
                 device: torch.device, epochs: int, eval_kwargs: dict | None = None) -> None:
        if protocol not in PROTOCOLS:
            raise TrainingError(f"unknown protocol '{protocol}'; choose one of {PROTOCOLS}")
        self.model, self.dataset, self.cfg = model, dataset, cfg
        self.protocol, self.device, self.epochs = protocol, device, epochs
        self.final_kwargs = dict(eval_kwargs or {})
        self.ks = self.final_kwargs.get("ks", (10,))
        self.outcome = TrainOutcome(reported={}, selected_epoch={})
        self.test_epochs = paper_test_epochs(cfg) if protocol == "paper" else set()
        self.best_value, self.best_epoch, self.best_state = -math.inf, -1, None
        self.bad_checks, self.stopped = 0, False

    def run_eval(self, split: str, full: bool = False) -> dict[str, EvalResult]:
        started = time.perf_counter()
        kwargs = self.final_kwargs if full else {"ks": tuple(sorted(set(self.ks) | {10})),
                                                 "protocols": ("full",), "rules": ("default",)}
        results = evaluate_all(self.model.scorer(), self.dataset, split=split, device=self.device,
                               **kwargs)
        self.outcome.seconds_evaluating += time.perf_counter() - started
        return results

    def end_epoch(self, epoch: int, sums: EpochSums, seconds: float,
                  describe: str = "") -> dict[str, Any]:
        """Record a trained epoch, evaluate it if the schedule says so, and return its curve
        point."""
        steps = max(sums.steps, 1)
        total = float(sums.loss) if sums.loss is not None else 0.0
        if not math.isfinite(total):
            raise TrainingError(f"{describe}: non-finite training loss ({total}) at epoch {epoch}; "
                                "lower 'lr' (--set lr=...) or check the data")
        self.outcome.seconds_training += seconds
        point: dict[str, Any] = {"epoch": epoch, "loss": total / steps,
                                 "parts": {k: float(v) / steps for k, v in sums.parts.items()},
                                 "seconds": round(seconds, 4)}
        self.outcome.epochs_run = epoch + 1
        check = None
        if self.protocol == "paper" and epoch in self.test_epochs:
            check = ("test", self.run_eval("test"))
        elif self.protocol == "honest" and (epoch + 1) % self.cfg["eval_every"] == 0:
            check = ("valid", self.run_eval("valid"))
        if check is not None:
            split, results = check
            point[split] = results["full/default"].metrics
            value = _selection_value(results)
            # paper: ties go to the later epoch, as the reference code's `best_HR <= HR`
            improved = value >= self.best_value if self.protocol == "paper" else value > self.best_value
            if improved:
                self.best_value, self.best_epoch = value, epoch
                self.best_state = copy.deepcopy(self.model.state_dict())
                self.bad_checks = 0
            else:
                self.bad_checks += 1
        self.outcome.curves.append(point)
        self.stopped = self.protocol == "honest" and self.bad_checks >= self.cfg["patience"]
        return point

    def state(self) -> dict[str, Any]:
        return {"best_value": self.best_value, "best_epoch": self.best_epoch,
                "best_state": self.best_state, "bad_checks": self.bad_checks,
                "curves": self.outcome.curves, "stopped": self.stopped,
                "seconds_training": self.outcome.seconds_training,
                "seconds_evaluating": self.outcome.seconds_evaluating}

    def restore(self, saved: dict[str, Any]) -> int:
        """Continue from a checkpoint's state; returns the first epoch still to train."""
        self.best_value, self.best_epoch = saved["best_value"], saved["best_epoch"]
        self.best_state, self.bad_checks = saved["best_state"], saved["bad_checks"]
        self.stopped = saved.get("stopped", False)
        first_epoch = saved["epoch"] + 1
        self.outcome.curves = saved["curves"]
        self.outcome.seconds_training = saved["seconds_training"]
        self.outcome.seconds_evaluating = saved["seconds_evaluating"]
        self.outcome.epochs_run = first_epoch
        self.outcome.resumed_from = first_epoch
        return first_epoch

    def finish(self) -> TrainOutcome:
        """The reported test evaluations: best-on-test and last (paper), or the
        validation-selected weights once (honest)."""
        outcome, model = self.outcome, self.model
        if self.protocol == "paper":
            last = self.run_eval("test", full=True)
            outcome.reported["last"] = last
            outcome.selected_epoch["last"] = self.epochs
            outcome.curves.append({"epoch": self.epochs, "test": last["full/default"].metrics})
            if _selection_value(last) >= self.best_value:
                outcome.reported["best_test"] = last
                outcome.selected_epoch["best_test"] = self.epochs
            else:
                model.load_state_dict(self.best_state)
                outcome.reported["best_test"] = self.run_eval("test", full=True)
                outcome.selected_epoch["best_test"] = self.best_epoch
        else:
            best_epoch = self.best_epoch
            if self.best_state is not None:
                model.load_state_dict(self.best_state)
            else:   # never checked on validation (no training, or fewer epochs than eval_every)
                best_epoch = outcome.epochs_run - 1
            outcome.reported["valid"] = self.run_eval("valid", full=True)
            outcome.reported["valid_selected"] = self.run_eval("test", full=True)
            outcome.selected_epoch["valid_selected"] = best_epoch
            outcome.selected_epoch["valid"] = best_epoch
        return outcome


def train(model: Model, dataset: MultiBehaviorDataset, cfg: dict, protocol: str,
          sampling: torch.Generator, device: torch.device, describe: str = "",
          eval_kwargs: dict | None = None,
          on_epoch: Callable[[dict], None] | None = None,
          checkpoint: Checkpoint | None = None) -> TrainOutcome:
    """Train ``model`` under ``protocol`` and return its reported test evaluations.

    ``eval_kwargs`` go to ``evaluate_all`` for the reported evaluations (protocols, ks, ...);
    evaluations during training use the full-ranking protocol only. With ``checkpoint``, the state
    is saved every ``checkpoint.every`` epochs and a saved state is resumed."""
    sampler = make_sampler(model, dataset, cfg, device)
    epochs = cfg["epochs"] if sampler is not None else 0
    progress = TrialProgress(model, dataset, cfg, protocol, device, epochs, eval_kwargs)
    opt = schedule = None
    if sampler is not None:
        opt, schedule = make_optimizer(model, cfg, sampler.steps_per_epoch(), dataset.n_users)
    first_epoch = 0

    saved = checkpoint.load(device) if checkpoint is not None and sampler is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        sampling.set_state(saved["sampling"].to(sampling.device) if sampling.device.type != "cpu"
                           else saved["sampling"].cpu())
        torch.set_rng_state(saved["torch_rng"].cpu())
        first_epoch = progress.restore(saved)

    for epoch in range(first_epoch, epochs):
        if progress.stopped:
            break
        started = time.perf_counter()
        model.train()
        sums = EpochSums()
        try:
            for batch in sampler.epoch(sampling):
                loss, parts = model.loss(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                sums.add(loss, parts)
        except torch.cuda.OutOfMemoryError as err:
            _raise_oom(describe, epoch, cfg, err)
        point = progress.end_epoch(epoch, sums, time.perf_counter() - started, describe)
        if on_epoch:
            on_epoch(point)
        if checkpoint is not None and ((epoch + 1) % checkpoint.every == 0 or progress.stopped):
            checkpoint.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "schedule": schedule.state_dict(), "sampling": sampling.get_state(),
                             "torch_rng": torch.get_rng_state(), "epoch": epoch,
                             **progress.state()})
    return progress.finish()
