"""Compiled (numba) per-tree walk behind the SBN's rooting tables (vbpi_mix.trees.subsplits).

For trees given as parent arrays it finds, for every internal node v, the nine candidate
(sister, child side a, child side b) clade triples (slot k of the neighbour on the root's
side x choice of sister, see the subsplits module docstring), and the neighbours, back slots
and node order with which the SBN sums over rootings in O(N) per tree
(vbpi_mix.variational.rooting_sums). Clades are W-word bitsets (vbpi_mix.trees.clade_words).
One loop over trees with small per-tree buffers replaces some thirty numpy passes, whose
overhead dominated scoring a batch; the trees are shared among the threads.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from vbpi_mix.compile_presets import compiled_in_parallel
from vbpi_mix.trees.clade_words import add_taxon, all_taxa_row, copy_clade, xor_clades

# the two slots other than slot k, in order
_OTHER = np.array([[1, 2], [0, 2], [0, 1]], dtype=np.int64)


@compiled_in_parallel
def rooting_structure(parents: np.ndarray, n_taxa: int, words: int):
    """For parent arrays `[B, 2N-3]` (tips 0..N-1, encoding root 2N-3) and clades of `words`
    words: edge clades `[B, E, W]` (the clade below each edge), candidate triples
    `[B, N-2, 9, 3, W]` (index 3k + choice), their validity `[B, N-2, 9]` (choices 1 and 2
    need an internal neighbour), each internal node's neighbours `[B, N-2, 3]` (node ids, by
    slot), back slots `[B, N-2, 3]` (the slot of v in its neighbour at slot k; -1 for a tip)
    and `order [B, N-2]`, the internal nodes (0..N-3) children first, the encoding root last.

    Slots of an internal node: its children in ascending node id, then (slot 2) its parent;
    the encoding root's three children in ascending id. Choice 0: the sister is X minus the
    node's clade (rooted on the edge to the neighbour); choices 1 and 2: the neighbour's other
    two sides, in its slot order. Clades are written through two-dimensional `[rows, W]`
    views (vbpi_mix.trees.clade_words).
    """
    n = n_taxa
    n_trees, n_edges, n_inner, root = parents.shape[0], 2 * n - 3, n - 2, 2 * n - 3
    full = all_taxa_row(n, words)
    edge_clades = np.empty((n_trees, n_edges, words), dtype=np.uint64)
    triples = np.zeros((n_trees, n_inner, 9, 3, words), dtype=np.uint64)
    valid = np.zeros((n_trees, n_inner, 9), dtype=np.bool_)
    all_neighbours = np.empty((n_trees, n_inner, 3), dtype=np.int64)
    back_slots = np.empty((n_trees, n_inner, 3), dtype=np.int64)
    order = np.empty((n_trees, n_inner), dtype=np.int64)
    edge_rows = edge_clades.reshape((n_trees * n_edges, words))
    # triple j of candidate `slot` of node v of tree b: row ((b (N-2) + v) 9 + slot) 3 + j
    triple_rows = triples.reshape((n_trees * n_inner * 27, words))
    for b in prange(n_trees):  # each tree with its own small buffers
        clade = np.zeros((2 * n - 2, words), dtype=np.uint64)
        neighbours = all_neighbours[b]
        sides = np.empty((3 * n_inner, words), dtype=np.uint64)  # row 3v + k
        back_slot = back_slots[b]
        filled = np.zeros(n_inner, dtype=np.int64)
        stack = np.empty(n_inner, dtype=np.int64)
        for node in range(root):  # ascending ids: children in ascending order
            v = parents[b, node] - n
            neighbours[v, filled[v]] = node
            filled[v] += 1
        for v in range(n_inner - 1):
            neighbours[v, 2] = parents[b, v + n]

        for tip in range(n):
            node = tip
            add_taxon(clade, node, tip)
            while node != root:
                node = parents[b, node]
                add_taxon(clade, node, tip)
        for v in range(n_inner):
            for k in range(3):
                copy_clade(clade, neighbours[v, k], sides, 3 * v + k)
            if v < n_inner - 1:
                xor_clades(full, 0, clade, v + n, sides, 3 * v + 2)
        for v in range(n_inner):
            for k in range(3):
                u = neighbours[v, k]
                back_slot[v, k] = -1
                if u >= n:
                    for j in range(3):
                        if neighbours[u - n, j] == v + n:
                            back_slot[v, k] = j
        for r in range(n_edges):
            copy_clade(clade, r, edge_rows, b * n_edges + r)
        # a walk from the encoding root, parents first, written from the end: children first
        stack[0], top, position = n_inner - 1, 1, n_inner
        while top > 0:
            top -= 1
            v = stack[top]
            position -= 1
            order[b, position] = v
            for k in range(3 if v == n_inner - 1 else 2):
                if neighbours[v, k] >= n:
                    stack[top] = neighbours[v, k] - n
                    top += 1
        for v in range(n_inner):
            for k in range(3):
                m = back_slot[v, k]  # a tip neighbour (m = -1): choice 0 only
                for choice in range(3 if m >= 0 else 1):
                    slot = 3 * k + choice
                    row = ((b * n_inner + v) * 9 + slot) * 3
                    if choice == 0:
                        copy_clade(sides, 3 * v + k, triple_rows, row)
                    else:
                        u = neighbours[v, k] - n
                        copy_clade(sides, 3 * u + _OTHER[m, choice - 1], triple_rows, row)
                    copy_clade(sides, 3 * v + _OTHER[k, 0], triple_rows, row + 1)
                    copy_clade(sides, 3 * v + _OTHER[k, 1], triple_rows, row + 2)
                    valid[b, v, slot] = True

    return edge_clades, triples, valid, all_neighbours, back_slots, order
