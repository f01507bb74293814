"""Progress bars of `bench run`: a long epoch shows its steps and its evaluation; a resumed trial's
bar starts at the epoch it resumes from and says so."""
from __future__ import annotations

from bench.commands.run import TrialBars
from bench.runner import Trial


def _trial(epochs: int = 10) -> Trial:
    config = {"params": {"epochs": epochs}}
    return Trial("copf", "taobao", "paper", 0, config, "abc")


def test_a_resumed_trial_starts_at_its_epoch_and_says_so():
    bars = TrialBars([_trial()])
    bars.on_progress("resumed", 3, 10)
    assert bars.epochs.n == 3 and "resumed from epoch 3" in bars.epochs.desc
    bars.on_epoch(0, {"epoch": 3, "loss": 0.5})
    assert bars.epochs.n == 4
    bars.close()


def test_a_long_epoch_shows_its_steps_and_evaluation(monkeypatch):
    monkeypatch.setattr(TrialBars, "LONG_EPOCH_SECONDS", 0.0)
    bars = TrialBars([_trial()])
    bars.on_progress("steps", 1, 61)
    bars.on_progress("steps", 30, 61)
    assert bars.steps is not None and bars.steps.n == 30 and bars.steps.total == 61
    bars.on_progress("evaluate", 0, 1)
    assert "evaluating" in bars.steps.desc
    bars.on_progress("evaluate", 1, 1)
    bars.on_progress("steps", 1, 61)              # the next epoch starts the step bar again
    assert bars.steps.n == 1 and "steps" in bars.steps.desc
    bars.close()


def test_a_short_epoch_keeps_to_the_epoch_bar():
    bars = TrialBars([_trial()])
    for done in range(1, 5):
        bars.on_progress("steps", done, 4)
    assert bars.steps is None
    bars.close()
