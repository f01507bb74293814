"""KMCLR's item knowledge graph: read from a file, or built from item co-interactions, and laid out
as the release's per-item slots (model-specs-table2.md Part 3, "KMCLR", "KG file" and "How to fit
into the benchmark").

File format (``kg_file``, plain ``kmclr``): a text file with one triple per line,
``head relation tail``, three non-negative integers separated by spaces or tabs. ``head`` is an
item id of the dataset (0-based, the suite's item numbering, i.e. the column of the item in the
training matrices); ``relation`` and ``tail`` are ids of your own (tails index the entity tables,
not the item table). Blank lines and lines starting with ``#`` are skipped. As in the release
(``Kg_Data.KGDataset``), duplicate triples count once and triples whose head is not an item id
(``head >= n_items``) are dropped; entity_count = max tail + 2 and relation_count = max relation
+ 2 (the counts also serve as the padding ids).

Co-interaction graph (``kmclr-cokg``), SSLRec's ``tmall/datapreprocessing.py`` recipe, computed
from the training matrices the model is given: per behavior b, with B the binary user x item
matrix, a triple (i, b, j) for every item pair with (B^T B)_ij > 4 for a view/click behavior and
> 3 otherwise; the diagonal is kept; the relation is the behavior's index in dataset order; the
triples are ordered by (relation, head, tail). No external knowledge enters it.

Slots: per item, its first ``slots`` (relation, tail) pairs in file order (on the co-interaction
graph: its lowest-id co-viewed items), padded with (relation_count, entity_count).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from bench.errors import ConfigError

VIEW_NAMES = ("pv", "view", "click", "views", "clicks")
ITEM_BLOCK = 2048       # item rows of B^T B computed at a time (memory)


@dataclass
class ItemKG:
    """Deduplicated (head, relation, tail) triples, heads below n_items, in file order."""

    triples: np.ndarray     # [n, 3] int64
    entity_count: int       # max tail + 2 (the padding entity id)
    relation_count: int     # max relation + 2 (the padding relation id)
    source: str

    @property
    def n_triples(self) -> int:
        return int(self.triples.shape[0])


def _dedupe_in_order(triples: np.ndarray) -> np.ndarray:
    """Rows of ``triples`` without repeats, first occurrences in their original order."""
    if len(triples) == 0:
        return triples
    _, first = np.unique(triples, axis=0, return_index=True)
    return triples[np.sort(first)]


def _from_rows(triples: np.ndarray, n_items: int, source: str) -> ItemKG:
    triples = _dedupe_in_order(np.asarray(triples, dtype=np.int64).reshape(-1, 3))
    if len(triples) == 0:
        raise ConfigError(f"{source}: the knowledge graph has no triples")
    # the release takes both counts over every deduplicated row, dropped heads included
    entity_count = int(triples[:, 2].max()) + 2
    relation_count = int(triples[:, 1].max()) + 2
    kept = triples[triples[:, 0] < n_items]
    if len(kept) == 0:
        raise ConfigError(f"{source}: no triple has an item id (below {n_items}) as its head; "
                          "heads must be the dataset's 0-based item ids")
    return ItemKG(kept, entity_count, relation_count, source)


def _bad_line(path: Path, number: int, line: str, why: str) -> ConfigError:
    return ConfigError(f"kg_file '{path}', line {number}: {why} (got {line.strip()[:80]!r}); each "
                       "line must be 'head relation tail', three non-negative integers, the head "
                       "an item id of the dataset; fix or delete the line")


def _scan_for_error(path: Path, lines: Sequence[str]) -> ConfigError:
    """The first malformed line of a file that did not parse in one pass."""
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        if len(fields) != 3:
            return _bad_line(path, number, line, f"{len(fields)} fields instead of 3")
        for name, field in zip(("head", "relation", "tail"), fields):
            try:
                value = int(field)
            except ValueError:
                return _bad_line(path, number, line, f"the {name} '{field}' is not an integer")
            if value < 0:
                return _bad_line(path, number, line, f"the {name} {value} is negative")
    return ConfigError(f"kg_file '{path}': could not be read as 'head relation tail' lines")


def read_kg_file(path: str | Path, n_items: int) -> ItemKG:
    """Parse ``path`` (format in the module docstring); errors name the file, the line and the
    fix."""
    path = Path(path)
    if not str(path) or not path.is_file():
        raise ConfigError(f"kg_file '{path}' does not exist; give the path of a 'head relation "
                          "tail' text file (--set kg_file=PATH), or use kmclr-cokg / kmclr-nokg "
                          "when there is no knowledge graph")
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not kept:
        raise ConfigError(f"kg_file '{path}' holds no triple; write one 'head relation tail' line "
                          "per triple")
    try:
        values = np.array([line.split() for line in kept], dtype=np.int64)
    except (ValueError, OverflowError):
        raise _scan_for_error(path, lines) from None
    if values.ndim != 2 or values.shape[1] != 3 or (values < 0).any():
        raise _scan_for_error(path, lines)
    return _from_rows(values, n_items, f"kg_file '{path}'")


def co_interaction_threshold(behavior: str, view_threshold: int, threshold: int) -> int:
    """SSLRec's cut: view/click > 4, every other behavior > 3 (the defaults)."""
    return view_threshold if behavior.lower() in VIEW_NAMES else threshold


