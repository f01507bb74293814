"""The in-memory multi-behavior dataset every model and metric reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from bench.errors import DataError


def _binary_csr(matrix: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    out.data[:] = 1.0
    out.sort_indices()
    return out


@dataclass
class MultiBehaviorDataset:
    """Behaviors ordered upstream -> target; one binary user x item CSR matrix per behavior.

    ``test`` (and ``valid`` where present) is a user x item binary CSR matrix: a user's row holds its
    held-out items (one or several); users with an empty row are not evaluated.
    ``aux_periods`` says which periods of the auxiliary behaviors the training matrices hold
    (``bench.data.periods``); None where the files have no periods.
    Derived views (cumulative counts, normalized bipartite graphs) are computed on demand and cached.
    """

    name: str
    behaviors: tuple[str, ...]
    train: dict[str, sp.csr_matrix]
    test: sp.csr_matrix
    valid: sp.csr_matrix | None = None
    source: str = "memory"
    aux_periods: str | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.behaviors = tuple(self.behaviors)
        where = f"dataset '{self.name}' ({self.source})"
        if len(self.behaviors) == 0:
            raise DataError(f"{where}: no behaviors given; name at least the target behavior")
        if len(set(self.behaviors)) != len(self.behaviors):
            raise DataError(f"{where}: duplicate behavior names in {list(self.behaviors)}; "
                            "give each behavior once, ordered upstream -> target")
        missing = [b for b in self.behaviors if b not in self.train]
        if missing:
            raise DataError(f"{where}: no training matrix for behavior(s) {missing}")
        extra = [b for b in self.train if b not in self.behaviors]
        if extra:
            raise DataError(f"{where}: training matrices {extra} are not in the behavior order "
                            f"{list(self.behaviors)}")
        shapes = {b: tuple(m.shape) for b, m in self.train.items()}
        shape = shapes[self.behaviors[-1]]
        if len(set(shapes.values())) != 1:
            raise DataError(f"{where}: behavior matrices have different shapes {shapes}; "
                            "all must be users x items of the same size")
        self.train = {b: _binary_csr(self.train[b]) for b in self.behaviors}
        self.test = self._check_split(self.test, "test", shape, where)
        if self.valid is not None:
            self.valid = self._check_split(self.valid, "valid", shape, where)
        if self.train[self.target].nnz == 0:
            raise DataError(f"{where}: the target behavior '{self.target}' has no training "
                            "interactions; a dataset needs target interactions to train on")
        overlap = self.test.multiply(self.train[self.target]).nnz
        if overlap:
            raise DataError(f"{where}: {overlap} test item(s) are also in the training matrix of the "
                            f"target behavior '{self.target}'; remove them from training or from test")

    @staticmethod
    def _check_split(matrix, split: str, shape, where: str) -> sp.csr_matrix:
        if not sp.issparse(matrix):
            raise DataError(f"{where}: the {split} split must be a sparse user x item matrix")
        if tuple(matrix.shape) != shape:
            raise DataError(f"{where}: the {split} split has shape {tuple(matrix.shape)}, "
                            f"the behavior matrices {shape}")
        return _binary_csr(matrix)

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self.train[self.target].shape[0]

    @property
    def n_items(self) -> int:
        return self.train[self.target].shape[1]

    @property
    def n_behaviors(self) -> int:
        return len(self.behaviors)

    @property
    def target(self) -> str:
        return self.behaviors[-1]

    def matrices(self) -> list[sp.csr_matrix]:
        """The training matrices in behavior order (upstream -> target)."""
        return [self.train[b] for b in self.behaviors]

    def split(self, name: str) -> sp.csr_matrix:
        if name == "test":
            return self.test
        if name == "valid":
            if self.valid is None:
                raise DataError(f"dataset '{self.name}' has no validation split; use the honest "
                                "protocol's holdout (bench.data.holdout) to make one")
            return self.valid
        raise DataError(f"unknown split '{name}'; use 'test' or 'valid'")

    def eval_users(self, split: str = "test") -> np.ndarray:
        matrix = self.split(split)
        return np.flatnonzero(np.diff(matrix.indptr) > 0)

    # ---- cached derived views ---------------------------------------------------------------------
    def cached(self, key, build):
        """Return the cached view ``key``, building it once with ``build()``."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def cumulative(self, k: int) -> sp.csr_matrix:
        """Count-weighted sum of behaviors 0..k (entries in 1..k+1), not binarized."""
        def build():
            total = self.matrices()[0].copy()
            for m in self.matrices()[1:k + 1]:
                total = total + m
            return total.tocsr()
        return self.cached(("cumulative", k), build)

    def union(self, behaviors: Sequence[str] | None = None) -> sp.csr_matrix:
        """Binary union (logical OR) of the named behaviors (all by default)."""
        names = tuple(behaviors or self.behaviors)

        def build():
            total = sp.csr_matrix(self.train[names[0]].shape, dtype=np.float32)
            for b in names:
                total = total + self.train[b]
            return _binary_csr(total)
        return self.cached(("union", names), build)

    def with_splits(self, train: dict[str, sp.csr_matrix], valid: sp.csr_matrix | None,
                    suffix: str) -> "MultiBehaviorDataset":
        """A copy with other training matrices and validation split (the cache starts empty)."""
        return MultiBehaviorDataset(name=self.name, behaviors=self.behaviors, train=train,
                                    test=self.test, valid=valid, source=f"{self.source}{suffix}",
                                    aux_periods=self.aux_periods)

    def without_empty_behaviors(self) -> "MultiBehaviorDataset":
        """The dataset without the auxiliary behaviors that have no training pair (JD's cart has
        none in its training period): a model learns nothing from them, and its per-behavior
        samplers need pairs to draw. The same object when nothing is empty."""
        empty = [b for b in self.behaviors[:-1] if self.train[b].nnz == 0]
        if not empty:
            return self
        kept = tuple(b for b in self.behaviors if b not in empty)
        return MultiBehaviorDataset(name=self.name, behaviors=kept,
                                    train={b: self.train[b] for b in kept}, test=self.test,
                                    valid=self.valid,
                                    source=f"{self.source} (without empty {', '.join(empty)})",
                                    aux_periods=self.aux_periods)

    def describe(self) -> str:
        counts = ", ".join(f"{b} {self.train[b].nnz:,}" for b in self.behaviors)
        return (f"{self.name}: {self.n_users:,} users x {self.n_items:,} items; {counts}; "
                f"{len(self.eval_users()):,} test users")
