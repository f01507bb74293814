"""The suite's exact fast paths, and a switch back to their plain PyTorch forms for benchmarks.

Fast paths: ``propagate`` keeps each graph's transpose for the backward product (instead of
autograd's own sparse backward); COPF's contrastive loss computes each distinct anchor once,
weighted by its count, with a fused log-sum-exp (instead of one row per sampled pair and
``torch.logsumexp``); BCIPM's encoder stack is one function with a hand-written backward (instead
of ``F.normalize`` and sums under autograd). Each gives the same loss and gradients as its plain
form (tests check it). ``bench perf --plain`` times the plain forms, the baseline the fast paths
are measured against.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

PLAIN_ENV = "MBBENCH_PLAIN_KERNELS"


def plain() -> bool:
    """True where the plain forms are asked for (environment variable MBBENCH_PLAIN_KERNELS=1)."""
    return os.environ.get(PLAIN_ENV) == "1"


@contextmanager
def plain_kernels(enabled: bool = True) -> Iterator[None]:
    """Run a block with the plain forms (``enabled``) or the fast ones."""
    previous = os.environ.get(PLAIN_ENV)
    os.environ[PLAIN_ENV] = "1" if enabled else "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[PLAIN_ENV]
        else:
            os.environ[PLAIN_ENV] = previous
