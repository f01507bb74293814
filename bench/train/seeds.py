"""Per-purpose seeds derived from (base seed, dataset, run index), never from the model, so run i of
every model starts from the same random streams where shapes agree (paired comparisons)."""
from __future__ import annotations

import hashlib

import torch

PURPOSES = ("init", "sampling", "holdout", "evaluation", "dropout")


def derive_seed(base_seed: int, dataset: str, run: int, purpose: str) -> int:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown seed purpose '{purpose}'")
    text = f"{base_seed}/{dataset}/{run}/{purpose}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(seed)
    return g
