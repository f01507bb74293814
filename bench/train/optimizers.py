"""The update rule a trial's ``optimizer`` names, built over a batch's flat parameters.

The Adam forms live in ``bench.train.optim`` (part of every model's code version); the forms only
some releases use live in their own modules, which those models name in ``code_modules``:
``adagrad-tf1`` (``bench.train.adagrad``, NMTR) and ``adamw`` (``bench.train.adamw``, CML).
"""
from __future__ import annotations

from typing import Any

import torch

from bench.train.adagrad import ADAGRAD_FORMS, TF1_INITIAL_ACCUMULATOR, FlatAdagrad
from bench.train.adamw import ADAMW_FORMS, FlatAdamW
from bench.train.optim import FlatAdam


def build_optimizer(flat: torch.Tensor, lr: torch.Tensor, lr_decay: torch.Tensor,
                    decay_steps: int, cfg: dict[str, Any]):
    """FlatAdam, FlatAdagrad or FlatAdamW over ``flat``, as ``cfg["optimizer"]`` says."""
    form = cfg["optimizer"]
    if form in ADAMW_FORMS:
        return FlatAdamW(flat, lr, lr_decay, decay_steps, cfg.get("weight_decay", 0.0),
                         cfg.get("clip_norm", 0.0), cfg.get("cyclic_max_lr", 0.0),
                         cfg.get("cyclic_epochs", (1, 1)))
    if form in ADAGRAD_FORMS:
        return FlatAdagrad(flat, lr, lr_decay, decay_steps,
                           cfg.get("initial_accumulator", TF1_INITIAL_ACCUMULATOR))
    return FlatAdam(flat, lr, lr_decay, decay_steps, form)
