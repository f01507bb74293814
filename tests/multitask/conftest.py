"""Fixtures of the multi-task decoder and encoder tests."""
from __future__ import annotations

import pytest

from bench.data.demo import make_demo


@pytest.fixture(scope="session")
def small():
    """A small demo dataset (view, cart, buy): fast enough to build every model many times."""
    return make_demo(n_users=120, n_items=150, seed=3)
