"""Adam for a batch of S runs whose parameters are the rows of one flat [S, P] tensor.

Every quantity is a device tensor (the step count, each run's learning rate, the staircase decay),
so a step never reads a host value and can be captured in a CUDA graph; each run may have its own
learning rate and decay (members of a tuning batch). Adam acts element-wise, so row s receives
exactly the update its own gradient gives it.

Two forms of the update, the ``optimizer`` parameter:

- ``adam`` (PyTorch's ``torch.optim.Adam``): ``p -= lr_t / (1 - b1^t) * m / (sqrt(v) /
  sqrt(1 - b2^t) + eps)``;
- ``adam-tf1`` (TensorFlow 1's ``tf.train.AdamOptimizer``, the COPF/PKEF/CIGF releases): epsilon
  in its "epsilon hat" place, ``p -= lr_t * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.

The learning rate at step t (1-based) is ``lr * lr_decay ** floor((t - 1) / decay_steps)``: the
TF family's staircase decay per optimizer step, as ``StepLR`` stepped after every update gives it.
"""
from __future__ import annotations

from typing import Any

import torch

from bench.errors import ConfigError

OPTIMIZERS = ("adam", "adam-tf1")
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8


class FlatAdam:
    """Adam over ``flat`` ([S, P], a leaf whose ``grad`` the backward pass fills)."""

    def __init__(self, flat: torch.Tensor, lr: torch.Tensor, lr_decay: torch.Tensor,
                 decay_steps: int, form: str = "adam") -> None:
        if form not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer '{form}'; choose one of {OPTIMIZERS}")
        self.flat = flat
        self.form = form
        self.lr = lr.reshape(-1, 1).to(flat)
        self.lr_decay = lr_decay.reshape(-1, 1).to(flat)
        self.decay_steps = max(int(decay_steps), 1)
        self.exp_avg = torch.zeros_like(flat, requires_grad=False)
        self.exp_avg_sq = torch.zeros_like(flat, requires_grad=False)
        self.t = torch.zeros((), dtype=torch.int64, device=flat.device)

    def current_lr(self) -> torch.Tensor:
        """[S, 1]: each run's learning rate for the next update."""
        stairs = torch.div(self.t, self.decay_steps, rounding_mode="floor").to(self.flat.dtype)
        return self.lr * self.lr_decay.pow(stairs)

    @torch.no_grad()
    def step(self) -> None:
        grad = self.flat.grad
        if grad is None:
            return
        lr = self.current_lr()
        self.t.add_(1)
        t = self.t.to(self.flat.dtype)
        self.exp_avg.lerp_(grad, 1.0 - BETA1)
        self.exp_avg_sq.mul_(BETA2).addcmul_(grad, grad, value=1.0 - BETA2)
        correction1 = 1.0 - torch.pow(BETA1, t)
        correction2 = 1.0 - torch.pow(BETA2, t)
        if self.form == "adam":
            denom = (self.exp_avg_sq.sqrt() / correction2.sqrt()).add_(EPSILON)
            update = (self.exp_avg / denom).mul_(lr / correction1)
        else:
            denom = self.exp_avg_sq.sqrt().add_(EPSILON)
            update = (self.exp_avg / denom).mul_(lr * (correction2.sqrt() / correction1))
        self.flat.sub_(update)

    def state(self) -> dict[str, Any]:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "t": self.t}

    @torch.no_grad()
    def restore(self, state: dict[str, Any]) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.t.copy_(state["t"])
