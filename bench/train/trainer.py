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
from typing import Any, Callable

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


def make_optimizer(model: Model, cfg: dict, steps_per_epoch: int, n_users: int):
    """Adam with the TF family's staircase decay per optimizer step:
    lr * lr_decay ** floor(step / decay_steps), decay_steps defaulting to users // batch_size."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg["lr"])
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


def train(model: Model, dataset: MultiBehaviorDataset, cfg: dict, protocol: str,
          sampling: torch.Generator, device: torch.device, describe: str = "",
          eval_kwargs: dict | None = None,
          on_epoch: Callable[[dict], None] | None = None,
          checkpoint: Checkpoint | None = None) -> TrainOutcome:
    """Train ``model`` under ``protocol`` and return its reported test evaluations.

    ``eval_kwargs`` go to ``evaluate_all`` for the reported evaluations (protocols, ks, ...);
    evaluations during training use the full-ranking protocol only. With ``checkpoint``, the state
    is saved every ``checkpoint.every`` epochs and a saved state is resumed."""
    if protocol not in PROTOCOLS:
        raise TrainingError(f"unknown protocol '{protocol}'; choose one of {PROTOCOLS}")
    final_kwargs = dict(eval_kwargs or {})
    ks = final_kwargs.get("ks", (10,))
    sampler = make_sampler(model, dataset, cfg, device)
    epochs = cfg["epochs"] if sampler is not None else 0
    outcome = TrainOutcome(reported={}, selected_epoch={})
    opt = schedule = None
    if sampler is not None:
        opt, schedule = make_optimizer(model, cfg, sampler.steps_per_epoch(), dataset.n_users)
    test_epochs = paper_test_epochs(cfg) if protocol == "paper" else set()
    best_value, best_epoch, best_state = -math.inf, -1, None
    bad_checks, first_epoch = 0, 0

    saved = checkpoint.load(device) if checkpoint is not None and sampler is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        sampling.set_state(saved["sampling"].to(sampling.device) if sampling.device.type != "cpu"
                           else saved["sampling"].cpu())
        torch.set_rng_state(saved["torch_rng"].cpu())
        best_value, best_epoch, best_state = saved["best_value"], saved["best_epoch"], saved["best_state"]
        bad_checks, first_epoch = saved["bad_checks"], saved["epoch"] + 1
        outcome.curves = saved["curves"]
        outcome.seconds_training = saved["seconds_training"]
        outcome.seconds_evaluating = saved["seconds_evaluating"]
        outcome.epochs_run = first_epoch
        outcome.resumed_from = first_epoch

    def run_eval(split: str, full: bool = False) -> dict[str, EvalResult]:
        started = time.perf_counter()
        kwargs = final_kwargs if full else {"ks": tuple(sorted(set(ks) | {10})),
                                             "protocols": ("full",), "rules": ("default",)}
        results = evaluate_all(model.scorer(), dataset, split=split, device=device, **kwargs)
        outcome.seconds_evaluating += time.perf_counter() - started
        return results

    stopped = saved is not None and saved.get("stopped", False)
    for epoch in range(first_epoch, epochs):
        if stopped:
            break
        started = time.perf_counter()
        model.train()
        steps, parts_sum, loss_sum = 0, {}, None
        try:
            for batch in sampler.epoch(sampling):
                loss, parts = model.loss(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                # accumulate on the device: one host-device sync per epoch, not per step
                loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
                for key, value in parts.items():
                    parts_sum[key] = parts_sum.get(key, 0.0) + value.detach()
                steps += 1
        except torch.cuda.OutOfMemoryError as err:
            _raise_oom(describe, epoch, cfg, err)
        total = float(loss_sum) if loss_sum is not None else 0.0
        if not math.isfinite(total):
            raise TrainingError(f"{describe}: non-finite training loss ({total}) at epoch {epoch}; "
                                "lower 'lr' (--set lr=...) or check the data")
        outcome.seconds_training += time.perf_counter() - started
        point: dict[str, Any] = {"epoch": epoch, "loss": total / max(steps, 1),
                                 "parts": {k: float(v) / max(steps, 1) for k, v in parts_sum.items()},
                                 "seconds": round(time.perf_counter() - started, 4)}
        outcome.epochs_run = epoch + 1
        check = None
        if protocol == "paper" and epoch in test_epochs:
            check = ("test", run_eval("test"))
        elif protocol == "honest" and (epoch + 1) % cfg["eval_every"] == 0:
            check = ("valid", run_eval("valid"))
        if check is not None:
            split, results = check
            point[split] = results["full/default"].metrics
            value = _selection_value(results)
            # paper: ties go to the later epoch, as the reference code's `best_HR <= HR`
            improved = value >= best_value if protocol == "paper" else value > best_value
            if improved:
                best_value, best_epoch = value, epoch
                best_state = copy.deepcopy(model.state_dict())
                bad_checks = 0
            else:
                bad_checks += 1
        outcome.curves.append(point)
        if on_epoch:
            on_epoch(point)
        stopped = protocol == "honest" and bad_checks >= cfg["patience"]
        if checkpoint is not None and ((epoch + 1) % checkpoint.every == 0 or stopped):
            checkpoint.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "schedule": schedule.state_dict(), "sampling": sampling.get_state(),
                             "torch_rng": torch.get_rng_state(), "epoch": epoch,
                             "best_value": best_value, "best_epoch": best_epoch,
                             "best_state": best_state, "bad_checks": bad_checks,
                             "curves": outcome.curves, "stopped": stopped,
                             "seconds_training": outcome.seconds_training,
                             "seconds_evaluating": outcome.seconds_evaluating})

    if protocol == "paper":
        last = run_eval("test", full=True)
        outcome.reported["last"] = last
        outcome.selected_epoch["last"] = epochs
        outcome.curves.append({"epoch": epochs, "test": last["full/default"].metrics})
        if _selection_value(last) >= best_value:
            outcome.reported["best_test"] = last
            outcome.selected_epoch["best_test"] = epochs
        else:
            model.load_state_dict(best_state)
            outcome.reported["best_test"] = run_eval("test", full=True)
            outcome.selected_epoch["best_test"] = best_epoch
    else:
        if best_state is not None:
            model.load_state_dict(best_state)
        else:   # never checked on validation (no training, or fewer epochs than eval_every)
            best_epoch = outcome.epochs_run - 1
        outcome.reported["valid"] = run_eval("valid", full=True)
        outcome.reported["valid_selected"] = run_eval("test", full=True)
        outcome.selected_epoch["valid_selected"] = best_epoch
        outcome.selected_epoch["valid"] = best_epoch
    return outcome
