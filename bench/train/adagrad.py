"""TensorFlow 1's Adagrad (``tf.train.AdagradOptimizer``, the form the NMTR release trains with)
for a batch of S runs whose parameters are the rows of one flat [S, P] tensor.

``acc += g^2; p -= lr_t * g / sqrt(acc)``: no epsilon, the accumulator starting at
``initial_accumulator`` (TF1 requires it > 0). The learning rate follows the same staircase as
``bench.train.optim.FlatAdam``. Every quantity is a device tensor, so a step reads no host value.

It lives apart from ``bench.train.optim`` on purpose: that module is part of every model's code
version, and only the models that train with Adagrad (they name this module in their
registration's ``code_modules``) should change version with it.
"""
from __future__ import annotations

from typing import Any

import torch

from bench.errors import ConfigError
from bench.train.optim import FlatAdam

ADAGRAD_FORMS = ("adagrad-tf1",)
TF1_INITIAL_ACCUMULATOR = 0.1


class FlatAdagrad(FlatAdam):
    """Adagrad over ``flat`` ([S, P], a leaf whose ``grad`` the backward pass fills); the learning
    rate's staircase is FlatAdam's (``current_lr``)."""

    def __init__(self, flat: torch.Tensor, lr: torch.Tensor, lr_decay: torch.Tensor,
                 decay_steps: int, initial_accumulator: float = TF1_INITIAL_ACCUMULATOR) -> None:
        if not initial_accumulator > 0:
            raise ConfigError("optimizer 'adagrad-tf1' needs initial_accumulator > 0 (TensorFlow "
                              f"1 requires it), got {initial_accumulator}; set e.g. "
                              "--set initial_accumulator=0.1")
        self.flat = flat
        self.lr = lr.reshape(-1, 1).to(flat)
        self.lr_decay = lr_decay.reshape(-1, 1).to(flat)
        self.decay_steps = max(int(decay_steps), 1)
        self.accumulator = torch.full_like(flat, float(initial_accumulator), requires_grad=False)
        self.t = torch.zeros((), dtype=torch.int64, device=flat.device)

    @torch.no_grad()
    def step(self) -> None:
        grad = self.flat.grad
        if grad is None:
            return
        lr = self.current_lr()
        self.t.add_(1)
        self.accumulator.addcmul_(grad, grad)
        self.flat.sub_((grad / self.accumulator.sqrt()).mul_(lr))

    def state(self) -> dict[str, Any]:
        return {"accumulator": self.accumulator, "t": self.t}

    @torch.no_grad()
    def restore(self, state: dict[str, Any]) -> None:
        self.accumulator.copy_(state["accumulator"])
        self.t.copy_(state["t"])
