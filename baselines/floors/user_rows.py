"""A sparse user x item matrix kept on a device, whose rows come out as a dense block.

The non-trainable floors (``pop-seen``, ``item-knn``) score from the users' own interaction rows;
this gathers a block of rows without a Python loop per user and without densifying the matrix.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


class UserRows:
    """CSR arrays of a user x item matrix on ``device``; ``dense(users)`` is [len(users), items]."""

    def __init__(self, matrix: sp.spmatrix, device: torch.device | str) -> None:
        m = sp.csr_matrix(matrix, dtype=np.float32)
        m.sum_duplicates()
        self.shape = m.shape
        self.indptr = torch.as_tensor(m.indptr.astype(np.int64), device=device)
        self.indices = torch.as_tensor(m.indices.astype(np.int64), device=device)
        self.values = torch.as_tensor(m.data, device=device)

    def dense(self, users: torch.Tensor) -> torch.Tensor:
        users = users.to(self.indptr.device).long()
        starts = self.indptr[users]
        lengths = self.indptr[users + 1] - starts
        block_rows = torch.repeat_interleave(torch.arange(len(users), device=users.device),
                                             lengths)
        # position of each entry inside its row, then its index in the CSR arrays
        first_of_row = torch.cumsum(lengths, 0) - lengths
        within = torch.arange(len(block_rows), device=users.device) - first_of_row[block_rows]
        where = starts[block_rows] + within
        out = torch.zeros(len(users), self.shape[1], device=users.device)
        out[block_rows, self.indices[where]] = self.values[where]
        return out
