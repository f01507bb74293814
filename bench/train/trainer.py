"""The training loop and the two protocols.

``paper``: train on the paper's data; evaluate test on the reference schedule and report both the
best-on-test epoch (test-set selection, as the reference code reports) and the last epoch.
``honest``: the dataset carries a validation split removed from training; select the epoch on
validation with early stopping and evaluate the test set once, with the selected weights.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import TrainingError
from bench.evaluate import EvalResult, evaluate_all
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


def train(model: Model, dataset: MultiBehaviorDataset, cfg: dict, protocol: str,
          sampling: torch.Generator, device: torch.device, describe: str = "",
          eval_kwargs: dict | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> TrainOutcome:
    """Train ``model`` under ``protocol`` and return its reported test evaluations.

    ``eval_kwargs`` go to ``evaluate_all`` for the reported evaluations (protocols, ks, ...);
    evaluations during training use the full-ranking protocol only."""
    if protocol not in PROTOCOLS:
        raise TrainingError(f"unknown protocol '{protocol}'; choose one of {PROTOCOLS}")
    final_kwargs = dict(eval_kwargs or {})
    ks = final_kwargs.get("ks", (10,))
    sampler = make_sampler(model, dataset, cfg, device)
    epochs = cfg["epochs"] if sampler is not None else 0
    outcome = TrainOutcome(reported={}, selected_epoch={})
    if sampler is not None:
        opt, schedule = make_optimizer(model, cfg, sampler.steps_per_epoch(), dataset.n_users)
    test_epochs = paper_test_epochs(cfg) if protocol == "paper" else set()
    best_value, best_epoch, best_state = -math.inf, -1, None
    bad_checks = 0

    def run_eval(split: str, full: bool = False) -> dict[str, EvalResult]:
        started = time.perf_counter()
        kwargs = final_kwargs if full else {"ks": tuple(sorted(set(ks) | {10})),
                                             "protocols": ("full",), "rules": ("default",)}
        results = evaluate_all(model.scorer(), dataset, split=split, device=device, **kwargs)
        outcome.seconds_evaluating += time.perf_counter() - started
        return results

    for epoch in range(epochs):
        started = time.perf_counter()
        model.train()
        steps, parts_sum, loss_sum = 0, {}, None
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
        if protocol == "honest" and bad_checks >= cfg["patience"]:
            break

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
