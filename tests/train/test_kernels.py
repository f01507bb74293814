"""The fast exact paths (bench.kernels) and their plain forms give the same losses and gradients."""
from __future__ import annotations

import os

import pytest
import torch

from bench.data.demo import make_demo
from bench.kernels import PLAIN_ENV, plain, plain_kernels
from bench.models.registry import build_model, get_model, load_builtin
from bench.train.samplers import make_sampler, run_batches
from bench.train.seeds import generator
from tests.train.helpers import CPU, keys

load_builtin()


def loss_and_grads(name, dataset):
    spec = get_model(name)
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, {})
    model = build_model(spec, dataset, cfg, "cpu", generator(0))
    batch = next(run_batches(make_sampler(model, dataset, cfg, CPU, keys(1))))
    loss, _ = model.loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", ["copf", "lightgcn", "crgcn", "copf-wo-con"])
def test_plain_forms_match_the_fast_paths(name):
    data = make_demo(n_users=150, n_items=200, seed=4)
    fast_loss, fast_grads = loss_and_grads(name, data)
    with plain_kernels():
        assert plain()
        plain_loss, plain_grads = loss_and_grads(name, data)
    assert not plain()
    torch.testing.assert_close(plain_loss, fast_loss, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == plain_grads.keys()
    for key in fast_grads:
        torch.testing.assert_close(plain_grads[key], fast_grads[key], rtol=1e-4, atol=1e-6,
                                   msg=key)


def test_switch_restores_the_environment():
    before = os.environ.get(PLAIN_ENV)
    with plain_kernels():
        with plain_kernels(False):
            assert not plain()
        assert plain()
    assert os.environ.get(PLAIN_ENV) == before
