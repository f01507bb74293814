"""The seen / novel split by hand: which pairs each subset holds, users without an item of a
subset left out, ideal DCG from the subset's own items; and the table's split section."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench.ranks import RankTable
from bench.report.ranked import subset_mask, subset_score

REPO = Path(__file__).resolve().parents[2]


def table():
    # user 0: item 5 seen (view), rank 0; item 6 novel, rank 3
    # user 1: item 7 seen (cart), rank 12
    # user 2: item 8 novel, rank 1
    return RankTable(users=np.array([0, 0, 1, 2]), items=np.array([5, 6, 7, 8]),
                     seen={"view": np.array([True, False, False, False]),
                           "cart": np.array([False, False, True, False])},
                     ranks={"best_test/full": np.array([0, 3, 12, 1])})


def test_subsets_hold_the_right_pairs():
    t = table()
    assert subset_mask(t, "seen").tolist() == [True, False, True, False]
    assert subset_mask(t, "novel").tolist() == [False, True, False, True]
    assert subset_mask(t, "seen:cart").tolist() == [False, False, True, False]
    with pytest.raises(KeyError, match="unknown subset"):
        subset_mask(t, "seen:buy")


def test_scores_by_hand():
    t = table()
    metrics = ["HR@10", "NDCG@10", "Recall@5", "MRR@5"]
    seen = subset_score(t, "best_test", "full", metrics, "default", "seen")
    assert (seen.users, seen.pairs) == (2, 2)          # users 0 and 1
    assert seen.values["HR@10"] == pytest.approx(0.5)  # user 0 hits (rank 0), user 1 misses
    assert seen.values["NDCG@10"] == pytest.approx(0.5)
    novel = subset_score(t, "best_test", "full", metrics, "default", "novel")
    assert (novel.users, novel.pairs) == (2, 2)        # users 0 and 2
    assert novel.values["HR@10"] == pytest.approx(1.0)
    # user 0's novel item alone: rank 3, ideal DCG of one item is 1
    assert novel.values["NDCG@10"] == pytest.approx((1 / math.log2(5) + 1 / math.log2(3)) / 2)
    assert novel.values["MRR@5"] == pytest.approx((1 / 4 + 1 / 2) / 2)
    everything = subset_score(t, "best_test", "full", ["Recall@5"], "default", "all")
    assert everything.users == 3
    assert everything.values["Recall@5"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert subset_score(t, "last", "full", metrics, "default", "seen") is None


def test_table_split_from_committed_taobao_records(real_data, capsys):
    from bench.cli import main
    assert main(["report", "table2", "--datasets", "taobao", "--split", "seen", "--results-dir",
                 str(REPO / "results"), "--data-dir", str(real_data)]) == 0
    out = capsys.readouterr().out
    section = out[out.index("Seen / novel split"):]
    assert "taobao HR@10 seen" in section and "taobao HR@10 novel" in section
    for label in ("Pop-seen", "CRGCN", "LightGCN"):
        line = next(l for l in section.splitlines() if l.startswith(f"| {label} |"))
        assert "85.2%" in line and "—" not in line
    pop_seen = next(l for l in section.splitlines() if l.startswith("| Pop-seen |"))
    assert pop_seen.split("|")[4].strip() == "0.0000"   # seen items first: no novel item in the top 10


def test_caption_says_what_rows_saw_and_warns_of_the_test_period():
    from types import SimpleNamespace

    from bench.report.split import training_input_lines

    def cell(periods):
        config = {"dataset": "jd", "aux_periods": periods} if periods else {"dataset": "taobao"}
        return SimpleNamespace(records=[(Path("x.json"), {"config": config})])
    cells = {("Pop-seen", "jd"): cell("all"), ("LightGCN", "jd"): cell("train"),
             ("CRGCN", "taobao"): cell(None)}
    lines = training_input_lines(cells, ["taobao", "jd"])
    assert lines[0].startswith("Training input: taobao: the files' training matrices")
    assert ("jd: every period of the auxiliary behaviors, test period included (the target's "
            "training period); the training period of every behavior") in lines[0]
    assert lines[1].startswith("CAUTION") and "Pop-seen on jd" in lines[1]
    assert "LightGCN" not in lines[1]
    assert training_input_lines({("LightGCN", "jd"): cell("train")}, ["jd"])[-1].startswith(
        "Training input")


def test_a_subset_no_run_defines_is_nan_without_a_numpy_warning():
    import warnings

    from bench.report.split import _mean_of_defined
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(_mean_of_defined([float("nan"), float("nan")]))
        assert _mean_of_defined([0.2, float("nan"), 0.4]) == pytest.approx(0.3)
