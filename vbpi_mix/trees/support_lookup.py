"""Compiled (numba) lookup of a batch's rootings in the SBN's support: which root split and
which conditional entry every (rooting, node) of every tree reads (vbpi_mix.trees.subsplits).

Binary searches in the support's sorted key arrays, one loop over trees; it replaces a dozen
numpy passes (searchsorted, where, take_along_axis) over `[B, N-2, 9]` and `[B, E, N-2]`
arrays whose overhead was most of the cost of scoring a small batch.
"""

from __future__ import annotations

import numba
import numpy as np

from vbpi_mix.trees.rootings import all_taxa


@numba.njit(cache=True, nogil=True)
def _position(sorted_keys: np.ndarray, key) -> int:
    """Index of `key` in the ascending array `sorted_keys`, or -1 where it is absent."""
    position = np.searchsorted(sorted_keys, key)
    if position < sorted_keys.size and sorted_keys[position] == key:
        return position
    return -1


@numba.njit(cache=True, nogil=True)
def scoring_ids(edge_clades, triples, valid, choices, clades, entry_keys, root_splits, n_taxa):
    """Root-split ids `[B, E]` and entry ids `[B, E, N-2]` (-1 outside the support) from a
    RootingStructure's arrays and the support's sorted `clades`, `entry_keys` and
    `root_splits` (vbpi_mix.trees.subsplits.SubsplitIndex).

    Root split of edge e: min(W, X ^ W) of its clade W. Entry of candidate (sister s, sides a,
    b): the key (id(s) q + min(id(a), id(b))) q + max(id(a), id(b)) with q the number of
    clades, as subsplits._entry_keys builds it.
    """
    n_trees, n_edges = edge_clades.shape
    n_inner = triples.shape[1]
    full = all_taxa(n_taxa)
    q = np.int64(clades.size)
    root_ids = np.empty((n_trees, n_edges), dtype=np.int64)
    entry_ids = np.empty((n_trees, n_edges, n_inner), dtype=np.int64)
    candidates = np.empty((n_inner, 9), dtype=np.int64)
    for b in range(n_trees):
        for e in range(n_edges):
            below = edge_clades[b, e]
            root_ids[b, e] = _position(root_splits, min(below, full ^ below))
        for v in range(n_inner):
            for slot in range(9):
                candidates[v, slot] = -1
                if not valid[b, v, slot]:
                    continue
                sister = _position(clades, triples[b, v, slot, 0])
                side_a = _position(clades, triples[b, v, slot, 1])
                side_b = _position(clades, triples[b, v, slot, 2])
                if sister < 0 or side_a < 0 or side_b < 0:
                    continue
                key = (sister * q + min(side_a, side_b)) * q + max(side_a, side_b)
                candidates[v, slot] = _position(entry_keys, key)
        for e in range(n_edges):
            for v in range(n_inner):
                entry_ids[b, e, v] = candidates[v, choices[b, e, v]]
    return root_ids, entry_ids
