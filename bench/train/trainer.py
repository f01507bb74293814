"""The one training loop: S >= 1 members (runs) of one structure trained together, and the two
protocols. A plain run is a batch of one member.

``paper``: train on the paper's data; evaluate test on the reference schedule and report both the
best-on-test epoch (test-set selection, as the reference code reports) and the last epoch.
``honest``: the dataset carries a validation split removed from training; select the epoch on
validation with early stopping and evaluate the test set once, with the selected weights. A member
that stops early keeps being updated with the others (their computation is one), but nothing of it
is recorded after its stop: it ends as it would have ended alone.

A step (sampling, every member's loss, backward, the Adam update, the epoch's loss sums) runs on the
device without reading a host value; the host reads the loss sums once per epoch. On a CUDA device
the step is captured once as a CUDA graph and replayed (``cuda_graphs``), and captured again only
when the sampler's shapes grow.
"""
from __future__ import annotations

import copy
import io
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.errors import ConfigError, TrainingError
from bench.evaluate import EvalResult, evaluate_all
from bench.models.base import Model
from bench.records import atomic_write_bytes
from bench.train import streams
from bench.train.members import MemberBatch
from bench.train.optimizers import build_optimizer
from bench.train.samplers import Sampler, make_sampler

SELECT_ON = ("full/default", "HR@10")
PROTOCOLS = ("paper", "honest")
CUDA_GRAPH_MODES = ("auto", "off")
CHECKPOINT_FORMAT = 2
# Progress callback: (what, done, total) with what "steps" (within an epoch), "evaluate" (0 of 1
# when an evaluation starts, 1 of 1 when it ends) or "resumed" (done = the epoch training resumes
# at, total = the epochs).
ProgressFn = Callable[[str, int, int], None]


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


@dataclass
class Member:
    """One run of a batch: its built model, resolved configuration, sampling seed and evaluation
    settings (``evaluate_all`` keywords: protocols, ks, seed, ...)."""

    model: Model
    cfg: dict[str, Any]
    sampling_seed: int
    eval_kwargs: dict[str, Any] | None = None
    describe: str = ""


def paper_test_epochs(cfg: dict) -> set[int]:
    """Epochs (0-based, after training that epoch) at which the paper protocol evaluates test."""
    n = cfg["epochs"]
    if cfg["eval_schedule"] == "copf":
        return {ep for ep in range(n) if ep % 3 == 0 and (ep > 90 or ep < 2)}
    if cfg["eval_schedule"] == "every":
        return {ep for ep in range(n) if ep % cfg["eval_every"] == 0}
    return set()


def decay_steps(cfg: dict, n_users: int) -> int:
    """Optimizer steps per learning-rate decay: ``decay_steps``, or the TF family's
    users // batch_size."""
    return cfg["decay_steps"] or max(1, n_users // cfg["batch_size"])


def _selection_value(results: dict[str, EvalResult]) -> float:
    label, metric = SELECT_ON
    return results[label].metrics[metric]


class Checkpoint:
    """Saves and restores a batch's training state in the results' scratch area.

    The state holds only tensors and plain values (parameters, Adam's moments, the step counter,
    the sampler's slot counts, each member's curves and best state) and loads with
    ``torch.load(weights_only=True)``: a file planted there cannot run code. A file that does not
    load that way is refused with a message naming it, moved aside (never deleted) and the batch
    starts afresh. Random draws are hashes of the step counter, so resuming gives the same numbers
    on CPU as an uninterrupted run."""

    def __init__(self, path: Path, every: int) -> None:
        self.path = Path(path)
        self.every = max(int(every), 1)

    def load(self, device: torch.device) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location=device, weights_only=True)
            if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"not a format-{CHECKPOINT_FORMAT} checkpoint of this suite")
            return state
        except Exception as err:   # cut short by a kill, planted, or from another version
            aside = self.path.with_name(f"{self.path.name}.refused-{time.strftime('%Y%m%dT%H%M%S')}")
            try:
                self.path.replace(aside)
                where = f"moved aside to {aside}"
            except OSError as move_err:
                where = f"could not be moved aside ({move_err})"
            print(f"warning: checkpoint {self.path} was refused ({type(err).__name__}: "
                  f"{str(err).splitlines()[0][:200] if str(err) else 'unreadable'}); it was {where} "
                  "and the trial starts from scratch", file=sys.stderr)
            return None

    def save(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
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
                        f"lower the batch size (--set batch_size={max(cfg['batch_size'] // 2, 1)}), "
                        "train fewer members at once, or run on a larger device or on --device cpu"
                        ) from err


