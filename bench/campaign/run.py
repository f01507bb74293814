"""``bench campaign run``: train a plan's groups inside a time budget.

A group starts only when its estimate fits the time left. While it trains, its checkpoint is
asked at every epoch's end whether the next epoch can still finish (the last epoch's duration
is the guide); once it cannot, the checkpoint is written at that epoch and the campaign stops
(``BudgetReached``), so the state travels in the bundle and the next window resumes the group
(without pretraining again: ``bench.runner.run_group``).

Several groups at once on one device (``--concurrent N``, threads sharing the device) are an
option for a GPU where a measurement shows it raises throughput; it is off by default, and the
CPU, whose cores one group already uses, gains nothing from it.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from bench.campaign.plan import FITS, CampaignPlan, Group
from bench.data.dataset import MultiBehaviorDataset
from bench.records import atomic_write_bytes, record_path
from bench.runner import Attempt, attempt_group
from bench.train.trainer import Checkpoint

Clock = Callable[[], float]


class BudgetReached(BaseException):
    """The budget leaves no time for another epoch; the group's state is checkpointed.

    A BaseException, like Ctrl-C, so the runner does not note it as the trial's failure."""


class Deadline:
    """The end of the budget on a clock (``time.monotonic`` unless a test gives its own)."""

    def __init__(self, seconds: float, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.end = clock() + seconds

    def left(self) -> float:
        return self.end - self.clock()


class BudgetCheckpoint(Checkpoint):
    """A checkpoint that saves every ``every`` epochs as usual, and at the end of the epoch after
    which another epoch would overrun the deadline, then stops the group."""

    def __init__(self, path: Path, every: int, deadline: Deadline, epochs: int) -> None:
        super().__init__(path, every)
        self._interval = self.__dict__["_every"]
        self.deadline, self.epochs = deadline, epochs
        self._last = deadline.clock()
        self.stopping = False

    @property
    def every(self) -> int:
        # the trainer asks once per epoch, at its end: the time since the last question is
        # the epoch just trained
        if "deadline" not in self.__dict__:      # Checkpoint.__init__ sets it
            return self.__dict__.get("_every", 1)
        now = self.deadline.clock()
        epoch, self._last = now - self._last, now
        if self.deadline.end - now < epoch:
            self.stopping = True
            return 1
        return self._interval

    @every.setter
    def every(self, value: int) -> None:
        self.__dict__["_every"] = value

    def load(self, device: torch.device):
        # the trainer loads right before its first epoch: the models are built (and pretrained)
        # by now, so the first epoch's duration starts here
        state = super().load(device)
        self._last = self.deadline.clock()
        return state

    def save(self, state: dict) -> None:
        super().save(state)
        finished = (state["epoch"] + 1 >= self.epochs
                    or all(m.get("stopped") for m in state["members"]))
        if self.stopping and not finished:
            raise BudgetReached(f"budget reached after epoch {state['epoch'] + 1}; "
                                f"checkpoint {self.path}")


@dataclass
class CampaignOutcome:
    trained: list[str] = field(default_factory=list)       # group ids
    stopped: list[str] = field(default_factory=list)       # checkpointed at the budget
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (group id, why)
    attempts: list[Attempt] = field(default_factory=list)


def log_path(results_dir: Path) -> Path:
    return Path(results_dir) / "campaign" / "log.jsonl"


def _log(results_dir: Path, event: dict, lock: threading.Lock) -> None:
    """One line per event in ``results/campaign/log.jsonl`` (travels in the bundle)."""
    with lock:
        path = log_path(results_dir)
        before = path.read_bytes() if path.exists() else b""
        line = json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event}, default=str)
        atomic_write_bytes(path, before + line.encode() + b"\n")


def run_campaign(plan: CampaignPlan, datasets: dict[str, MultiBehaviorDataset],
                 device: torch.device, results_dir: Path, budget: float,
                 checkpoint_every: int = 5, concurrent: int = 1, cuda_graphs: str = "auto",
                 clock: Clock = time.monotonic) -> CampaignOutcome:
    """Train the plan's fitting groups in order within ``budget`` seconds."""
    deadline = Deadline(budget, clock)
    outcome = CampaignOutcome()
    lock = threading.Lock()
    _log(results_dir, {"event": "campaign", "budget_s": budget, "device": str(device),
                       "unix_time": time.time(), "groups": len(plan.fitting())}, lock)
    stop = threading.Event()
    for group in plan.groups:
        if group.verdict != FITS:
            outcome.skipped.append((group.id, group.verdict))

    def one(group: Group) -> None:
        if stop.is_set():
            outcome.skipped.append((group.id, "budget reached"))
            return
        left = deadline.left()
        if group.estimate.seconds > left:
            outcome.skipped.append((group.id, f"estimate {group.estimate.seconds:.0f} s > "
                                              f"{max(left, 0):.0f} s left"))
            return
        _log(results_dir, {"event": "start", "group": group.id, "describe": group.describe,
                           "estimate_s": round(group.estimate.seconds, 3)}, lock)
        started = clock()
        epochs = int(group.trials[0].config["params"].get("epochs", 0))
        checkpoint = lambda path, every: BudgetCheckpoint(path, every, deadline, epochs)
        try:
            attempts = attempt_group(group.trials, datasets[group.trials[0].dataset], device,
                                     results_dir, checkpoint_every=checkpoint_every,
                                     cuda_graphs=cuda_graphs, make_checkpoint=checkpoint)
        except BudgetReached as reached:
            stop.set()
            outcome.stopped.append(group.id)
            _log(results_dir, {"event": "stopped", "group": group.id, "detail": str(reached),
                               "seconds": round(clock() - started, 3)}, lock)
            return
        outcome.attempts += attempts
        outcome.trained.append(group.id)
        made = [record_path(results_dir, t.config, t.run_id) for t in group.trials]
        _log(results_dir, {"event": "done", "group": group.id,
                           "seconds": round(clock() - started, 3),
                           "statuses": [a.status for a in attempts],
                           "records": [str(p.relative_to(results_dir)) for p in made
                                       if p.exists()]}, lock)

    chosen = plan.fitting()
    if concurrent <= 1:
        for group in chosen:
            one(group)
    else:
        with ThreadPoolExecutor(concurrent) as pool:
            list(pool.map(one, chosen))
    return outcome

