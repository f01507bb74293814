"""torch.optim.AdamW with clip_grad_norm_ and an optional CyclicLR stepped per epoch (the form the
CML release trains its model with), for a batch of S runs whose parameters are the rows of one
flat [S, P] tensor.

Per step and run: ``g <- g * min(1, clip_norm / (|g|_2 + 1e-6))`` (0 = no clipping), then
``p <- p (1 - lr wd)`` and PyTorch's Adam update at ``lr``. ``lr`` is the run's rate times the
staircase decay (as ``bench.train.optim.FlatAdam``), and with ``cyclic_max_lr`` > 0 the base rate
follows CyclicLR 'triangular' from ``lr`` to ``cyclic_max_lr`` over ``cyclic_epochs`` = [up, down]
epochs, set in place at each epoch's start (``start_epoch``), so a captured step keeps reading it.

It lives apart from ``bench.train.optim`` for the reason ``bench.train.adagrad`` gives: only the
models that train with it (``code_modules``) change version with it.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch

ADAMW_FORMS = ("adamw",)
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8


def cyclic_lr(epoch: int, base: float, peak: float, up: int, down: int) -> float:
    """CyclicLR 'triangular' stepped once per epoch: its value during ``epoch`` (0-based)."""
    total = up + down
    x = 1.0 + epoch / total - math.floor(1 + epoch / total)
    ratio = up / total
    return base + (peak - base) * (x / ratio if x <= ratio else (x - 1) / (ratio - 1))


class FlatAdamW:
    """AdamW with gradient clipping and an epoch CyclicLR over ``flat`` ([S, P])."""

    def __init__(self, flat: torch.Tensor, lr: torch.Tensor, lr_decay: torch.Tensor,
                 decay_steps: int, weight_decay: float = 0.0, clip_norm: float = 0.0,
                 cyclic_max_lr: float = 0.0, cyclic_epochs: Sequence[int] = (1, 1)) -> None:
        self.flat = flat
        self.base = [float(v) for v in lr.reshape(-1).tolist()]
        self.lr = lr.reshape(-1, 1).to(flat).clone()
        self.lr_decay = lr_decay.reshape(-1, 1).to(flat)
        self.decay_steps = max(int(decay_steps), 1)
        self.weight_decay, self.clip_norm = float(weight_decay), float(clip_norm)
        self.cyclic_max_lr = float(cyclic_max_lr)
        self.cyclic_epochs = [int(v) for v in cyclic_epochs]
        self.exp_avg = torch.zeros_like(flat, requires_grad=False)
        self.exp_avg_sq = torch.zeros_like(flat, requires_grad=False)
        self.t = torch.zeros((), dtype=torch.int64, device=flat.device)

    @torch.no_grad()
    def start_epoch(self, epoch: int) -> None:
        if self.cyclic_max_lr > 0:
            up, down = self.cyclic_epochs
            values = [cyclic_lr(epoch, b, self.cyclic_max_lr, up, down) for b in self.base]
            self.lr.copy_(torch.tensor(values, dtype=self.lr.dtype).reshape(-1, 1))

    def current_lr(self) -> torch.Tensor:
        stairs = torch.div(self.t, self.decay_steps, rounding_mode="floor").to(self.flat.dtype)
        return self.lr * self.lr_decay.pow(stairs)

    @torch.no_grad()
    def step(self) -> None:
        grad = self.flat.grad
        if grad is None:
            return
        if self.clip_norm > 0:
            norm = torch.linalg.vector_norm(grad, dim=-1, keepdim=True)
            grad = grad * (self.clip_norm / (norm + 1e-6)).clamp(max=1.0)
        lr = self.current_lr()
        self.t.add_(1)
        t = self.t.to(self.flat.dtype)
        self.flat.mul_(1.0 - lr * self.weight_decay)
        self.exp_avg.lerp_(grad, 1.0 - BETA1)
        self.exp_avg_sq.mul_(BETA2).addcmul_(grad, grad, value=1.0 - BETA2)
        denom = (self.exp_avg_sq.sqrt() / (1.0 - torch.pow(BETA2, t)).sqrt()).add_(EPSILON)
        self.flat.sub_((self.exp_avg / denom).mul_(lr / (1.0 - torch.pow(BETA1, t))))

    def state(self) -> dict[str, Any]:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "t": self.t}

    @torch.no_grad()
    def restore(self, state: dict[str, Any]) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.t.copy_(state["t"])
