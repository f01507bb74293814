"""Layout csv: users' own data with arbitrary ids."""
from __future__ import annotations

import pytest

from bench.data.layouts import load_csv, load_csv_with_ids
from bench.errors import DataError

TRAIN = """user,item,behavior,timestamp
alice,book,view,1
alice,pen,view,2
alice,pen,buy,3
bob,book,view,4
bob,book,cart,5
bob,cup,buy,6
carol,cup,view,7
carol,pen,buy,8
"""
TEST = "user,item\nalice,cup\nbob,pen\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "train.csv").write_text(TRAIN)
    (tmp_path / "test.csv").write_text(TEST)
    return tmp_path


def test_loads_with_sorted_ids(files):
    ds, ids = load_csv_with_ids(files / "train.csv", files / "test.csv", ["view", "cart", "buy"])
    assert ids.users == ("alice", "bob", "carol")
    assert ids.items == ("book", "cup", "pen")
    assert [ds.train[b].nnz for b in ds.behaviors] == [4, 1, 3]
    assert set(zip(*ds.test.nonzero())) == {(0, 1), (1, 2)}


def test_tsv_numeric_ids_sort_numerically(tmp_path):
    (tmp_path / "t.tsv").write_text("user\titem\tbehavior\n10\t2\tbuy\n9\t10\tbuy\n10\t10\tview\n")
    (tmp_path / "s.tsv").write_text("user\titem\n9\t2\n")
    ds, ids = load_csv_with_ids(tmp_path / "t.tsv", tmp_path / "s.tsv", ["view", "buy"])
    assert ids.users == ("9", "10") and ids.items == ("2", "10")
    assert ds.test[0].indices.tolist() == [0]


def test_valid_file(files):
    (files / "valid.csv").write_text("user,item\ncarol,book\n")
    ds = load_csv(files / "train.csv", files / "test.csv", ["view", "cart", "buy"],
                  valid=files / "valid.csv")
    assert ds.valid.nnz == 1


def test_given_delimiter(tmp_path):
    (tmp_path / "t.txt").write_text("user;item;behavior\na;x;buy\na;y;buy\n")
    (tmp_path / "s.txt").write_text("user;item\na;y\n")
    with pytest.raises(DataError, match="cannot tell the delimiter"):
        load_csv(tmp_path / "t.txt", tmp_path / "s.txt", ["buy"])
    with pytest.raises(DataError, match="also in the training"):
        load_csv(tmp_path / "t.txt", tmp_path / "s.txt", ["buy"], delimiter=";")


@pytest.mark.parametrize("order,match", [
    (["view", "buy"], r"behavior\(s\) \['cart'\] occur in the file but not in the given order"),
    (["view", "cart", "like", "buy"], r"ordered behavior\(s\) \['like'\] have no rows"),
])
def test_behavior_order_mismatch(files, order, match):
    with pytest.raises(DataError, match=match):
        load_csv(files / "train.csv", files / "test.csv", order)


def test_missing_column(tmp_path, files):
    (tmp_path / "bad.csv").write_text("user,product,behavior\na,b,buy\n")
    with pytest.raises(DataError, match=r"bad.csv: missing column\(s\) \['item'\]"):
        load_csv(tmp_path / "bad.csv", files / "test.csv", ["buy"])


def test_unknown_test_user_and_item(files):
    (files / "test.csv").write_text("user,item\nalice,cup\ndave,pen\n")
    with pytest.raises(DataError, match=r"test.csv, line 3: user 'dave' does not occur"):
        load_csv(files / "train.csv", files / "test.csv", ["view", "cart", "buy"])
    (files / "test.csv").write_text("user,item\nalice,lamp\n")
    with pytest.raises(DataError, match="item 'lamp'"):
        load_csv(files / "train.csv", files / "test.csv", ["view", "cart", "buy"])


@pytest.mark.parametrize("text,match", [("", "is empty"), ("user,item,behavior\n", "no rows"),
                                        ("user,item,behavior\na,,buy\n", "line 2: empty value")])
def test_empty_files(tmp_path, files, text, match):
    (tmp_path / "e.csv").write_text(text)
    with pytest.raises(DataError, match=match):
        load_csv(tmp_path / "e.csv", files / "test.csv", ["buy"])


def test_missing_file(files):
    with pytest.raises(DataError, match="nope.csv: file not found"):
        load_csv(files / "nope.csv", files / "test.csv", ["buy"])