class EpochSums:
    """Each member's training loss and loss parts summed over an epoch's steps, in device buffers
    updated in place (a captured step keeps writing the same memory); the host reads them once per
    epoch."""

    def __init__(self, members: int, device: torch.device) -> None:
        self.loss = torch.zeros(members, device=device)
        self.parts: dict[str, torch.Tensor] = {}
        self.steps = 0

    @torch.no_grad()
    def add(self, totals: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        self.loss.add_(totals.detach())
        for key, value in parts.items():
            if key not in self.parts:
                self.parts[key] = torch.zeros_like(self.loss)
            self.parts[key].add_(value.detach())

    @torch.no_grad()
    def zero_(self) -> None:
        self.loss.zero_()
        for value in self.parts.values():
            value.zero_()
        self.steps = 0

    def read(self) -> tuple[list[float], dict[str, list[float]]]:
        """Host copies of the sums (one synchronization)."""
        names = list(self.parts)
        stacked = torch.stack([self.loss] + [self.parts[k] for k in names]).cpu()
        return stacked[0].tolist(), {k: stacked[i + 1].tolist() for i, k in enumerate(names)}


class TrialProgress:
    """One member's bookkeeping across epochs: evaluations on the protocol's schedule, the best
    state so far, the learning curves and, at the end, the reported test evaluations."""

    def __init__(self, model: Model, dataset: MultiBehaviorDataset, cfg: dict, protocol: str,
                 device: torch.device, epochs: int, eval_kwargs: dict | None = None,
                 on_progress: ProgressFn | None = None) -> None:
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
        self.on_progress = on_progress

    def run_eval(self, split: str, full: bool = False) -> dict[str, EvalResult]:
        started = time.perf_counter()
        if self.on_progress:
            self.on_progress("evaluate", 0, 1)
        kwargs = self.final_kwargs if full else {"ks": tuple(sorted(set(self.ks) | {10})),
                                                 "protocols": ("full",), "rules": ("default",)}
        results = evaluate_all(self.model.scorer(), self.dataset, split=split, device=self.device,
                               **kwargs)
        self.outcome.seconds_evaluating += time.perf_counter() - started
        if self.on_progress:
            self.on_progress("evaluate", 1, 1)
        return results

    def end_epoch(self, epoch: int, loss: float, parts: dict[str, float], steps: int,
                  seconds: float, describe: str = "") -> dict[str, Any]:
        """Record a trained epoch, evaluate it if the schedule says so, and return its curve
        point."""
        steps = max(steps, 1)
        if not math.isfinite(loss):
            raise TrainingError(f"{describe}: non-finite training loss ({loss}) at epoch {epoch}; "
                                "lower 'lr' (--set lr=...) or check the data")
        self.outcome.seconds_training += seconds
        point: dict[str, Any] = {"epoch": epoch, "loss": loss / steps,
                                 "parts": {k: v / steps for k, v in parts.items()},
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
                "epochs_run": self.outcome.epochs_run,
                "seconds_training": self.outcome.seconds_training,
                "seconds_evaluating": self.outcome.seconds_evaluating}

    def restore(self, saved: dict[str, Any], first_epoch: int) -> None:
        """Continue from a checkpoint's state (training resumes at ``first_epoch``)."""
        self.best_value, self.best_epoch = saved["best_value"], saved["best_epoch"]
        self.best_state, self.bad_checks = saved["best_state"], saved["bad_checks"]
        self.stopped = saved.get("stopped", False)
        self.outcome.curves = saved["curves"]
        self.outcome.seconds_training = saved["seconds_training"]
        self.outcome.seconds_evaluating = saved["seconds_evaluating"]
        self.outcome.epochs_run = saved.get("epochs_run", first_epoch)
        self.outcome.resumed_from = first_epoch

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


class StepCounters:
    """The step within the epoch and the step since training began, as device scalars: the
    sampler and the random streams read them, the step advances them in place."""

    def __init__(self, device: torch.device) -> None:
        self.step = torch.zeros((), dtype=torch.int64, device=device)
        self.global_step = torch.zeros((), dtype=torch.int64, device=device)

    @torch.no_grad()
    def advance(self) -> None:
        self.step.add_(1)
        self.global_step.add_(1)


class StepRunner:
    """Runs the training step eagerly, or on CUDA as a captured graph replayed each step.

    Capture follows PyTorch's whole-network recipe: two warm-up steps on a side stream (lazy
    library initialization happens outside the capture), then the capture. The warm-up steps
    change the training state, so the state is saved before and restored after them: captured
    training makes the same updates as eager training. A capture that fails falls back to eager
    steps with a message."""

    def __init__(self, step: Callable[[], None], device: torch.device, mode: str,
                 state: Callable[[], list[torch.Tensor]], describe: str = "") -> None:
        if mode not in CUDA_GRAPH_MODES:
            raise ConfigError(f"unknown --cuda-graphs '{mode}'; choose one of {CUDA_GRAPH_MODES}")
        self.step, self.state, self.describe = step, state, describe
        self.enabled = mode == "auto" and device.type == "cuda"
        self.graph: Any = None
        self.captures = 0
        self.fallback_reason = ""

    @property
    def active(self) -> bool:
        return self.enabled and not self.fallback_reason

    def reset(self) -> None:
        """Forget the captured graph (shapes changed): the next step captures again."""
        self.graph = None

    def __call__(self) -> None:
        if not self.active:
            self.step()
            return
        if self.graph is None:
            self._capture()
            if self.graph is None:
                self.step()
                return
        self.graph.replay()

    def _capture(self) -> None:
        saved = {id(t): t.detach().clone() for t in self.state()}
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.step()
            torch.cuda.current_stream().wait_stream(side)
            self._restore(saved)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.step()
            self.graph = graph
            self.captures += 1
        except Exception as err:          # any capture problem: train eagerly instead
            torch.cuda.synchronize()
            self._restore(saved)
            self.graph = None
            self.fallback_reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            print(f"note: {self.describe}: CUDA graph capture failed ({self.fallback_reason}); "
                  "training without CUDA graphs (--cuda-graphs off skips the attempt)",
                  file=sys.stderr)

    @torch.no_grad()
    def _restore(self, saved: dict[int, torch.Tensor]) -> None:
        """Every tensor back to its saved value; one the warm-up created (a loss part's sum)
        back to zero, where it would have started."""
        for tensor in self.state():
            if id(tensor) in saved:
                tensor.copy_(saved[id(tensor)])
            else:
                tensor.zero_()


class BatchTrainer:
    """The state of one batch's training: members, sampler, Adam, counters and the step."""

    def __init__(self, members: Sequence[Member], dataset: MultiBehaviorDataset,
                 sampler: Sampler, device: torch.device, cuda_graphs: str,
                 describe: str, template: Model | None = None) -> None:
        self.members, self.sampler, self.device = list(members), sampler, device
        cfg = self.members[0].cfg
        self.engine = MemberBatch([m.model for m in self.members], template)
        lr = torch.tensor([m.cfg["lr"] for m in self.members], device=device)
        decay = torch.tensor([m.cfg["lr_decay"] for m in self.members], device=device)
        self.optimizer = build_optimizer(self.engine.flat, lr, decay,
                                         decay_steps(cfg, dataset.n_users), cfg)
        self.counters = StepCounters(device)
        self.sums = EpochSums(len(self.members), device)
        self.runner = StepRunner(self.step, device, cuda_graphs, self.mutable_state, describe)

    def planners(self) -> list:
        """The template's components that plan each epoch's shapes (``plan_epoch(sampler,
        epoch) -> bool``, ``plan_state()``, ``restore_plan(state)``): e.g. COPF's decoder sizes
        its contrastive loss's item rows for the epoch's batches."""
        template = self.engine.template
        return [part for part in (template.encoder, template.decoder)
                if callable(getattr(part, "plan_epoch", None))]

    def start_epoch(self, epoch: int) -> None:
        """Prepare an epoch: the sampler's order and slot counts, the model's plans; a shape that
        grew makes the captured step be captured again."""
        changed = self.sampler.start_epoch(epoch)
        if callable(getattr(self.optimizer, "start_epoch", None)):
            self.optimizer.start_epoch(epoch)      # an epoch schedule (adamw's CyclicLR)
        for part in self.planners():
            changed = bool(part.plan_epoch(self.sampler, epoch)) or changed
        if changed:
            self.runner.reset()
        self.sums.zero_()
        self.counters.step.zero_()

    def step(self) -> None:
        """One training step of every member, entirely on the device."""
        batch = self.sampler.batch(self.counters.step, self.counters.global_step)
        totals, parts = self.engine.losses(batch)
        self.engine.flat.grad = None
        if self.engine.flat.requires_grad:
            totals.sum().backward()
        self.optimizer.step()
        self.sums.add(totals, parts)
        self.counters.advance()

    def mutable_state(self) -> list[torch.Tensor]:
        """Every tensor a step changes (saved around the CUDA graph warm-up)."""
        return [self.engine.flat, *self.optimizer.state().values(), *self.engine.stacked.values(),
                self.counters.step, self.counters.global_step, self.sums.loss,
                *self.sums.parts.values()]

    def checkpoint_state(self, epoch: int, progresses: Sequence[TrialProgress],
                         failures: Sequence[str | None]) -> dict[str, Any]:
        return {"epoch": epoch, "flat": self.engine.flat.detach(),
                "optimizer": self.optimizer.state(), "global_step": self.counters.global_step,
                "sampler": self.sampler.state(), "members": [p.state() for p in progresses],
                "plans": [part.plan_state() for part in self.planners()],
                "buffers": dict(self.engine.stacked),
                "failures": list(failures), "members_count": len(self.members)}

    @torch.no_grad()
    def restore(self, saved: dict[str, Any]) -> None:
        self.engine.flat.copy_(saved["flat"])
        self.optimizer.restore(saved["optimizer"])
        self.counters.global_step.copy_(saved["global_step"])
        self.sampler.restore(saved["sampler"])
        for name, value in saved.get("buffers", {}).items():
            self.engine.stacked[name].copy_(value)     # buffers a loss updates (cml's phi)
        for part, state in zip(self.planners(), saved.get("plans", [])):
            part.restore_plan(state)
        self.engine.sync_models()


def train(members: Sequence[Member], dataset: MultiBehaviorDataset, protocol: str,
          device: torch.device, describe: str = "",
          on_epoch: Callable[[int, dict], None] | None = None,
          on_progress: ProgressFn | None = None, checkpoint: Checkpoint | None = None,
          cuda_graphs: str = "auto", template: Model | None = None
          ) -> tuple[list[TrainOutcome | TrainingError], dict[str, Any]]:
    """Train the members together under ``protocol``; returns each member's outcome (or the
    ``TrainingError`` that ended it: a non-finite loss stops that member only) and a description
    of the batch (members, mode, shared seconds per epoch, CUDA graphs).

    ``on_epoch(member, point)`` is called after each member's epoch; ``on_progress`` reports
    steps within an epoch and evaluations. With ``checkpoint``, the state is saved every
    ``checkpoint.every`` epochs and a saved state is resumed. ``template`` (a model built from
    the batch's structure, see ``MemberBatch``) also decides what the sampler draws."""
    if not members:
        raise TrainingError("nothing to train: no members")
    structure = members[0].model if template is None else template
    cfg = structure.cfg
    keys = streams.run_keys([m.sampling_seed for m in members], device)
    sampler = make_sampler(structure, dataset, cfg, device, keys)
    epochs = cfg["epochs"] if sampler is not None else 0
    progresses = [TrialProgress(m.model, dataset, m.cfg, protocol, device, epochs, m.eval_kwargs,
                                on_progress) for m in members]
    info: dict[str, Any] = {"members": len(members), "mode": "none", "seconds_per_epoch": 0.0}
    if sampler is None:
        return [p.finish() for p in progresses], info
    trainer = BatchTrainer(members, dataset, sampler, device, cuda_graphs, describe, template)
    info.update(mode=trainer.engine.mode, cuda_graphs=trainer.runner.enabled)
    if trainer.engine.looped_reason:
        info["looped_reason"] = trainer.engine.looped_reason
    failures: list[str | None] = [None] * len(members)
    first_epoch = 0
    saved = checkpoint.load(device) if checkpoint is not None else None
    if saved is not None and saved.get("members_count") == len(members):
        first_epoch = saved["epoch"] + 1
        trainer.restore(saved)
        failures = list(saved["failures"])
        for progress, state in zip(progresses, saved["members"]):
            progress.restore(state, first_epoch)
        info["resumed_from_epoch"] = first_epoch
        if on_progress:
            on_progress("resumed", first_epoch, epochs)
    group_seconds, trained_epochs = 0.0, 0
    steps = sampler.steps_per_epoch
    try:
        for epoch in range(first_epoch, epochs):
            active = [s for s, p in enumerate(progresses) if not p.stopped and not failures[s]]
            if not active:
                break
            started = time.perf_counter()
            trainer.start_epoch(epoch)
            for member in trainer.engine.models:
                member.train()
            for t in range(steps):
                trainer.runner()
                if on_progress:
                    on_progress("steps", t + 1, steps)
            loss, parts = trainer.sums.read()
            trainer.engine.sync_models()
            seconds = time.perf_counter() - started
            group_seconds += seconds
            trained_epochs += 1
            for s in active:
                try:
                    point = progresses[s].end_epoch(
                        epoch, loss[s], {k: v[s] for k, v in parts.items()}, steps,
                        seconds / len(members), members[s].describe or describe)
                except TrainingError as err:
                    failures[s] = str(err)
                    continue
                if on_epoch:
                    on_epoch(s, point)
            if checkpoint is not None and ((epoch + 1) % checkpoint.every == 0
                                           or all(p.stopped for p in progresses)):
                checkpoint.save(trainer.checkpoint_state(epoch, progresses, failures))
    except torch.cuda.OutOfMemoryError as err:
        _raise_oom(describe, epoch, cfg, err)
    info.update(seconds_per_epoch=round(group_seconds / max(trained_epochs, 1), 4),
                graph_captures=trainer.runner.captures)
    if trainer.runner.fallback_reason:
        info["cuda_graphs_fallback"] = trainer.runner.fallback_reason
    outcomes: list[TrainOutcome | TrainingError] = []
    for progress, failure in zip(progresses, failures):
        outcomes.append(TrainingError(failure) if failure else progress.finish())
    return outcomes, info
