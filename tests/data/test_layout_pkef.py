"""Layout pkef: pickled matrices per behavior plus tst_int."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bench.data.layouts import load_pkef
from bench.errors import DataError
from tests.data.conftest import TINY_BEHAVIORS, TINY_PAIRS, tiny_matrix, write_pickle


def test_loads_and_binarizes(tiny_pkef):
    ds = load_pkef(tiny_pkef, TINY_BEHAVIORS)
    assert ds.behaviors == TINY_BEHAVIORS
    assert (ds.n_users, ds.n_items) == (5, 6)
    for behavior, pairs in TINY_PAIRS.items():
        m = ds.train[behavior]
        assert m.nnz == len(pairs)
        assert set(zip(*m.nonzero())) == set(pairs)
        assert set(m.data.tolist()) == {1.0}      # timestamps binarized
    assert ds.test.nnz == 5
    assert ds.eval_users().tolist() == [0, 1, 3, 4]
    assert ds.test[1].indices.tolist() == [0, 5]
    assert ds.valid is None
    assert ds.name == "tiny"


@pytest.mark.parametrize("tst", [
    np.array([3, 0, 1, 1, 4], dtype=np.int64),
    np.array([3, [0, 5], None, 1, 4], dtype=object),
    (3, (0, 5), None, np.int64(1), []),
])
def test_tst_int_variants(tiny_pkef, tst):
    write_pickle(tiny_pkef / "tst_int", tst)
    ds = load_pkef(tiny_pkef, TINY_BEHAVIORS)
    assert ds.test[0].indices.tolist() == [3]


def test_explicit_zero_entries_are_not_interactions(tiny_pkef):
    m = tiny_matrix("view", "csr")
    m.data[:] = 0
    m.data[0] = 7
    write_pickle(tiny_pkef / "trn_view", m)
    assert load_pkef(tiny_pkef, TINY_BEHAVIORS).train["view"].nnz == 1


def test_missing_file_names_behavior_and_incomplete(tiny_pkef):
    (tiny_pkef / "trn_view").unlink()
    with pytest.raises(DataError) as info:
        load_pkef(tiny_pkef, TINY_BEHAVIORS)
    message = str(info.value)
    assert "behavior 'view'" in message and "trn_view" in message and "incomplete" in message
    assert str(tiny_pkef) in message


def test_missing_test_file(tiny_pkef):
    (tiny_pkef / "tst_int").unlink()
    with pytest.raises(DataError, match="tst_int"):
        load_pkef(tiny_pkef, TINY_BEHAVIORS)


def test_foreign_object_instead_of_matrix(tiny_pkef):
    write_pickle(tiny_pkef / "trn_cart", {"rows": [1, 2]})
    with pytest.raises(DataError, match=r"trn_cart: expected a pickled scipy sparse.*found a dict"):
        load_pkef(tiny_pkef, TINY_BEHAVIORS)


def test_dense_array_instead_of_matrix(tiny_pkef):
    write_pickle(tiny_pkef / "trn_cart", np.zeros((5, 6)))
    with pytest.raises(DataError, match="trn_cart.*numpy array of shape"):
        load_pkef(tiny_pkef, TINY_BEHAVIORS)


def test_tst_int_wrong_length(tiny_pkef):
    write_pickle(tiny_pkef / "tst_int", [1, 2, 3])
    with pytest.raises(DataError, match=r"tst_int: has 3 entries but .* 5 users"):
        load_pkef(tiny_pkef, TINY_BEHAVIORS)


@pytest.mark.parametrize("tst,match", [
    ([3, 6, None, 1, 4], r"user 1 has test item id 6, out of range 0\.\.5"),
    ([3, -1, None, 1, 4], "out of range"),
    ([3, [0, 9], None, 1, 4], "out of range"),
    ([3, "x", None, 1, 4], "entry of user 1 is a str"),
    ([3, 1.0, None, 1, 4], "entry of user 1 is a float"),
    ({"u": 1}, "expected a list"),
])
def test_bad_test_entries(tiny_pkef, tst, match):
    write_pickle(tiny_pkef / "tst_int", tst)
    with pytest.raises(DataError, match=match) as info:
        load_pkef(tiny_pkef, TINY_BEHAVIORS)
    assert "tst_int" in str(info.value)


def test_shapes_differ_names_folder(tiny_pkef):
    write_pickle(tiny_pkef / "trn_cart", sp.csr_matrix((5, 7)))
    with pytest.raises(DataError, match="different shapes") as info:
        load_pkef(tiny_pkef, TINY_BEHAVIORS)
    assert str(tiny_pkef) in str(info.value) and "trn_cart 5 x 7" in str(info.value)


def test_expected_shape_from_catalog(tiny_pkef):
    with pytest.raises(DataError, match=r"trn_view: matrix has shape 5 x 6, expected 9 users"):
        load_pkef(tiny_pkef, TINY_BEHAVIORS, n_users=9, n_items=6)


def test_test_item_in_training_target_names_folder(tiny_pkef):
    write_pickle(tiny_pkef / "tst_int", [1, None, None, None, None])  # user 0 bought item 1
    with pytest.raises(DataError, match="also in the training matrix") as info:
        load_pkef(tiny_pkef, TINY_BEHAVIORS)
    assert str(tiny_pkef) in str(info.value)


def test_malicious_matrix_file_is_refused(tiny_pkef):
    from tests.data.conftest import Exploit
    marker = tiny_pkef / "marker"
    write_pickle(tiny_pkef / "trn_buy", Exploit(f"touch {marker}"))
    with pytest.raises(DataError, match="refused"):
        load_pkef(tiny_pkef, TINY_BEHAVIORS)
    assert not marker.exists()
