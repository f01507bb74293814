"""Counter-based random streams: every training draw is a hash of (a run's key, a counter), computed
with integer tensor operations on the device.

Why not ``torch.Generator``: a seed batch holds S runs, each with its own random stream. With one
generator per run, every draw is S calls (a Python loop over seeds inside a step) and a CUDA graph
has to register each generator. A hash of (key, counter) instead draws for all S runs in one
operation on a ``[S, n]`` tensor, needs no state beyond a step counter, is replayable inside a
captured graph, and gives the same numbers on every device. Run s's draws depend only on its own
key, so a run gives the same samples alone and inside any batch.

The mixing function is a 32-bit integer hash (xor-shift-multiply, two rounds, constant 0x45d9f3b)
evaluated in int64 arithmetic: values stay below 2^32 and every product below 2^59, so nothing
overflows. It is a bijection of 32-bit integers, so hashing distinct counters under one key gives
distinct values (a permutation by sorting them has no ties). Draws use two rounds keyed by two
independent 32-bit words, which breaks the shift structure a single xor-keyed round would have.
"""
from __future__ import annotations

import hashlib

import torch

MASK32 = 0xFFFFFFFF
_MULTIPLIER = 0x45D9F3B
# Distinct tags keep the streams of different purposes apart (xor'ed into the derived keys).
TAG_STEP = 0x3C6EF372
TAG_EPOCH = 0x9E3779B9
TAG_NOISE = 0xA54FF53A
_SECOND_WORD = 0x510E527F


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit hash of int64 values in [0, 2^32)."""
    x = ((x >> 16) ^ x) * _MULTIPLIER & MASK32
    x = ((x >> 16) ^ x) * _MULTIPLIER & MASK32
    return (x >> 16) ^ x


def run_keys(seeds: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """[S, 2] int64: two independent 32-bit key words per run, derived from each run's seed."""
    words = []
    for seed in seeds:
        digest = hashlib.sha256(f"mbbench-stream/{int(seed)}".encode()).digest()
        words.append([int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:8], "little")])
    return torch.tensor(words, dtype=torch.int64, device=device)


def derive(keys: torch.Tensor, tag: int, index: torch.Tensor | int) -> torch.Tensor:
    """Keys of a sub-stream: [..., 2] keys, a purpose tag and an index (e.g. the step number, a
    device scalar) -> [..., 2] keys whose draws are independent of the parent's."""
    # one salt per key word, both from (tag, index), hashed in one pass; a Python int index stays
    # a scalar operand (no host-to-device copy inside a captured step)
    salts = mix32(_word_tags(keys.device) ^ ((index & MASK32) ^ tag))
    return mix32(keys ^ salts)


_WORD_TAGS: dict[str, torch.Tensor] = {}


def _word_tags(device: torch.device) -> torch.Tensor:
    """[0, a constant]: the two key words' tags, one device tensor per device (made on first use,
    before any CUDA graph capture)."""
    key = str(device)
    if key not in _WORD_TAGS:
        _WORD_TAGS[key] = torch.tensor([0, _SECOND_WORD], dtype=torch.int64, device=device)
    return _WORD_TAGS[key]


def hashes(keys: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """32-bit hashes of ``counters`` under each run's keys: keys [S, 2], counters [n] (int64, below
    2^32) -> [S, n]. Under ``torch.func.vmap`` keys may be [2] and the result [n]."""
    first = keys[..., 0:1]
    second = keys[..., 1:2]
    return mix32(mix32(counters ^ first) ^ second)


def below(h: torch.Tensor, bound: torch.Tensor | int) -> torch.Tensor:
    """Integers uniform in [0, bound) from 32-bit hashes (bound below 2^31, a tensor broadcasting
    with ``h`` or an int): floor(h * bound / 2^32), exact in int64."""
    return (h * bound) >> 32


def unit(h: torch.Tensor) -> torch.Tensor:
    """Floats uniform in [0, 1) from 32-bit hashes (24 random bits, exact in float32)."""
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


def permutation(keys: torch.Tensor, n: int) -> torch.Tensor:
    """[S, n] int64: a random permutation of 0..n-1 per run (argsort of distinct hashes)."""
    h = hashes(keys, torch.arange(n, dtype=torch.int64, device=keys.device))
    return torch.argsort(h, dim=-1)
