"""Hand-computed expectations for HR@K and NDCG@K, ties, several held-out items, masking."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bench.data.dataset import MultiBehaviorDataset
from bench.evaluate import evaluate, evaluate_all, metrics_from_ranks, sample_negatives


def tiny(test_rows, train_buy, n_items=6):
    """A 1-behavior dataset whose test and buy matrices are given as lists of item lists."""
    n_users = len(test_rows)

    def csr(rows):
        r = [u for u, items in enumerate(rows) for _ in items]
        c = [i for items in rows for i in items]
        return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n_users, n_items))
    return MultiBehaviorDataset("tiny", ("buy",), {"buy": csr(train_buy)}, csr(test_rows))


def fixed_scores(matrix):
    table = torch.tensor(matrix, dtype=torch.float32)
    return lambda users: table[users]


def test_single_item_rank_hr_ndcg_by_hand():
    # user 0: items 0..5 scored [.9, .1, .8, .7, .2, .3]; item 0 is a training buy (masked);
    # test item 3 (score .7) is beaten by item 2 (.8) only: rank 1.
    data = tiny([[3]], [[0]])
    result = evaluate(fixed_scores([[.9, .1, .8, .7, .2, .3]]), data, ks=(1, 2, 10))
    assert result.ranks.tolist() == [1]
    assert result.metrics["HR@1"] == 0.0
    assert result.metrics["HR@2"] == 1.0
    assert result.metrics["NDCG@2"] == pytest.approx(1 / math.log2(3))
    assert result.metrics["NDCG@10"] == pytest.approx(1 / math.log2(3))


def test_masked_training_item_does_not_compete():
    data = tiny([[1]], [[0]])
    scores = fixed_scores([[5.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    assert evaluate(scores, data, ks=(1,)).metrics["HR@1"] == 1.0


def test_ties_are_broken_by_ascending_item_id():
    # All scores equal: the stable sort keeps ascending item ids, so test item 4 has rank 4
    # (items 0..3 ahead), and item 0 rank 0.
    data = tiny([[4], [0]], [[5], [5]])
    result = evaluate(fixed_scores([[1.0] * 6, [1.0] * 6]), data, ks=(4, 5))
    assert result.ranks.tolist() == [4, 0]
    assert result.per_user["HR@4"].tolist() == [0.0, 1.0]
    assert result.per_user["HR@5"].tolist() == [1.0, 1.0]
    assert result.per_user["NDCG@5"][0] == pytest.approx(1 / math.log2(6))


def test_tie_with_higher_id_does_not_count():
    data = tiny([[1]], [[5]])
    # item 1 ties with item 3 (higher id: behind it) and loses to item 0
    result = evaluate(fixed_scores([[2.0, 1.0, 0.0, 1.0, 0.0, 0.0]]), data)
    assert result.ranks.tolist() == [1]


def test_several_items_default_and_paper_rules():
    # test items 1 and 4; scores put 4 at rank 0 and 1 at rank 2 (behind 4 and 0).
    data = tiny([[1, 4]], [[5]])
    scores = fixed_scores([[0.8, 0.5, 0.1, 0.2, 0.9, 0.0]])
    results = evaluate_all(scores, data, ks=(1, 3), rules=("default", "paper"))
    default, paper = results["full/default"], results["full/paper"]
    assert sorted(default.ranks.tolist()) == [0, 2]
    dcg3 = 1 / math.log2(2) + 1 / math.log2(4)
    idcg3 = 1 / math.log2(2) + 1 / math.log2(3)
    assert default.metrics["HR@3"] == 1.0
    assert default.metrics["NDCG@3"] == pytest.approx(dcg3 / idcg3)
    assert default.metrics["NDCG@1"] == pytest.approx(1.0)     # IDCG@min(1, 2) = 1
    assert paper.metrics["HR@3"] == 2.0                         # the reference code sums hits
    assert paper.metrics["NDCG@3"] == pytest.approx(dcg3)


def test_users_without_test_items_are_not_evaluated():
    data = tiny([[2], []], [[0], [1]])
    result = evaluate(fixed_scores([[0, 0, 9, 0, 0, 0], [0] * 6]), data)
    assert result.users.tolist() == [0]
    assert result.metrics["HR@10"] == 1.0


def test_metrics_from_ranks_matches_formula():
    ranks = np.array([0, 3, 12, 9])
    per_user = metrics_from_ranks(ranks, np.arange(4), 4, (10,), "default")
    assert per_user["HR@10"].tolist() == [1, 1, 0, 1]
    expected = [1.0, 1 / math.log2(5), 0.0, 1 / math.log2(11)]
    assert np.allclose(per_user["NDCG@10"], expected)


def test_independent_of_block_size_and_sampled_protocol_seeded():
    rng = np.random.default_rng(0)
    n_users, n_items = 57, 40
    buy = sp.random(n_users, n_items, density=0.1, format="csr", random_state=1)
    buy.data[:] = 1
    test = np.zeros((n_users, n_items))
    for u in range(n_users):
        free = np.flatnonzero(buy[u].toarray().ravel() == 0)
        test[u, rng.choice(free)] = 1
    data = MultiBehaviorDataset("r", ("buy",), {"buy": buy}, sp.csr_matrix(test))
    table = torch.tensor(rng.normal(size=(n_users, n_items)), dtype=torch.float32)
    table[:, :5] = 0.25          # some ties
    score = lambda users: table[users]
    a = evaluate_all(score, data, ks=(5, 10), protocols=("full", "sampled"), block_size=7, seed=3)
    b = evaluate_all(score, data, ks=(5, 10), protocols=("full",), block_size=1000, seed=3)
    assert np.array_equal(a["full/default"].ranks, b["full/default"].ranks)
    assert a["full/default"].metrics == b["full/default"].metrics
    c = evaluate_all(score, data, ks=(5, 10), protocols=("sampled",), block_size=7, seed=3)
    assert np.array_equal(a["sampled/default"].ranks, c["sampled/default"].ranks)
    assert (a["sampled/default"].ranks <= 99).all()


def test_sampled_protocol_by_hand():
    # 1 user, test item 2, training buy item 0: negatives come from {1, 3, 4, 5}, all scored
    # above the test item in the first case and below it in the second.
    data = tiny([[2]], [[0]])
    low = evaluate(fixed_scores([[9.0, 5.0, 1.0, 4.0, 3.0, 2.0]]), data, protocol="sampled",
                   ks=(1,), n_negatives=30, seed=0)
    assert low.label == "sampled/default"
    assert low.ranks.tolist() == [30]
    high = evaluate(fixed_scores([[9.0, 0.0, 1.0, 0.0, 0.0, 0.0]]), data, protocol="sampled",
                    ks=(1,), n_negatives=30, seed=0)
    assert high.ranks.tolist() == [0] and high.metrics["HR@1"] == 1.0


def test_sampled_negatives_avoid_excluded_items():
    excluded = sp.csr_matrix(np.array([[1, 0, 1, 0, 1, 1], [0, 1, 1, 1, 1, 1]]))
    drawn = sample_negatives(excluded, np.array([0, 1]), 200, np.random.default_rng(0))
    assert set(drawn[0].tolist()) == {1, 3}
    assert set(drawn[1].tolist()) == {0}


def test_nan_scores_never_outrank_and_a_nan_target_ranks_last():
    data = tiny([[2], [3]], [[0], [0]])
    nan = float("nan")
    scores = fixed_scores([[nan, nan, 1.0, 2.0, nan, 0.0], [0.5, 0.1, 0.2, nan, 0.3, 0.4]])
    result = evaluate_all(scores, data, ks=(1,), protocols=("full", "sampled"), n_negatives=5)
    assert result["full/default"].ranks.tolist() == [1, 6]
    assert result["sampled/default"].ranks[1] == 5


def test_threaded_ranking_equals_serial_with_ties_and_several_items():
    from bench.evaluate import _ranks_full_numpy, _ranks_full_numpy_parallel
    rng = np.random.default_rng(4)
    scores = rng.standard_normal((64, 90)).astype(np.float32)
    scores[:, :30] = 0.25                                      # many ties
    single = (np.arange(64), rng.integers(0, 90, 64))
    several = (np.sort(rng.integers(0, 64, 150)), rng.integers(0, 90, 150))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for rows, items in (single, several):
            assert np.array_equal(_ranks_full_numpy_parallel(scores, rows, items),
                                  _ranks_full_numpy(scores, rows, items))
    finally:
        torch.set_num_threads(previous)
