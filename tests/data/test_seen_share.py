"""``bench data stats``: the share of test items the user already has under an auxiliary
behavior, per behavior and under any, against a hand count."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bench.data.dataset import MultiBehaviorDataset
from bench.data.stats import format_seen_share, seen_share


def _matrix(pairs, shape=(4, 5)):
    rows, cols = zip(*pairs)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)


# Test pairs (user, item): (0, 1) viewed and carted; (1, 2) viewed only; (2, 0) neither;
# (3, 3) carted only; (3, 4) neither. Views 2 of 5, carts 2 of 5, any 3 of 5.
HAND = MultiBehaviorDataset(
    "hand", ("view", "cart", "buy"),
    {"view": _matrix([(0, 1), (0, 2), (1, 2), (2, 3), (3, 0)]),
     "cart": _matrix([(0, 1), (3, 3), (2, 4)]),
     "buy": _matrix([(0, 2), (1, 0), (2, 3), (3, 1)])},
    test=_matrix([(0, 1), (1, 2), (2, 0), (3, 3), (3, 4)]))


def test_seen_share_counts_by_hand():
    seen = seen_share(HAND)
    assert seen.held_out == 5
    assert seen.per_behavior == {"view": 2, "cart": 2}
    assert seen.any_behavior == 3
    text = format_seen_share(seen)
    assert "view 40.0% (2)" in text and "cart 40.0% (2)" in text and "any 60.0% (3)" in text


def test_stats_command_prints_the_share(capsys):
    from bench.data.cli import main
    assert main(["stats", "demo", "--patterns", "user"]) == 0
    out = capsys.readouterr().out
    assert "test items the user already has in the training input, per auxiliary behavior (of 1,200): view" in out
