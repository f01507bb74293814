"""Shared fixtures of the COPF tests: a hand-made 5 users x 6 items x 3 behaviors dataset, a fixed
batch on it, and model building."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.models.base import Batch, Pairs
from bench.models.registry import MODELS, build_model, get_model, load_builtin
from bench.train import streams
from bench.train.samplers import make_sampler, run_batches
from bench.train.seeds import generator
from bench.train.trainer import BatchTrainer, Member

load_builtin()

COPF_NAMES = sorted(n for n in MODELS if n == "copf" or n.startswith("copf-"))

VIEW = [[1, 1, 0, 1, 0, 0],
        [0, 1, 1, 0, 1, 0],
        [1, 0, 0, 0, 1, 1],
        [0, 0, 1, 1, 0, 0],
        [1, 1, 1, 0, 0, 0]]
CART = [[1, 0, 0, 1, 0, 0],
        [0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0]]      # user 4 never carts: a zero-degree row in the cart graph
BUY = [[1, 0, 1, 0, 0, 0],      # item 2 bought by user 0 without a view
       [0, 1, 0, 0, 1, 0],
       [0, 0, 0, 0, 1, 0],
       [0, 0, 1, 1, 0, 0],
       [0, 1, 0, 0, 0, 0]]      # item 5 is never bought
TEST = {0: 3, 1: 2, 2: 5, 3: 0, 4: 2}


def tiny_dataset(buy=None, view=None) -> MultiBehaviorDataset:
    mats = {"view": np.array(view or VIEW), "cart": np.array(CART), "buy": np.array(buy or BUY)}
    test = np.zeros((5, 6))
    for u, v in TEST.items():
        test[u, v] = 1
    return MultiBehaviorDataset(name="tiny", behaviors=("view", "cart", "buy"),
                                train={k: sp.csr_matrix(v, dtype=np.float32)
                                       for k, v in mats.items()},
                                test=sp.csr_matrix(test, dtype=np.float32))


def _pairs(matrix, users, pos) -> Pairs:
    """Negatives: the first item after the positive (cyclically) outside the user's row."""
    m = np.asarray(matrix)
    neg = []
    for u, p in zip(users, pos):
        assert m[u, p] == 1, (u, p)
        v = (p + 1) % m.shape[1]
        while m[u, v]:
            v = (v + 1) % m.shape[1]
        neg.append(v)
    as_t = lambda x: torch.tensor(x, dtype=torch.int64)  # noqa: E731
    # grouped by user as the multi-behavior sampler makes them: tiny_batch's users are 0..4, so a
    # pair's owner (its user's position in Batch.users) is the user itself
    return Pairs(as_t(users), as_t(pos), as_t(neg), owner=as_t(users))


def tiny_batch() -> Batch:
    """Repeated users and repeated target positives, as the multi-behavior sampler makes them."""
    return Batch(users=torch.arange(5), pairs={
        0: _pairs(VIEW, [0, 0, 1, 2, 2, 4], [0, 3, 4, 5, 0, 2]),
        1: _pairs(CART, [0, 1, 2, 3], [3, 1, 4, 2]),
        2: _pairs(BUY, [0, 0, 1, 3, 3, 3, 4], [0, 2, 4, 2, 2, 3, 1]),
    })


def build(name: str, dataset, seed: int = 1, **overrides):
    spec = get_model(name)
    cfg = spec.resolve(dataset.name, dataset.n_behaviors, overrides)
    return build_model(spec, dataset, cfg, "cpu", generator(seed))


CPU = torch.device("cpu")


def first_batch(model, dataset, seed: int = 2) -> Batch:
    """The first batch of one run with sampling seed ``seed`` (no leading run axis)."""
    sampler = make_sampler(model, dataset, model.cfg, CPU, streams.run_keys([seed]))
    return next(run_batches(sampler))


def train_steps(model, dataset, steps: int, seed: int = 2):
    """``model`` after ``steps`` Adam steps (the trainer's optimizer) on its first batch."""
    keys = streams.run_keys([seed])
    sampler = make_sampler(model, dataset, model.cfg, CPU, keys)
    model.train()
    trainer = BatchTrainer([Member(model, model.cfg, seed)], dataset, sampler, CPU, "off",
                           model.name)
    sampler.start_epoch(0)
    batch = sampler.batch(torch.tensor(0), torch.tensor(0))
    for _ in range(steps):
        totals, _ = trainer.engine.losses(batch)
        trainer.engine.flat.grad = None
        totals.sum().backward()
        trainer.optimizer.step()
    trainer.engine.sync_models()
    return model