def co_interaction_triples(matrix: sp.spmatrix, relation: int, threshold: int) -> np.ndarray:
    """(i, relation, j) for every item pair with (B^T B)_ij > threshold, B the binary matrix;
    rows ordered by (i, j), the diagonal included."""
    b = sp.csc_matrix((sp.csr_matrix(matrix) != 0).astype(np.int64))
    bt = sp.csr_matrix(b.T)
    n_items = b.shape[1]
    parts = []
    for start in range(0, n_items, ITEM_BLOCK):
        block = sp.csr_matrix(bt[start:start + ITEM_BLOCK] @ b)
        block.data = (block.data > threshold).astype(np.int8)
        block.eliminate_zeros()
        block.sort_indices()
        heads = np.repeat(np.arange(block.shape[0], dtype=np.int64), np.diff(block.indptr))
        parts.append(np.stack([heads + start, np.full_like(heads, relation),
                               block.indices.astype(np.int64)], axis=1))
    return np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.int64)


def co_interaction_kg(matrices: Sequence[sp.spmatrix], behaviors: Sequence[str],
                      view_threshold: int = 4, threshold: int = 3) -> ItemKG:
    """The co-interaction item graph of ``matrices`` (one per behavior, dataset order)."""
    n_items = matrices[0].shape[1]
    triples = [co_interaction_triples(m, r, co_interaction_threshold(b, view_threshold, threshold))
               for r, (m, b) in enumerate(zip(matrices, behaviors))]
    rows = np.concatenate(triples)
    if len(rows) == 0:
        raise ConfigError("kmclr-cokg: no item pair is co-interacted often enough for the "
                          f"co-interaction graph (thresholds {view_threshold}/{threshold}); lower "
                          "cokg_view_threshold / cokg_threshold or use kmclr-nokg")
    return _from_rows(rows, n_items, "co-interaction graph")


@dataclass
class KGLayout:
    """The KG as the model reads it: per-item slots and per-head pair lists (for the TransR and
    TATEC samples)."""

    slot_tails: np.ndarray      # [n_items, slots]
    slot_relations: np.ndarray  # [n_items, slots]
    heads: np.ndarray           # items with at least one triple, in order of first appearance
    pair_indptr: np.ndarray     # CSR over head *positions*: pairs of heads[p]
    pair_relations: np.ndarray
    pair_tails: np.ndarray
    entity_count: int
    relation_count: int


def layout(kg: ItemKG, n_items: int, slots: int) -> KGLayout:
    """Slots (the first ``slots`` pairs per item in file order, padded) and pair lists."""
    h, r, t = kg.triples[:, 0], kg.triples[:, 1], kg.triples[:, 2]
    order = np.argsort(h, kind="stable")          # by head, file order within a head
    hs, rs, ts = h[order], r[order], t[order]
    counts = np.bincount(hs, minlength=n_items)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(hs)) - starts[hs]
    keep = rank < slots
    slot_tails = np.full((n_items, slots), kg.entity_count, dtype=np.int64)
    slot_relations = np.full((n_items, slots), kg.relation_count, dtype=np.int64)
    slot_tails[hs[keep], rank[keep]] = ts[keep]
    slot_relations[hs[keep], rank[keep]] = rs[keep]
    _, first = np.unique(h, return_index=True)
    heads = h[np.sort(first)]
    indptr = np.concatenate([[0], np.cumsum(counts[heads])])
    # pairs laid out head after head in the order of ``heads``
    pos_of_item = np.full(n_items, -1, dtype=np.int64)
    pos_of_item[heads] = np.arange(len(heads))
    by_position = np.argsort(pos_of_item[h], kind="stable")
    return KGLayout(slot_tails, slot_relations, heads, indptr, r[by_position], t[by_position],
                    kg.entity_count, kg.relation_count)
