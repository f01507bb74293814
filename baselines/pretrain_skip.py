"""Skip a model's build-time pretraining when a checkpoint is about to overwrite its result.

A resumed batch builds its members before the trainer restores their parameters from the
checkpoint, and the pretrained tables (MB-CGCN's view GCN, MBGCN's MF) are parameters: their
values come back with the checkpoint, so pretraining again (20-25 minutes for MB-CGCN on the CPU)
would only compute numbers that are overwritten. The runner enters ``pretraining_skipped()``
around building a batch it knows it will restore.

Why a context here and not a flag in ``baselines.pretrain`` or the encoders: the encoders'
source and ``baselines.pretrain``'s digest are part of those models' code version, so editing
them would mark every stored MB-CGCN and MBGCN record stale. The entry points in
``baselines.pretrain.PRETRAINERS`` are wrapped (once, at the first use): in a thread inside the
context they return zero tables of the right shape, elsewhere they run as before. The seed draw
``pretrain.pretrain`` takes from the encoder's generator still happens, so every later draw of
the build is the one an ordinary build makes.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

import scipy.sparse as sp
import torch

from baselines import pretrain

_local = threading.local()
_install = threading.Lock()


def _placeholder(matrix: sp.spmatrix, cfg: pretrain.PretrainConfig) -> pretrain.PretrainResult:
    users = torch.zeros(matrix.shape[0], cfg.dim)
    items = torch.zeros(matrix.shape[1], cfg.dim)
    return pretrain.PretrainResult(users, items, epochs_run=0, best_epoch=0, best_recall=None)


def _skippable(real: Callable) -> Callable:
    """``real``, except in a thread inside ``pretraining_skipped()``."""
    def run(matrix, cfg, generator, device, describe="pretraining"):
        if getattr(_local, "depth", 0):
            result = _placeholder(matrix, cfg)
            return pretrain.PretrainResult(result.users.to(device), result.items.to(device),
                                           0, 0, None)
        return real(matrix, cfg, generator, device, describe)
    run.skippable_real = real
    return run


@contextlib.contextmanager
def pretraining_skipped() -> Iterator[None]:
    """Within the block, and in this thread only (other threads may be building models that do
    need their pretraining), pretraining returns zero tables at once: the checkpoint restores
    the real ones."""
    with _install:
        for name, fn in list(pretrain.PRETRAINERS.items()):
            if not hasattr(fn, "skippable_real"):
                pretrain.PRETRAINERS[name] = _skippable(fn)
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
