"""Table 1 statistics, behavior patterns, the catalog check, and the validation holdout."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bench.data import catalog
from bench.data.dataset import MultiBehaviorDataset
from bench.data.demo import make_demo
from bench.data.holdout import with_validation_holdout
from bench.data.layouts import load_pkef
from bench.data.stats import behavior_patterns, check, compute_stats, format_stats
from bench.errors import DataError
from tests.data.conftest import TINY_BEHAVIORS, Exploit, write_pickle


def test_compute_and_format_stats(tiny_pkef):
    stats = compute_stats(load_pkef(tiny_pkef, TINY_BEHAVIORS))
    assert (stats.users, stats.items, stats.interactions, stats.target_interactions) == (5, 6, 20, 6)
    assert stats.test_users == 4 and stats.test_interactions == 5
    text = format_stats(stats)
    assert "view -> cart -> buy" in text and "view 10; cart 4; buy 6" in text


def test_user_patterns(tiny_pkef):
    ds = load_pkef(tiny_pkef, TINY_BEHAVIORS)
    shares = {p.pattern: p.count for p in behavior_patterns(ds)}
    # users 0,1,2,3 have view+cart+buy; user 4 view+buy
    assert shares == {"1 1 1": 4, "1 0 1": 1}
    assert sum(p.share for p in behavior_patterns(ds)) == pytest.approx(1.0)


def test_pair_patterns(tiny_pkef):
    ds = load_pkef(tiny_pkef, TINY_BEHAVIORS)
    shares = {p.pattern: p.count for p in behavior_patterns(ds, unit="pair")}
    assert shares == {"1 0 0": 4, "1 1 1": 4, "1 0 1": 2}
    with pytest.raises(DataError, match="unknown pattern unit"):
        behavior_patterns(ds, unit="item")


@pytest.fixture
def tiny_catalog(tiny_pkef, monkeypatch):
    from bench.data.stats import sha256_of
    sha = {"trn_buy": sha256_of(tiny_pkef / "trn_buy")}
    spec = catalog.DatasetSpec(name="tiny", behaviors=TINY_BEHAVIORS, layout="pkef", users=5,
                               items=6, counts={"view": 10, "cart": 4, "buy": 6}, test_users=4,
                               files=catalog._pkef_files("http://x", TINY_BEHAVIORS, sha))
    monkeypatch.setitem(catalog.CATALOG, "tiny", spec)
    return tiny_pkef


def test_check_ok_and_mismatches(tiny_catalog):
    report = check("tiny", tiny_catalog.parent)
    assert report.ok, report.format()
    write_pickle(tiny_catalog / "trn_cart", sp.csr_matrix(np.eye(5, 6)))
    write_pickle(tiny_catalog / "trn_buy", sp.csr_matrix(np.eye(5, 6)))
    report = check("tiny", tiny_catalog.parent)
    assert report.status == "MISMATCH"
    text = report.format()
    assert "trn_cart" in text and "expected 4 interactions" in text
    assert "sha256" in text and "differs" in text


def test_check_incomplete_and_malicious(tiny_catalog):
    marker = tiny_catalog / "marker"
    (tiny_catalog / "trn_view").unlink()
    write_pickle(tiny_catalog / "trn_cart", Exploit(f"touch {marker}"))
    report = check("tiny", tiny_catalog.parent)
    assert report.status == "INCOMPLETE" and report.missing_behaviors == ["view"]
    assert "refused" in report.format()
    assert not marker.exists()


def test_check_folder_not_found(tmp_path):
    report = check("taobao", tmp_path)
    assert report.status == "NOT FOUND" and "bench data fetch taobao" in report.format()


def test_holdout_moves_one_target_per_eligible_user():
    ds = make_demo(n_users=200, n_items=300, seed=3)
    out = with_validation_holdout(ds, seed=7)
    before, after = ds.train["buy"], out.train["buy"]
    counts = np.diff(before.indptr)
    assert out.valid.nnz == int((counts >= 2).sum())
    assert np.array_equal(np.diff(out.valid.indptr), (counts >= 2).astype(int))
    assert (after + out.valid - before).nnz == 0                # a partition of the old buys
    assert after.multiply(out.valid).nnz == 0
    assert (np.diff(after.indptr) >= 1)[counts >= 1].all()      # nobody loses the last buy
    for b in ("view", "cart"):
        assert (out.train[b] != ds.train[b]).nnz == 0
    assert (out.test != ds.test).nnz == 0
    again = with_validation_holdout(ds, seed=7)
    assert (again.valid != out.valid).nnz == 0
    other = with_validation_holdout(ds, seed=8)
    assert (other.valid != out.valid).nnz > 0
    assert with_validation_holdout(out, seed=1) is out


def test_holdout_skips_users_with_one_target():
    train = {"buy": sp.csr_matrix(np.array([[1, 0, 0], [1, 1, 0]], dtype=np.float32))}
    test = sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 1]], dtype=np.float32))
    ds = MultiBehaviorDataset(name="t", behaviors=("buy",), train=train, test=test)
    out = with_validation_holdout(ds, seed=0)
    assert out.valid[0].nnz == 0 and out.valid[1].nnz == 1
    assert out.train["buy"].nnz == 2
