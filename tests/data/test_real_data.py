"""The real datasets in ../shared/datasets: exact statistics and the check's verdicts."""
from __future__ import annotations

import pytest

from bench.data import catalog
from bench.data.cli import main
from bench.data.stats import check, compute_stats


def test_taobao_exact(shared_datasets):
    ds = catalog.load_dataset("taobao", shared_datasets)
    stats = compute_stats(ds)
    assert (stats.users, stats.items) == (15_449, 11_953)
    assert stats.counts == {"pv": 873_954, "cart": 195_476, "buy": 92_180}
    assert stats.test_users == 15_449 and stats.test_interactions == 15_449
    assert ds.valid is None


def test_retailrocket_exact(shared_datasets):
    stats = compute_stats(catalog.load_dataset("retailrocket", shared_datasets))
    assert (stats.users, stats.items) == (2_174, 30_113)
    assert stats.counts == {"view": 75_374, "cart": 12_456, "buy": 9_551}
    assert stats.test_users == 2_174


@pytest.mark.parametrize("name", ["taobao", "retailrocket"])
def test_complete_datasets_check_ok(shared_datasets, name):
    report = check(name, shared_datasets)
    assert report.ok, report.format()


@pytest.mark.parametrize("name,missing", [("beibei", "pv"), ("tmall", "click")])
def test_partial_datasets_are_incomplete(shared_datasets, name, missing):
    report = check(name, shared_datasets / "partial")
    assert report.status == "INCOMPLETE" and report.missing_behaviors == [missing]
    text = report.format()
    assert "INCOMPLETE" in text and f"'{missing}'" in text
    assert all(f.status in ("ok", "missing") for f in report.files), text


def test_cli_acceptance(shared_datasets, capsys):
    assert main(["stats", "taobao", "--data-dir", str(shared_datasets)]) == 0
    out = capsys.readouterr().out
    for number in ("15,449", "11,953", "873,954", "195,476", "92,180"):
        assert number in out
    assert main(["check", "beibei", "--data-dir", str(shared_datasets / "partial")]) == 1
    out = capsys.readouterr().out
    assert "INCOMPLETE" in out and "missing behavior(s): pv" in out
    assert main(["stats", "beibei", "--data-dir", str(shared_datasets / "partial")]) == 2
    assert "missing behavior 'pv'" in capsys.readouterr().err


def test_main_cli_wiring(shared_datasets, capsys):
    from bench.cli import main as bench_main
    assert bench_main(["data", "stats", "taobao", "--data-dir", str(shared_datasets)]) == 0
    assert "873,954" in capsys.readouterr().out
    assert bench_main(["data", "check", "tmall", "--data-dir",
                       str(shared_datasets / "partial")]) == 1
    assert "missing behavior(s): click" in capsys.readouterr().out
