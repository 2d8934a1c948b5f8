"""Flatten a batch of unrooted binary trees into per-tree, children-first index arrays.

Tree encoding (the contract between trees and the kernel): for N taxa, nodes 0..N-1 are the
tips in the alignment's taxon order, N..2N-3 the internal nodes, and node 2N-3 is the
(trifurcating) root. `parents[b, v]` is the parent of node v in tree b for v = 0..2N-4, so
edge v is the edge above node v and branch lengths are indexed the same way: `[..., B, E]`,
E = 2N-3. Every internal non-root node has two children, the root three.

Rows: tip i is row i (shared by all trees); tree b's N-3 internal non-root nodes are rows
N + b (N-3) ... N + (b+1) (N-3) - 1 in post-order (every child before its parent), so the
kernel can walk one tree's rows in order, upwards for the likelihood and in reverse,
downwards, for its gradient, with nothing but that tree's vectors in cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vbpi_mix.compile_presets import compiled
from vbpi_mix.errors import VbpiMixError


@dataclass(frozen=True)
class Schedule:
    """Index arrays (int64) for one batch of B trees over N taxa; R = N + B (N-3) rows.

    For internal row r (r >= N), at index r - N: child_rows `[R-N, 2]` and child_edges
    `[R-N, 2]` (flat indices into `[B * E]`). root_child_rows / root_child_edges `[B, 3]`.
    """

    n_trees: int
    n_taxa: int
    child_rows: np.ndarray
    child_edges: np.ndarray
    root_child_rows: np.ndarray
    root_child_edges: np.ndarray

    @property
    def n_edges(self) -> int:
        return 2 * self.n_taxa - 3

    @property
    def n_rows(self) -> int:
        return self.n_taxa + self.n_trees * (self.n_taxa - 3)


_NOT_BINARY, _CYCLE = 1, 2  # error codes of the compiled builder


def build_schedule(parents: np.ndarray, n_taxa: int) -> Schedule:
    """Index arrays for trees given as parent arrays `[B, 2N-3]` (see the module docstring).

    One compiled pass per tree (a walk from the root); no Python per tree or node.
    """
    parents = np.ascontiguousarray(parents, dtype=np.int64)
    if parents.ndim == 1:
        parents = parents[None, :]
    n = n_taxa
    n_trees, n_edges = parents.shape
    if n < 3 or n_edges != 2 * n - 3:
        raise VbpiMixError(f"parent arrays need 2N-3 = {2 * n - 3} entries; got {n_edges}")
    status, *arrays = _schedule_arrays(parents, n)
    if status == _NOT_BINARY:
        raise VbpiMixError("not an unrooted binary tree: each internal node needs two children")
    if status == _CYCLE:
        raise VbpiMixError("not a tree: the parent array contains a cycle")
    return Schedule(n_trees, n, *arrays)


@compiled
def _schedule_arrays(parents: np.ndarray, n: int):
    """(status, child_rows, child_edges, root_child_rows, root_child_edges) for Schedule;
    status _NOT_BINARY or _CYCLE refuses the batch."""
    n_trees, n_edges = parents.shape
    n_inner, root = n - 3, 2 * n - 3
    children = np.empty((n - 2, 3), dtype=np.int64)  # ascending child ids
    filled = np.empty(n - 2, dtype=np.int64)
    stack = np.empty(2 * n - 2, dtype=np.int64)
    order = np.empty(2 * n - 2, dtype=np.int64)
    row_of = np.empty(2 * n - 2, dtype=np.int64)
    row_of[:n] = np.arange(n)  # tips are rows 0..N-1 in every tree
    child_rows = np.empty((n_trees * n_inner, 2), dtype=np.int64)
    child_edges = np.empty((n_trees * n_inner, 2), dtype=np.int64)
    root_child_rows = np.empty((n_trees, 3), dtype=np.int64)
    root_child_edges = np.empty((n_trees, 3), dtype=np.int64)
    failure = (child_rows[:0], child_edges[:0], root_child_rows[:0], root_child_edges[:0])
    for b in range(n_trees):
        filled[:] = 0
        for v in range(n_edges):
            u = parents[b, v] - n
            if u < 0 or u > n - 3 or filled[u] == (3 if u == n - 3 else 2):
                return (_NOT_BINARY, *failure)
            children[u, filled[u]] = v
            filled[u] += 1
        # preorder from the root; a node on a cycle is never reached
        top, visited = 0, 0
        stack[0] = root
        while top >= 0:
            v = stack[top]
            top -= 1
            order[visited] = v
            visited += 1
            if v >= n:
                for k in range(3 if v == root else 2):
                    top += 1
                    stack[top] = children[v - n, k]
        if visited != 2 * n - 2:
            return (_CYCLE, *failure)
        # rows in reversed preorder: children before parents
        row = n + b * n_inner
        for position in range(visited - 1, 0, -1):  # position 0 is the root
            v = order[position]
            if v >= n:
                row_of[v] = row
                row += 1
        for v in range(n, n + n_inner):
            k = row_of[v] - n
            for s in range(2):
                child = children[v - n, s]
                child_rows[k, s] = row_of[child]
                child_edges[k, s] = b * n_edges + child
        for s in range(3):
            child = children[n - 3, s]
            root_child_rows[b, s] = row_of[child]
            root_child_edges[b, s] = b * n_edges + child
    return 0, child_rows, child_edges, root_child_rows, root_child_edges
