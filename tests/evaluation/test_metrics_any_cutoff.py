"""Recall@K, Precision@K and MRR@K beside HR@K and NDCG@K, by hand: several held-out items per
user, ties broken by ascending item id, cutoffs a record never stored."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench.errors import ConfigError
from bench.evaluate import evaluate_all, metrics_from_ranks, parse_metric
from tests.evaluation.test_metrics import fixed_scores, tiny

ALL = ("HR", "NDCG", "Recall", "Precision", "MRR")


def test_two_users_by_hand():
    # user 0 holds items ranked 1 and 4; user 1 one item ranked 0
    ranks = np.array([1, 4, 0])
    users = np.array([0, 0, 1])
    out = metrics_from_ranks(ranks, users, 2, (1, 2, 5), "default", ALL)
    assert out["HR@1"].tolist() == [0.0, 1.0]
    assert out["HR@2"].tolist() == [1.0, 1.0]
    assert out["Recall@2"].tolist() == [0.5, 1.0]
    assert out["Recall@5"].tolist() == [1.0, 1.0]
    assert out["Precision@2"].tolist() == [0.5, 0.5]
    assert out["Precision@5"].tolist() == pytest.approx([0.4, 0.2])
    assert out["MRR@1"].tolist() == [0.0, 1.0]
    assert out["MRR@2"].tolist() == [0.5, 1.0]          # first hit at rank 1 -> 1/2
    dcg5 = 1 / math.log2(3) + 1 / math.log2(6)
    idcg5 = 1 + 1 / math.log2(3)
    assert out["NDCG@5"][0] == pytest.approx(dcg5 / idcg5)
    assert out["NDCG@5"][1] == pytest.approx(1.0)


def test_rules_agree_on_recall_precision_mrr_and_differ_on_hr():
    ranks, users = np.array([0, 2]), np.array([0, 0])
    default = metrics_from_ranks(ranks, users, 1, (3,), "default", ALL)
    paper = metrics_from_ranks(ranks, users, 1, (3,), "paper", ALL)
    for name in ("Recall@3", "Precision@3", "MRR@3"):
        assert default[name].tolist() == paper[name].tolist()
    assert default["HR@3"].tolist() == [1.0] and paper["HR@3"].tolist() == [2.0]


def test_ties_and_several_items_through_the_evaluator():
    # all six scores equal: ranks follow item ids; item 5 is a masked training buy.
    # test items 1 and 3 -> ranks 1 and 3 (item 1 counts ahead of item 3)
    data = tiny([[1, 3]], [[5]])
    result = evaluate_all(fixed_scores([[1.0] * 6]), data, ks=(1,), protocols=("full",),
                          rules=("default",))["full/default"]
    assert sorted(result.ranks.tolist()) == [1, 3]
    assert result.pair_items.tolist() == [1, 3]
    out = metrics_from_ranks(result.ranks, result.pair_users, 1, (2, 4), "default", ALL)
    assert out["Recall@2"].tolist() == [0.5]
    assert out["Recall@4"].tolist() == [1.0]
    assert out["MRR@4"].tolist() == [0.5]
    assert out["Precision@4"].tolist() == [0.5]


def test_metric_names_parse_and_refuse():
    assert parse_metric("Recall@20") == ("Recall", 20)
    assert parse_metric("MRR@5") == ("MRR", 5)
    for bad in ("recall@20", "HR", "HR@0", "MAP@10", "HR@x"):
        with pytest.raises(ConfigError, match="NAME@K"):
            parse_metric(bad)
