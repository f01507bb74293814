"""Datasets named on a command line: catalog names and folders of your own data, read with the
options of `bench data check`; the errors name the file, the option and the fix."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.data.select import (FolderOptions, behaviors_of, dataset_name, is_folder,
                               load_datasets, load_folder)
from bench.errors import BenchError, ConfigError, DataError

TRAIN = "user,item,behavior\nu1,i1,view\nu1,i2,buy\nu2,i1,buy\nu2,i3,view\nu3,i3,buy\n"
TEST = "user,item\nu1,i3\nu2,i2\n"
CSV = FolderOptions("csv", ("view", "buy"))


def shop(root: Path, name: str = "shop", files: dict[str, str] | None = None) -> Path:
    folder = root / name
    folder.mkdir()
    for file, text in (files or {"train.csv": TRAIN, "test.csv": TEST}).items():
        (folder / file).write_text(text)
    return folder


def test_a_csv_folder_loads_from_its_default_files_and_is_named_after_the_folder(tmp_path):
    folder = shop(tmp_path, files={"train.csv": TRAIN, "test.csv": TEST,
                                   "valid.csv": "user,item\nu3,i1\n"})
    dataset, = load_datasets([str(folder)], None, CSV)
    assert dataset.name == "shop" and dataset.behaviors == ("view", "buy")
    assert (dataset.n_users, dataset.n_items) == (3, 3)
    assert dataset.train["buy"].nnz == 3 and dataset.test.nnz == 2
    assert dataset.valid is not None and dataset.valid[2, 0] == 1          # u3 -> i1
    assert behaviors_of("shop") == ("view", "buy")


def test_tab_separated_defaults_and_named_files(tmp_path):
    tsv = shop(tmp_path, "tabs", {"train.tsv": TRAIN.replace(",", "\t"),
                                  "test.tsv": TEST.replace(",", "\t")})
    assert load_folder(tsv, CSV).train["view"].nnz == 2
    named = shop(tmp_path, "named", {"all.csv": TRAIN, "held.csv": TEST})
    dataset = load_folder(named, FolderOptions("csv", ("view", "buy"), train="all.csv",
                                               test="held.csv"))
    assert dataset.name == "named" and dataset.test.nnz == 2


def test_catalog_names_and_folders_mix(tmp_path):
    folder = shop(tmp_path)
    demo, own = load_datasets(["demo", str(folder)], None, CSV)
    assert (demo.name, own.name) == ("demo", "shop")
    assert not is_folder("demo", CSV) and is_folder(str(folder), CSV)
    assert not is_folder(str(folder), None)
    assert dataset_name(str(folder), CSV) == "shop" and dataset_name("demo", CSV) == "demo"


def test_options_come_from_the_command_line():
    args = argparse.Namespace(layout="bvae", behaviors="click, buy", train_file=None,
                              test_file=None, valid_file=None, delimiter=None, prefixes="c,target")
    assert FolderOptions.from_args(args) == FolderOptions("bvae", ("click", "buy"),
                                                          prefixes=("c", "target"))
    assert FolderOptions.from_args(argparse.Namespace(layout=None)) is None
    with pytest.raises(DataError, match="--behaviors is required with --layout"):
        FolderOptions.from_args(argparse.Namespace(layout="csv", behaviors=" , "))


@pytest.mark.parametrize("files, options, message", [
    ({"test.csv": TEST}, CSV, "no train.csv (or train.tsv), the csv layout's train table "
                              "(user,item,behavior rows); add it or name another file with "
                              "--train FILE"),
    ({"train.csv": TRAIN}, CSV, "no test.csv (or test.tsv)"),
    ({"train.csv": TRAIN, "test.csv": TEST}, FolderOptions("csv", ("view", "cart", "buy")),
     "train.csv: ordered behavior(s) ['cart'] have no rows in the file"),
    ({"train.csv": TRAIN, "test.csv": "user,item\nu9,i1\n"}, CSV,
     "test.csv, line 2: user 'u9' does not occur in the training file"),
])
def test_bad_folders_name_the_file_and_the_fix(tmp_path, files, options, message):
    folder = shop(tmp_path, files=files)
    with pytest.raises(DataError) as err:
        load_datasets([str(folder)], None, options)
    assert message in str(err.value) and str(folder) in str(err.value)


def test_a_folder_without_layout_and_an_unknown_name_are_refused(tmp_path):
    folder = shop(tmp_path)
    with pytest.raises(ConfigError, match=r"a folder, not a catalog name; .* pass --layout"):
        load_datasets([str(folder)], None)
    with pytest.raises(ConfigError, match=r"unknown dataset\(s\) \['nosuch'\]; valid datasets: "
                                          r"beibei, .*, demo, all, or a folder"):
        load_datasets(["nosuch"], None)
    with pytest.raises(BenchError, match="dataset folder not found"):
        load_datasets([str(tmp_path / "absent")], None, CSV)
