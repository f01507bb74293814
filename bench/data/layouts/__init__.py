"""Readers for the on-disk layouts a multi-behavior dataset can come in.

- ``pkef``: pickled scipy matrices ``trn_<behavior>`` plus ``tst_int`` (COPF/PKEF/CIGF releases);
- ``bvae``: text files ``<prefix>_{train,valid,test}`` with 1-based ``user item`` lines (BVAE releases);
- ``csv``: one ``user,item,behavior`` table plus a ``user,item`` test table (users' own data).

Each reader returns a validated :class:`bench.data.dataset.MultiBehaviorDataset` and raises
:class:`bench.errors.DataError` naming the file, the problem and the fix.
"""
from bench.data.layouts.bvae import load_bvae
from bench.data.layouts.pkef import load_pkef, read_matrix, read_test_items
from bench.data.layouts.table import load_csv, load_csv_with_ids

LAYOUTS = ("pkef", "bvae", "csv")

__all__ = ["LAYOUTS", "load_bvae", "load_csv", "load_csv_with_ids", "load_pkef", "read_matrix",
           "read_test_items"]
