"""FlatAdam's ``adam-tf1`` form against TensorFlow 1's AdamOptimizer update written out by hand."""
from __future__ import annotations

import math

import torch

from bench.train.optim import FlatAdam


def tf1_adam(param, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    """tf.train.AdamOptimizer, step by step: lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t);
    m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr_t * m / (sqrt(v) + eps)."""
    p = param.clone()
    m = torch.zeros_like(p)
    v = torch.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr_t * m / (v.sqrt() + eps)
    return p


def run_flat_adam(start, grads, lrs, form):
    flat = start.clone().requires_grad_(True)
    optimizer = FlatAdam(flat, torch.tensor(lrs, dtype=start.dtype),
                         torch.ones(len(lrs), dtype=start.dtype), decay_steps=1000, form=form)
    after = []
    for g in grads:
        flat.grad = g.clone()
        optimizer.step()
        after.append(flat.detach().clone())
    return after


def test_two_adam_tf1_steps_with_per_member_learning_rates_follow_the_tf1_formula():
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(2, 4, generator=generator, dtype=torch.float64)
    grads = [torch.randn(2, 4, generator=generator, dtype=torch.float64) for _ in range(2)]
    # member 1's gradients are tiny, so where epsilon sits changes its update visibly
    for g in grads:
        g[1] *= 1e-8
    lrs = [1e-2, 3e-3]
    steps = run_flat_adam(start, grads, lrs, "adam-tf1")
    for t in (1, 2):
        for s, lr in enumerate(lrs):
            expected = tf1_adam(start[s], [g[s] for g in grads[:t]], lr)
            torch.testing.assert_close(steps[t - 1][s], expected, rtol=1e-12, atol=0)
    # the PyTorch form puts epsilon elsewhere: the test can tell the two apart
    torch_form = run_flat_adam(start, grads, lrs, "adam")
    assert not torch.allclose(torch_form[1][1], steps[1][1], rtol=1e-6, atol=0)
