"""The paper's numbers as transcribed: complete, in range and consistent with themselves."""
from __future__ import annotations

import pytest

from bench.report.paper import paper_dataset_stats, paper_table

COPF = {"beibei": {"HR@10": 0.1694, "NDCG@10": 0.0903},
        "taobao": {"HR@10": 0.1552, "NDCG@10": 0.0838},
        "tmall": {"HR@10": 0.1755, "NDCG@10": 0.0967}}
SIZES = {"table2": 16, "table3": 15, "table4": 6, "table5": 7, "table6": 10}


@pytest.mark.parametrize("name", list(SIZES))
def test_every_row_has_every_cell(name):
    table = paper_table(name)
    assert len(table.rows) == SIZES[name]
    for label, per_dataset in table.rows.items():
        assert set(per_dataset) == {"beibei", "taobao", "tmall"}, label
        for values in per_dataset.values():
            assert 0 < values["NDCG@10"] < values["HR@10"] < 1, label


@pytest.mark.parametrize("name,label", [("table2", "COPF"), ("table3", "COPF"),
                                        ("table4", "COPF"), ("table5", "COGCN+DFME")])
def test_copf_row_is_the_same_in_every_table(name, label):
    assert paper_table(name).rows[label] == COPF


def test_rel_impr_row_agrees_with_the_transcribed_numbers():
    table = paper_table("table2")
    for dataset in ("beibei", "taobao", "tmall"):
        for metric in ("HR@10", "NDCG@10"):
            best = max(v[dataset][metric] for k, v in table.rows.items() if k != "COPF")
            assert 100 * (COPF[dataset][metric] / best - 1) == pytest.approx(
                table.rel_impr[dataset][metric], abs=0.01)


def test_table6_backbones_match_their_table2_rows():
    t2, t6 = paper_table("table2"), paper_table("table6")
    for label in ("MB-CGCN", "CRGCN", "CIGF", "PKEF"):
        assert t6.rows[label] == t2.rows[label]


def test_table1():
    stats = paper_dataset_stats()
    assert stats["taobao"]["users"] == 15449 and stats["taobao"]["items"] == 11953
    assert stats["beibei"]["target_interactions"] == 282860
    assert stats["tmall"]["users"] == 41738 and len(stats["tmall"]["behaviors"]) == 4
