"""Counter-based random streams (bench.train.streams): the hash is a bijection of 32-bit integers,
draws stay in range and are uniform, permutations are permutations, and distinct keys, tags and
indices give distinct streams."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2

from bench.train import streams

MASK = 0xFFFFFFFF
INVERSE = pow(0x45D9F3B, -1, 1 << 32)


def _unshift(x: torch.Tensor) -> torch.Tensor:
    """The inverse of x ^ (x >> 16) on 32-bit values (the high half is unchanged)."""
    return x ^ (x >> 16)


def _unmix(y: torch.Tensor) -> torch.Tensor:
    """mix32's inverse, written from its definition (multiplier inverted mod 2^32)."""
    y = _unshift(y)
    y = _unshift((y * INVERSE) & MASK)
    return _unshift((y * INVERSE) & MASK)


def test_mix32_is_a_bijection_of_32_bit_integers():
    low = torch.arange(1 << 20, dtype=torch.int64)
    mixed = streams.mix32(low)
    assert ((mixed >= 0) & (mixed <= MASK)).all()
    assert len(torch.unique(mixed)) == len(low)              # injective on a range
    g = torch.Generator().manual_seed(0)
    anywhere = torch.cat([torch.randint(0, 1 << 32, (100000,), generator=g, dtype=torch.int64),
                          torch.tensor([0, 1, MASK, MASK - 1, 1 << 31, (1 << 16) - 1])])
    assert torch.equal(_unmix(streams.mix32(anywhere)), anywhere)   # a two-sided inverse exists
    assert torch.equal(streams.mix32(_unmix(anywhere)), anywhere)
    # a hash, not the identity or a shift of it
    assert (streams.mix32(low[:1000]) != low[:1000]).float().mean() > 0.99


def test_hashes_are_distinct_per_counter_and_depend_on_both_key_words():
    keys = streams.run_keys([1, 2, 3])
    assert keys.shape == (3, 2) and keys.dtype == torch.int64
    assert ((keys >= 0) & (keys <= MASK)).all()
    assert torch.equal(keys, streams.run_keys([1, 2, 3]))          # a seed's key is fixed
    counters = torch.arange(50000)
    h = streams.hashes(keys, counters)
    assert h.shape == (3, 50000)
    for row in h:
        assert len(torch.unique(row)) == 50000                    # distinct counters, distinct
    # different keys give different streams (no shared values beyond chance: ~0.3 expected)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        shared = len(np.intersect1d(h[a].numpy(), h[b].numpy()))
        assert shared < 10
        assert (h[a] != h[b]).float().mean() > 0.999
    # each key word matters on its own
    changed = keys[:1].clone()
    changed[0, 1] ^= 1
    assert (streams.hashes(changed, counters) != h[:1]).float().mean() > 0.999
    changed = keys[:1].clone()
    changed[0, 0] ^= 1 << 31
    assert (streams.hashes(changed, counters) != h[:1]).float().mean() > 0.999
    # a run's stream does not depend on the other runs of the batch
    for s in range(3):
        assert torch.equal(streams.hashes(keys[s:s + 1], counters)[0], h[s])


def test_derived_streams_differ_by_tag_and_index():
    keys = streams.run_keys([7, 8])
    derived = {(tag, i): streams.derive(keys, tag, i)
               for tag in (streams.TAG_STEP, streams.TAG_EPOCH, streams.TAG_NOISE)
               for i in (0, 1, 2, 1000)}
    values = [tuple(d.flatten().tolist()) for d in derived.values()]
    assert len(set(values)) == len(values)
    assert torch.equal(streams.derive(keys, streams.TAG_STEP, torch.tensor(2)),
                       derived[(streams.TAG_STEP, 2)])           # device scalar = int index
    assert not torch.equal(derived[(streams.TAG_STEP, 0)], keys)
    assert ((derived[(streams.TAG_STEP, 0)] >= 0) & (derived[(streams.TAG_STEP, 0)] <= MASK)).all()


@pytest.mark.parametrize("bound", [1, 2, 3, 7, 1000, 123457, (1 << 31) - 1])
def test_below_stays_in_range(bound):
    extremes = torch.tensor([0, 1, MASK, MASK - 1, 1 << 31, (1 << 31) - 1])
    h = torch.cat([extremes, streams.hashes(streams.run_keys([bound]), torch.arange(20000))[0]])
    r = streams.below(h, bound)
    assert r.dtype == torch.int64
    assert ((r >= 0) & (r < bound)).all()
    assert int(streams.below(torch.tensor(MASK), bound)) == bound - 1
    assert int(streams.below(torch.tensor(0), bound)) == 0
    # a bound per entry (a tensor broadcasting with the hashes)
    bounds = torch.randint(1, bound + 1, h.shape, generator=torch.Generator().manual_seed(1))
    r = streams.below(h, bounds)
    assert ((r >= 0) & (r < bounds)).all()


def test_below_and_unit_are_uniform():
    h = streams.hashes(streams.run_keys([11]), torch.arange(100000))[0]
    counts = np.bincount(streams.below(h, 10).numpy(), minlength=10)
    statistic = ((counts - 10000) ** 2 / 10000).sum()
    assert statistic < chi2.ppf(1 - 1e-6, 9)
    u = streams.unit(h)
    assert u.dtype == torch.float32 and ((u >= 0) & (u < 1)).all()
    assert float(streams.unit(torch.tensor(MASK))) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float((u < 0.2).float().mean()) - 0.2) < 0.005


@pytest.mark.parametrize("n", [1, 2, 5, 1000])
def test_permutation_is_a_permutation_per_run(n):
    keys = streams.run_keys([1, 2, 3])
    perm = streams.permutation(keys, n)
    assert perm.shape == (3, n)
    for row in perm:
        assert sorted(row.tolist()) == list(range(n))
    assert torch.equal(perm, streams.permutation(keys, n))
    if n >= 5:
        assert not torch.equal(perm[0], perm[1]) and not torch.equal(perm[1], perm[2])
        assert not torch.equal(perm[0], torch.arange(n))
    assert torch.equal(streams.permutation(keys[1:2], n)[0], perm[1])


def test_permutation_positions_are_uniform():
    """Where item 0 lands over many runs' permutations of 8 items is uniform."""
    keys = streams.run_keys(list(range(4000)))
    perm = streams.permutation(keys, 8)
    where = (perm == 0).nonzero()[:, 1].numpy()
    counts = np.bincount(where, minlength=8)
    statistic = ((counts - 500) ** 2 / 500).sum()
    assert statistic < chi2.ppf(1 - 1e-6, 7)
