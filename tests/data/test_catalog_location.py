"""Catalog entries, data directory resolution and loading by name."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.data import catalog
from bench.data.catalog import VERIFY_SHA256, VERIFY_SHAPE
from bench.data.location import default_cache_dir, resolve_data_dir
from bench.errors import DataError
from tests.data.conftest import TINY_BEHAVIORS

REBUILT = {("taobao", "trn_pv"), ("beibei", "trn_cart")}


def test_names_and_behaviors():
    assert catalog.names() == ["beibei", "taobao", "tmall", "retailrocket", "jd", "demo"]
    assert catalog.get("tmall").behaviors == ("click", "collect", "cart", "buy")
    assert catalog.get("jd").behaviors[-1] == "purchase"
    assert catalog.get("jd").prefixes["purchase"] == "target"
    assert catalog.get("jd").layout == "bvae"
    assert (catalog.get("jd").users, catalog.get("jd").items) == (10_690, 13_465)
    with pytest.raises(DataError, match="unknown dataset 'nope'.*beibei"):
        catalog.get("nope")


def test_table1_counts():
    taobao = catalog.get("taobao")
    assert (taobao.users, taobao.items) == (15_449, 11_953)
    assert dict(taobao.counts) == {"pv": 873_954, "cart": 195_476, "buy": 92_180}
    for name, total in (("beibei", 3.3e6), ("taobao", 1.2e6), ("tmall", 2.3e6)):
        spec = catalog.get(name)
        assert round(sum(spec.counts.values()) / 1e6, 1) == total / 1e6  # Table 1 rounds
        assert spec.paper_interactions == total


def test_rebuilt_files_verified_by_shape():
    for name, file in REBUILT:
        spec = catalog.get(name).file(file)
        assert spec.sha256 is None and spec.verify == VERIFY_SHAPE
    assert catalog.get("tmall").file("trn_click").archive == "tmall.zip"


def test_urls_point_at_authors_repositories():
    for name in ("beibei", "taobao", "tmall", "retailrocket", "jd"):
        spec = catalog.get(name)
        for file in spec.files:
            url = file.url or spec.archive(file.archive).url
            assert url.startswith("https://raw.githubusercontent.com/"), url
            assert url.endswith("/" + (file.name if file.url else file.archive))


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg" / "mbbench" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "mbbench" / "datasets"
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "cli") == tmp_path / "cli"


def test_demo_needs_no_files(tmp_path):
    assert catalog.available("demo", tmp_path)
    ds = catalog.load_dataset("demo", tmp_path)
    assert ds.name == "demo" and ds.behaviors == ("view", "cart", "buy")


def test_load_by_name_missing_and_incomplete(tmp_path, tiny_pkef, monkeypatch):
    with pytest.raises(DataError, match="bench data fetch retailrocket"):
        catalog.load_dataset("retailrocket", tmp_path / "none")
    spec = catalog.DatasetSpec(name="tiny", behaviors=TINY_BEHAVIORS, layout="pkef",
                               files=catalog._pkef_files("http://x", TINY_BEHAVIORS, {}))
    monkeypatch.setitem(catalog.CATALOG, "tiny", spec)
    assert catalog.available("tiny", tiny_pkef.parent)
    assert catalog.load_dataset("tiny", tiny_pkef.parent).n_users == 5
    (tiny_pkef / "trn_cart").unlink()
    assert not catalog.available("tiny", tiny_pkef.parent)
    with pytest.raises(DataError, match=r"incomplete: missing behavior 'cart' \(trn_cart\)"):
        catalog.load_dataset("tiny", tiny_pkef.parent)


def test_hashes_equal_sha256sums(shared_datasets):
    sums = {}
    for line in (shared_datasets / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split()
        sums[path.removeprefix("partial/")] = digest
    seen = 0
    for name in ("beibei", "taobao", "tmall", "retailrocket"):
        for file in catalog.get(name).files:
            key = f"{name}/{file.name}"
            if (name, file.name) in REBUILT or key not in sums:
                assert file.verify == VERIFY_SHAPE, key
                continue
            assert file.verify == VERIFY_SHA256 and file.sha256 == sums[key], key
            seen += 1
    assert seen == 13


def test_available_and_load_real(shared_datasets):
    assert catalog.available("taobao", shared_datasets)
    assert catalog.available("retailrocket", shared_datasets)
    assert not catalog.available("beibei", shared_datasets / "partial")
    ds = catalog.load_dataset("retailrocket", shared_datasets)
    assert ds.describe().startswith("retailrocket: 2,174 users x 30,113 items")
