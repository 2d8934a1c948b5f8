"""Compiled (numba) per-tree walk behind the SBN's rooting tables (vbpi_mix.trees.subsplits).

For trees given as parent arrays it finds, for every internal node v, the nine candidate
(sister, child side a, child side b) bitset triples (slot k of the neighbour on the root's
side x choice of sister, see the subsplits module docstring), and the neighbours, back slots
and node order with which the SBN sums over rootings in O(N) per tree
(vbpi_mix.variational.rooting_sums). One loop over trees with small per-tree buffers
replaces some thirty numpy passes, whose overhead dominated scoring a batch; the trees are
shared among the threads.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from vbpi_mix.compile_presets import compiled, compiled_in_parallel

_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
# the two slots other than slot k, in order
_OTHER = np.array([[1, 2], [0, 2], [0, 1]], dtype=np.int64)


@compiled
def all_taxa(n_taxa: int) -> np.uint64:
    """The bitset of taxa 0..N-1, shifted down from all ones: (1 << N) - 1 overflows at N = 64."""
    return _ALL >> np.uint64(64 - n_taxa)


@compiled_in_parallel
def rooting_structure(parents: np.ndarray, n_taxa: int):
    """For parent arrays `[B, 2N-3]` (tips 0..N-1, encoding root 2N-3): edge clades `[B, E]`
    (the clade below each edge), candidate triples `[B, N-2, 9, 3]` (index 3k + choice),
    their validity `[B, N-2, 9]` (choices 1 and 2 need an internal neighbour), each internal
    node's neighbours `[B, N-2, 3]` (node ids, by slot), back slots `[B, N-2, 3]` (the slot
    of v in its neighbour at slot k; -1 for a tip) and `order [B, N-2]`, the internal nodes
    (0..N-3) children first, the encoding root last.

    Slots of an internal node: its children in ascending node id, then (slot 2) its parent;
    the encoding root's three children in ascending id. Choice 0: the sister is X minus the
    node's clade (rooted on the edge to the neighbour); choices 1 and 2: the neighbour's other
    two sides, in its slot order.
    """
    n = n_taxa
    n_trees, n_edges, n_inner, root = parents.shape[0], 2 * n - 3, n - 2, 2 * n - 3
    full = all_taxa(n)
    edge_clades = np.empty((n_trees, n_edges), dtype=np.uint64)
    triples = np.zeros((n_trees, n_inner, 9, 3), dtype=np.uint64)
    valid = np.zeros((n_trees, n_inner, 9), dtype=np.bool_)
    all_neighbours = np.empty((n_trees, n_inner, 3), dtype=np.int64)
    back_slots = np.empty((n_trees, n_inner, 3), dtype=np.int64)
    order = np.empty((n_trees, n_inner), dtype=np.int64)
    for b in prange(n_trees):  # each tree with its own small buffers
        clade = np.zeros(2 * n - 2, dtype=np.uint64)
        neighbours = all_neighbours[b]
        sides = np.empty((n_inner, 3), dtype=np.uint64)
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
            bit = _ONE << np.uint64(tip)
            node = tip
            clade[node] |= bit
            while node != root:
                node = parents[b, node]
                clade[node] |= bit
        for v in range(n_inner):
            for k in range(3):
                sides[v, k] = clade[neighbours[v, k]]
            if v < n_inner - 1:
                sides[v, 2] = full ^ clade[v + n]
        for v in range(n_inner):
            for k in range(3):
                u = neighbours[v, k]
                back_slot[v, k] = -1
                if u >= n:
                    for j in range(3):
                        if neighbours[u - n, j] == v + n:
                            back_slot[v, k] = j
        for r in range(n_edges):
            edge_clades[b, r] = clade[r]
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
                a, c = sides[v, _OTHER[k, 0]], sides[v, _OTHER[k, 1]]
                sisters = (sides[v, k], _ALL, _ALL)  # a tip neighbour: choice 0 only
                m = back_slot[v, k]
                if m >= 0:
                    u = neighbours[v, k] - n
                    sisters = (sides[v, k], sides[u, _OTHER[m, 0]], sides[u, _OTHER[m, 1]])
                for choice in range(3 if m >= 0 else 1):
                    slot = 3 * k + choice
                    triples[b, v, slot, 0] = sisters[choice]
                    triples[b, v, slot, 1], triples[b, v, slot, 2] = a, c
                    valid[b, v, slot] = True

    return edge_clades, triples, valid, all_neighbours, back_slots, order
