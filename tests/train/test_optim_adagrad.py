"""FlatAdagrad (``optimizer=adagrad-tf1``) against TensorFlow 1's Adagrad update written out by hand,
and its place beside the Adam forms."""
import math

import pytest
import torch

from bench.errors import ConfigError
from bench.train.adagrad import FlatAdagrad
from bench.train.optimizers import build_optimizer
from bench.train.optim import FlatAdam


def _run(optimizer, flat, grads):
    for grad in grads:
        flat.grad = grad.clone()
        optimizer.step()


def test_two_steps_equal_tf1_adagrad_by_hand_for_each_run_of_a_batch():
    start = torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=torch.float64)
    flat = start.clone().requires_grad_(True)
    optimizer = FlatAdagrad(flat, torch.tensor([0.1, 0.01], dtype=torch.float64),
                            torch.tensor([1.0, 0.5], dtype=torch.float64), 1, 0.2)
    g1 = torch.tensor([[0.3, -0.4], [1.0, 0.0]], dtype=torch.float64)
    g2 = torch.tensor([[-0.1, 0.2], [2.0, 0.0]], dtype=torch.float64)
    _run(optimizer, flat, [g1, g2])
    # run 0: lr 0.1 both steps; run 1: lr 0.01 then 0.005 (staircase decay every step)
    for row, lrs in ((0, (0.1, 0.1)), (1, (0.01, 0.005))):
        for col in range(2):
            acc, p = 0.2, float(start[row, col])
            for lr, g in zip(lrs, (float(g1[row, col]), float(g2[row, col]))):
                acc += g * g
                p -= lr * g / math.sqrt(acc)
            assert float(flat[row, col]) == pytest.approx(p, rel=1e-12, abs=1e-15)
    assert int(optimizer.t) == 2


def test_state_restores_into_a_fresh_optimizer():
    flat = torch.ones(1, 3, requires_grad=True)
    first = FlatAdagrad(flat, torch.tensor([0.1]), torch.tensor([1.0]), 1, 1e-8)
    _run(first, flat, [torch.tensor([[1.0, 2.0, 3.0]])])
    other = torch.ones(1, 3, requires_grad=True)
    second = FlatAdagrad(other, torch.tensor([0.1]), torch.tensor([1.0]), 1, 1e-8)
    second.restore(first.state())
    assert torch.equal(second.accumulator, first.accumulator) and int(second.t) == 1


def test_the_accumulator_must_start_positive():
    flat = torch.ones(1, 2, requires_grad=True)
    with pytest.raises(ConfigError, match="initial_accumulator > 0"):
        FlatAdagrad(flat, torch.tensor([0.1]), torch.tensor([1.0]), 1, 0.0)


def test_build_optimizer_picks_the_configured_form():
    flat = torch.ones(1, 2, requires_grad=True)
    lr, decay = torch.tensor([0.1]), torch.tensor([1.0])
    adagrad = build_optimizer(flat, lr, decay, 1, {"optimizer": "adagrad-tf1",
                                                   "initial_accumulator": 0.5})
    assert isinstance(adagrad, FlatAdagrad) and float(adagrad.accumulator[0, 0]) == 0.5
    default = build_optimizer(flat, lr, decay, 1, {"optimizer": "adagrad-tf1"})
    assert float(default.accumulator[0, 0]) == pytest.approx(0.1)   # TF1's default
    adam = build_optimizer(flat, lr, decay, 1, {"optimizer": "adam-tf1"})
    assert isinstance(adam, FlatAdam) and adam.form == "adam-tf1"
