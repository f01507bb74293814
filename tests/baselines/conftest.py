"""Fixture of the baseline-model tests: a small demo dataset."""
from __future__ import annotations

import pytest

from bench.data.demo import make_demo


@pytest.fixture(scope="package")
def demo():
    return make_demo(n_users=200, n_items=300, seed=11)
