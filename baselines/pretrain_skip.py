"""Skip a model's build-time pretraining when a checkpoint is about to overwrite its result.

A resumed batch builds its members before the trainer restores their parameters from the
checkpoint, and the pretrained tables (MB-CGCN's view GCN, MBGCN's MF) are parameters: their
values come back with the checkpoint, so pretraining again (20-25 minutes for MB-CGCN on the CPU)
would only compute numbers that are overwritten. The runner enters ``pretraining_skipped()``
around building a batch it knows it will restore.

Why a context here and not a flag in ``baselines.pretrain`` or the encoders: the encoders'
source and ``baselines.pretrain``'s digest are part of those models' code version, so editing
them would mark every stored MB-CGCN and MBGCN record stale. Inside the context, the pretraining
entry points in ``baselines.pretrain.PRETRAINERS`` return zero tables of the right shape; the
seed draw ``pretrain.pretrain`` takes from the encoder's generator still happens, so every later
draw of the build is the one an ordinary build makes.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import scipy.sparse as sp
import torch

from baselines import pretrain

_lock = threading.Lock()


def _placeholder(matrix: sp.spmatrix, cfg: pretrain.PretrainConfig, generator: torch.Generator,
                 device: torch.device, describe: str = "pretraining") -> pretrain.PretrainResult:
    users = torch.zeros(matrix.shape[0], cfg.dim, device=device)
    items = torch.zeros(matrix.shape[1], cfg.dim, device=device)
    return pretrain.PretrainResult(users, items, epochs_run=0, best_epoch=0, best_recall=None)


@contextlib.contextmanager
def pretraining_skipped() -> Iterator[None]:
    """Within the block, pretraining returns zero tables at once (the checkpoint restores the
    real ones); outside it, nothing changes."""
    with _lock:
        saved = dict(pretrain.PRETRAINERS)
        try:
            for name in saved:
                pretrain.PRETRAINERS[name] = _placeholder
            yield
        finally:
            pretrain.PRETRAINERS.clear()
            pretrain.PRETRAINERS.update(saved)
