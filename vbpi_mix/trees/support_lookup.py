"""Compiled (numba) lookup of a batch's trees in the SBN's support: the root split of every
edge and the conditional entry of every candidate subsplit pair of every node
(vbpi_mix.trees.subsplits).

The support's sorted key arrays (clades and root splits as W-word bitsets, entry and parent
keys as integers) get open-addressing hash tables (Fibonacci hashing, linear probing, at
most half full); a tree needs about a thousand lookups (DS1), which hashing answers faster
than binary searches. One loop over trees replaces a dozen numpy passes (searchsorted,
where) over `[B, N-2, 9]` arrays; the trees are shared among the threads.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from vbpi_mix.compile_presets import compiled, compiled_in_parallel
from vbpi_mix.trees.clade_words import (
    all_taxa_row,
    hash_clade,
    hash_word,
    same_clade,
    split_side_into,
)


@compiled
def hash_slots(keys: np.ndarray) -> np.ndarray:
    """Hash table of the distinct `keys [n, W]` (clades, or integer keys as one uint64 word):
    an int64 array of 2^k >= 2n slots, each holding the index of a key (at its hash slot or
    the next free one after it) or -1."""
    bits = 1
    while (1 << bits) < 2 * keys.shape[0]:
        bits += 1
    slots = np.full(1 << bits, -1, dtype=np.int64)
    shift, mask = np.uint64(64 - bits), slots.size - 1
    for i in range(keys.shape[0]):
        slot = np.int64(hash_clade(keys, i) >> shift)
        while slots[slot] >= 0:
            slot = (slot + 1) & mask
        slots[slot] = i
    return slots


def integer_key_slots(keys: np.ndarray) -> np.ndarray:
    """hash_slots of non-negative int64 keys `[n]`, as one-word keys."""
    return hash_slots(np.ascontiguousarray(keys, dtype=np.int64).view(np.uint64)[:, None])


@compiled
def slot_shift(slots: np.ndarray) -> np.uint64:
    """64 - log2(len(slots)): how far a hashed key is shifted to give its slot."""
    bits = 0
    while (1 << bits) < slots.size:
        bits += 1
    return np.uint64(64 - bits)


@compiled
def key_position(keys: np.ndarray, slots: np.ndarray, shift: np.uint64, key) -> int:
    """Index of the integer `key` in `keys [n]` (hashed into `slots` by integer_key_slots),
    or -1 where it is absent."""
    mask = slots.size - 1
    slot = np.int64(hash_word(key) >> shift)
    while True:
        index = slots[slot]
        if index < 0 or keys[index] == key:
            return index
        slot = (slot + 1) & mask


@compiled
def clade_position(
    clades: np.ndarray, slots: np.ndarray, shift: np.uint64, table: np.ndarray, row: int
) -> int:
    """Index of the clade `table[row]` in `clades [Q, W]` (hashed into `slots`), or -1 where
    it is absent."""
    mask = slots.size - 1
    slot = np.int64(hash_clade(table, row) >> shift)
    while True:
        index = slots[slot]
        if index < 0 or same_clade(clades, index, table, row):
            return index
        slot = (slot + 1) & mask


@compiled_in_parallel
def scoring_ids(
    edge_clades, triples, valid, clades, clade_slots, entry_keys, entry_slots, root_splits,
    root_slots, n_taxa,
):  # fmt: skip
    """Root-split ids `[B, E]` and candidate entry ids `[B, N-2, 9]` (-1 outside the support
    or for an invalid candidate) from a RootingStructure's edge clades, triples and validity,
    and the support's `clades`, `entry_keys` and `root_splits`
    (vbpi_mix.trees.subsplits.SubsplitIndex) with their hash_slots tables.

    Root split of edge e: min(W, X ^ W) of its clade W. Entry of candidate (sister s, sides a,
    b): the key (id(s) q + min(id(a), id(b))) q + max(id(a), id(b)) with q the number of
    clades, as subsplits._entry_keys builds it.
    """
    n_trees, n_edges, words = edge_clades.shape
    n_inner = triples.shape[1]
    full = all_taxa_row(n_taxa, words)
    edge_rows = edge_clades.reshape((n_trees * n_edges, words))
    triple_rows = triples.reshape((n_trees * n_inner * 27, words))  # as rootings writes them
    q = np.int64(clades.shape[0])
    clade_shift, entry_shift = slot_shift(clade_slots), slot_shift(entry_slots)
    root_shift = slot_shift(root_slots)
    root_ids = np.empty((n_trees, n_edges), dtype=np.int64)
    candidate_ids = np.empty((n_trees, n_inner, 9), dtype=np.int64)
    for b in prange(n_trees):
        candidates = candidate_ids[b]
        side = np.empty((1, words), dtype=np.uint64)
        for e in range(n_edges):
            split_side_into(edge_rows, b * n_edges + e, full, n_taxa, side, 0)
            root_ids[b, e] = clade_position(root_splits, root_slots, root_shift, side, 0)
        for v in range(n_inner):
            for slot in range(9):
                candidates[v, slot] = -1
                if not valid[b, v, slot]:
                    continue
                row = ((b * n_inner + v) * 9 + slot) * 3
                sister = clade_position(clades, clade_slots, clade_shift, triple_rows, row)
                side_a = clade_position(clades, clade_slots, clade_shift, triple_rows, row + 1)
                side_b = clade_position(clades, clade_slots, clade_shift, triple_rows, row + 2)
                if sister < 0 or side_a < 0 or side_b < 0:
                    continue
                key = (sister * q + min(side_a, side_b)) * q + max(side_a, side_b)
                candidates[v, slot] = key_position(entry_keys, entry_slots, entry_shift, key)
    return root_ids, candidate_ids
