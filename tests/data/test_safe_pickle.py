"""The restricted unpickler loads data files and refuses anything that would run code."""
from __future__ import annotations

import builtins
import pickle
import subprocess

import numpy as np
import pytest
import scipy.sparse as sp

from bench.data import safe_pickle
from bench.errors import DataError
from tests.data.conftest import Exploit, write_pickle


@pytest.mark.parametrize("protocol", [3, 4, 5])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_matrices_round_trip(tmp_path, protocol, fmt):
    matrix = sp.random(7, 9, density=0.3, format=fmt, random_state=0)
    loaded = safe_pickle.load(write_pickle(tmp_path / "m", matrix, protocol))
    assert type(loaded) is type(matrix)
    assert (loaded != matrix).nnz == 0


@pytest.mark.parametrize("obj", [
    [None, 3, [1, 2]],
    np.array([None, 3, [1, 2]], dtype=object),
    np.arange(5, dtype=np.int64),
    {"a": (1, 2.5, "x", b"y", True)},
    [np.int64(4), np.float32(1.5)],
])
def test_plain_containers_and_arrays(tmp_path, obj):
    loaded = safe_pickle.load(write_pickle(tmp_path / "o", obj))
    assert repr(loaded) == repr(obj)


def test_old_numpy_and_scipy_spellings_are_mapped(tmp_path):
    # An old-numpy/old-scipy protocol 3 pickle names numpy.core.multiarray and scipy.sparse.csr.
    data = pickle.dumps(sp.csr_matrix(np.eye(3)), protocol=3)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    data = data.replace(b"scipy.sparse._csr", b"scipy.sparse.csr")
    assert b"numpy.core.multiarray" in data and b"scipy.sparse.csr\n" in data
    loaded = safe_pickle.loads(data, "old")
    assert loaded.nnz == 3


@pytest.mark.parametrize("payload,refused", [
    (Exploit("touch {marker}"), "system"),
    ("eval", "builtins.eval"),
    ("popen", "subprocess.Popen"),
])
def test_code_execution_is_refused_without_running(tmp_path, payload, refused):
    marker = tmp_path / "marker"
    if payload == "eval":
        class Evil:
            def __reduce__(self):
                return (builtins.eval, (f"open({str(marker)!r}, 'w')",))
        obj = Evil()
    elif payload == "popen":
        class Evil:
            def __reduce__(self):
                return (subprocess.Popen, (["touch", str(marker)],))
        obj = Evil()
    else:
        obj = Exploit(payload.command.format(marker=marker))
    path = write_pickle(tmp_path / "trn_buy", obj)
    with pytest.raises(DataError) as info:
        safe_pickle.load(path)
    assert str(path) in str(info.value)
    assert refused in str(info.value)
    assert "refused" in str(info.value)
    assert not marker.exists()


def test_nested_refused_global_inside_allowed_container(tmp_path):
    marker = tmp_path / "marker"
    path = write_pickle(tmp_path / "tst_int", [1, None, Exploit(f"touch {marker}")])
    with pytest.raises(DataError, match="refused"):
        safe_pickle.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"user item\n1 2\n", b"\x80\x04\x95", b"PK\x03\x04zip"])
def test_not_a_pickle(tmp_path, content):
    path = tmp_path / "trn_view"
    path.write_bytes(content)
    with pytest.raises(DataError, match="truncated or not a pickle") as info:
        safe_pickle.load(path)
    assert str(path) in str(info.value)


def test_truncated_real_style_pickle(tmp_path):
    data = pickle.dumps(sp.csr_matrix(np.eye(50)), protocol=4)
    path = tmp_path / "trn_cart"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or not a pickle"):
        safe_pickle.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        safe_pickle.load(tmp_path / "nope")


def test_all_real_files_load(shared_datasets):
    files = sorted(p for p in shared_datasets.rglob("*")
                   if p.is_file() and (p.name.startswith("trn_") or p.name == "tst_int"))
    assert len(files) == 15
    for path in files:
        obj = safe_pickle.load(path)
        if path.name.startswith("trn_"):
            assert sp.issparse(obj), path
        else:
            assert isinstance(obj, (list, np.ndarray)), path
