"""Layout bvae: 1-based 'user item' text files per behavior and split."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.data.layouts import load_bvae
from bench.data.layouts.bvae import default_prefixes
from bench.errors import DataError

BEHAVIORS = ("click", "cart", "purchase")


def write_bvae(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("click", "cart", "target"):
        for split in ("train", "valid", "test"):
            (folder / f"{prefix}_{split}").write_text(files.get(f"{prefix}_{split}", ""))
    return folder


@pytest.fixture
def bvae_folder(tmp_path):
    return write_bvae(tmp_path / "jd", {
        "click_train": "1 1\n1 2\n2 3\n3 4\n",
        "click_valid": "1 5\n",
        "click_test": "2 5\n",
        "cart_train": "1 2\n",
        "cart_test": "3 4\n",            # cart seen only in the test period
        "target_train": "1 2\n2 3\n3 4\n\n",
        "target_valid": "1 1\n",
        "target_test": "2 1\n3 5\n",
    })


def test_default_prefixes():
    assert default_prefixes(BEHAVIORS) == {"click": "click", "cart": "cart", "purchase": "target"}


def test_training_input_is_the_training_period_by_default(bvae_folder):
    ds = load_bvae(bvae_folder, BEHAVIORS)
    assert (ds.n_users, ds.n_items) == (3, 5)
    assert ds.aux_periods == "train"
    assert set(zip(*ds.train["click"].nonzero())) == {(0, 0), (0, 1), (1, 2), (2, 3)}
    assert set(zip(*ds.train["cart"].nonzero())) == {(0, 1)}
    assert ds.train["purchase"].nnz == 3
    assert list(zip(*ds.valid.nonzero())) == [(0, 0)]
    assert set(zip(*ds.test.nonzero())) == {(1, 0), (2, 4)}
    assert ds.name == "jd"


@pytest.mark.parametrize("periods,clicks,carts", [
    ("train+valid", {(0, 0), (0, 1), (1, 2), (2, 3), (0, 4)}, {(0, 1)}),
    ("all", {(0, 0), (0, 1), (1, 2), (2, 3), (0, 4), (1, 4)}, {(0, 1), (2, 3)}),
])
def test_later_periods_of_auxiliary_behaviors_on_request(bvae_folder, periods, clicks, carts):
    ds = load_bvae(bvae_folder, BEHAVIORS, aux_periods=periods)
    assert ds.aux_periods == periods
    assert set(zip(*ds.train["click"].nonzero())) == clicks
    assert set(zip(*ds.train["cart"].nonzero())) == carts
    # the target's later periods stay held out whatever the option
    assert ds.train["purchase"].nnz == 3
    assert set(zip(*ds.test.nonzero())) == {(1, 0), (2, 4)}


def test_unknown_period_choice_names_the_option(bvae_folder):
    from bench.errors import ConfigError
    with pytest.raises(ConfigError, match="--aux-periods"):
        load_bvae(bvae_folder, BEHAVIORS, aux_periods="future")


def test_catalog_sizes_and_empty_valid(tmp_path):
    folder = write_bvae(tmp_path / "x", {"click_train": "1 1\n", "cart_train": "",
                                         "target_train": "1 2\n", "target_test": "1 3\n"})
    ds = load_bvae(folder, BEHAVIORS, n_users=4, n_items=10)
    assert (ds.n_users, ds.n_items) == (4, 10)
    assert ds.valid is None
    with pytest.raises(DataError, match=r"item id 3 is out of range.*2 items"):
        load_bvae(folder, BEHAVIORS, n_users=4, n_items=2)


def test_custom_prefixes(tmp_path):
    folder = write_bvae(tmp_path / "x", {"click_train": "1 1\n", "target_train": "1 2\n",
                                         "target_test": "1 3\n"})
    ds = load_bvae(folder, ("view", "basket", "buy"),
                   prefixes={"view": "click", "basket": "cart", "buy": "target"})
    assert ds.behaviors == ("view", "basket", "buy")


@pytest.mark.parametrize("text,line", [("1 2\n1 x\n", 2), ("1 2\n\n3\n", 3), ("0 1\n", 1),
                                       ("1 2 3\n", 1), ("1,2\n", 1), ("-1 2\n", 1)])
def test_bad_line_names_file_and_line(bvae_folder, text, line):
    (bvae_folder / "cart_valid").write_text(text)
    with pytest.raises(DataError, match=rf"cart_valid, line {line}:"):
        load_bvae(bvae_folder, BEHAVIORS)


def test_missing_file(bvae_folder):
    (bvae_folder / "click_valid").unlink()
    with pytest.raises(DataError, match=r"missing file\(s\) \['click_valid'\].*incomplete"):
        load_bvae(bvae_folder, BEHAVIORS)


def test_binary_file(bvae_folder):
    (bvae_folder / "click_test").write_bytes(b"\x80\x04\x95")
    with pytest.raises(DataError, match="click_test: not a text file"):
        load_bvae(bvae_folder, BEHAVIORS)
