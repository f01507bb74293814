"""The training loop and the two protocols (paper: best-on-test over the reference schedule plus the
last epoch; honest: validation-selected epoch with early stopping, test evaluated once)."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import TrainingError
from bench.evaluate import EvalResult, evaluate
from bench.models.base import Model
from bench.train.samplers import make_sampler

SELECT_METRIC = "HR@10"


@dataclass
class TrainOutcome:
    """What a trial produced: the reported evaluations and the learning curves."""

    reported: dict[str, EvalResult]          # selection name -> test evaluation
    selected_epoch: dict[str, int]
    curves: list[dict[str, Any]] = field(default_factory=list)
    epochs_run: int = 0
    seconds_training: float = 0.0
    seconds_evaluating: float = 0.0


def make_optimizer(model: Model, cfg: dict, steps_per_epoch: int, n_users: int):
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


def train(model: Model, dataset: MultiBehaviorDataset, cfg: dict, protocol: str,
          sampling: torch.Generator, device: torch.device, describe: str = "",
          eval_kwargs: dict | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> TrainOutcome:
    """Train ``model`` under ``protocol`` ('paper' or 'honest') and evaluate it on test.

    For 'honest', ``dataset`` must already carry the validation split (its holdout removed from
    training)."""
    eval_kwargs = dict(eval_kwargs or {})
    sampler = make_sampler(model, dataset, cfg, device)
    epochs = cfg["epochs"] if sampler is not None else 0
    outcome = TrainOutcome(reported={}, selected_epoch={})
    if sampler is not None:
        opt, schedule = make_optimizer(model, cfg, sampler.steps_per_epoch(), dataset.n_users)
    test_epochs = paper_test_epochs(cfg) if protocol == "paper" else set()
    best: tuple[float, int, EvalResult | None, dict | None] = (-math.inf, -1, None, None)
    bad_checks = 0

    def run_eval(split: str) -> EvalResult:
        started = time.perf_counter()
        result = evaluate(model.scorer(), dataset, split=split, device=device, **eval_kwargs)
        outcome.seconds_evaluating += time.perf_counter() - started
        return result

    for epoch in range(epochs):
        started = time.perf_counter()
        model.train()
        total, steps, parts_sum = 0.0, 0, {}
        loss_log = []
        for batch in sampler.epoch(sampling):
            loss, parts = model.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            loss_log.append(loss.detach())
            for key, value in parts.items():
                parts_sum[key] = parts_sum.get(key, 0.0) + value.detach()
            steps += 1
        # one host-device sync per epoch, not per step
        total = float(torch.stack(loss_log).sum()) if loss_log else 0.0
        if not math.isfinite(total):
            raise TrainingError(f"{describe}: non-finite training loss at epoch {epoch} "
                                f"({total}); lower 'lr' or check the data")
        outcome.seconds_training += time.perf_counter() - started
        point: dict[str, Any] = {"epoch": epoch, "loss": total / max(steps, 1),
                                 "parts": {k: float(v) / max(steps, 1) for k, v in parts_sum.items()},
                                 "seconds": time.perf_counter() - started}
        outcome.epochs_run = epoch + 1
        if protocol == "paper" and epoch in test_epochs:
            result = run_eval("test")
            point["test"] = result.metrics
            if result.metrics.get(SELECT_METRIC, -math.inf) >= best[0]:   # ties: later epoch
                best = (result.metrics[SELECT_METRIC], epoch, result, None)
        elif protocol == "honest" and (epoch + 1) % cfg["eval_every"] == 0:
            result = run_eval("valid")
            point["valid"] = result.metrics
            if result.metrics[SELECT_METRIC] > best[0]:
                best = (result.metrics[SELECT_METRIC], epoch, result,
                        copy.deepcopy(model.state_dict()))
                bad_checks = 0
            else:
                bad_checks += 1
        outcome.curves.append(point)
        if on_epoch:
            on_epoch(point)
        if protocol == "honest" and bad_checks >= cfg["patience"]:
            break

    final = run_eval("test") if protocol == "paper" else None
    if protocol == "paper":
        outcome.reported["last"] = final
        outcome.selected_epoch["last"] = epochs
        if final.metrics.get(SELECT_METRIC, -math.inf) >= best[0]:
            best = (final.metrics[SELECT_METRIC], epochs, final, None)
        outcome.reported["best_test"] = best[2]
        outcome.selected_epoch["best_test"] = best[1]
        outcome.curves.append({"epoch": epochs, "test": final.metrics})
    else:
        if best[3] is not None:
            model.load_state_dict(best[3])
        else:   # never evaluated on validation (no training, or fewer epochs than eval_every)
            valid = run_eval("valid")
            best = (valid.metrics[SELECT_METRIC], outcome.epochs_run - 1, valid, None)
        outcome.reported["valid_selected"] = run_eval("test")
        outcome.selected_epoch["valid_selected"] = best[1]
        outcome.reported["valid"] = best[2]
    return outcome
