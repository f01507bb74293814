"""Held-out periods stay held out: the csv layout's auxiliary rows in valid/test files, and JD's
period files (the must-show counts of the periods issue)."""
from __future__ import annotations

import pytest

from bench.data.layouts import load_csv
from bench.data.periods import sees_test_period
from bench.errors import DataError

BEHAVIORS = ("view", "cart", "buy")


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


@pytest.fixture
def csv_folder(tmp_path):
    folder = tmp_path / "shop"
    write(folder, "train.csv", "user,item,behavior\n1,10,view\n1,11,buy\n2,12,view\n2,10,buy\n"
                               "3,11,cart\n3,12,buy\n")
    write(folder, "test.csv", "user,item,behavior\n1,12,buy\n2,11,view\n2,11,buy\n3,10,cart\n")
    write(folder, "valid.csv", "user,item,behavior\n1,10,cart\n3,10,buy\n")
    return folder


def pairs(matrix):
    return set(zip(*(a.tolist() for a in matrix.nonzero())))


def test_csv_auxiliary_rows_of_later_periods_stay_out_by_default(csv_folder):
    ds = load_csv(csv_folder / "train.csv", csv_folder / "test.csv", BEHAVIORS,
                  valid=csv_folder / "valid.csv")
    assert ds.aux_periods == "train"
    assert pairs(ds.train["view"]) == {(0, 0), (1, 2)}
    assert pairs(ds.train["cart"]) == {(2, 1)}
    assert pairs(ds.test) == {(0, 2), (1, 1)}          # only the target's rows are held out
    assert pairs(ds.valid) == {(2, 0)}


def test_csv_later_periods_on_request(csv_folder):
    ds = load_csv(csv_folder / "train.csv", csv_folder / "test.csv", BEHAVIORS,
                  valid=csv_folder / "valid.csv", aux_periods="all")
    assert sees_test_period(ds.aux_periods)
    assert pairs(ds.train["view"]) == {(0, 0), (1, 2), (1, 1)}
    assert pairs(ds.train["cart"]) == {(2, 1), (0, 0), (2, 0)}
    assert pairs(ds.test) == {(0, 2), (1, 1)}
    ds = load_csv(csv_folder / "train.csv", csv_folder / "test.csv", BEHAVIORS,
                  valid=csv_folder / "valid.csv", aux_periods="train+valid")
    assert pairs(ds.train["cart"]) == {(2, 1), (0, 0)}
    assert pairs(ds.train["view"]) == {(0, 0), (1, 2)}


def test_csv_without_behavior_column_has_no_periods(tmp_path):
    folder = tmp_path / "plain"
    write(folder, "train.csv", "user,item,behavior\n1,10,view\n1,11,buy\n2,10,buy\n")
    write(folder, "test.csv", "user,item\n2,11\n")
    ds = load_csv(folder / "train.csv", folder / "test.csv", BEHAVIORS[::2])
    assert ds.aux_periods is None


def test_csv_unknown_behavior_in_test_file_is_named(csv_folder):
    write(csv_folder, "test.csv", "user,item,behavior\n1,12,buy\n2,11,click\n")
    with pytest.raises(DataError, match=r"test.csv: column 'behavior' has value\(s\) \['click'\]"):
        load_csv(csv_folder / "train.csv", csv_folder / "test.csv", BEHAVIORS)


def test_jd_default_training_input_and_seen_share(real_data, capsys):
    from bench.data.cli import main
    assert main(["stats", "jd", "--data-dir", str(real_data), "--patterns", "user"]) == 0
    out = capsys.readouterr().out
    assert "click 217,977; favourite 7,380; cart 0; purchase 60,967" in out
    assert "(of 5,013): click 7.1% (358)" in out
    assert main(["stats", "jd", "--data-dir", str(real_data), "--patterns", "user",
                 "--aux-periods", "all"]) == 0
    out = capsys.readouterr().out
    assert "every period of the auxiliary behaviors, test period included" in out
    assert "(of 5,013): click 82.2%" in out


def test_jd_check_compares_training_period_counts(real_data, capsys):
    from bench.data.cli import main
    assert main(["check", "jd", "--data-dir", str(real_data)]) == 0
    out = capsys.readouterr().out
    assert "training input: the training period of every behavior" in out
    assert "click 7.1%" in out
