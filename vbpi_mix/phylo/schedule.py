"""Flatten a batch of unrooted binary trees into level-ordered index arrays for the kernel.

Tree encoding (the contract between trees and the kernel): for N taxa, nodes 0..N-1 are the
tips in the alignment's taxon order, N..2N-3 the internal nodes, and node 2N-3 is the
(trifurcating) root. `parents[b, v]` is the parent of node v in tree b for v = 0..2N-4, so
edge v is the edge above node v and branch lengths are indexed the same way: `[..., B, E]`,
E = 2N-3. Every internal non-root node has two children, the root three.

Rows of the kernel's partials buffer: tip i is row i (shared by all trees); the internal
non-root nodes follow in segments: the batch is cut into chunks of consecutive trees (small
enough for the chunk's partials to stay in cache), and each chunk's nodes are grouped by level
(height above the tips). Segment s is the contiguous rows [segment_bounds[s],
segment_bounds[s + 1]); every child lies in an earlier segment, so all nodes of a segment are
evaluated together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from vbpi_mix.errors import VbpiMixError


@dataclass(frozen=True)
class Schedule:
    """Index arrays (int64) for one batch of B trees over N taxa; R = N + B (N-3) rows.

    segment_bounds `[S+1]`: first row of each (chunk, level) segment, then R. For internal
    row r (r >= N), at index r - N: child_rows `[R-N, 2]`, child_edges `[R-N, 2]` (flat indices into
    `[B * E]`), row_trees `[R-N]` (its tree). root_child_rows / root_child_edges `[B, 3]`.
    """

    n_trees: int
    n_taxa: int
    segment_bounds: np.ndarray
    child_rows: np.ndarray
    child_edges: np.ndarray
    row_trees: np.ndarray
    root_child_rows: np.ndarray
    root_child_edges: np.ndarray

    @property
    def n_edges(self) -> int:
        return 2 * self.n_taxa - 3

    @property
    def n_rows(self) -> int:
        return self.n_taxa + self.n_trees * (self.n_taxa - 3)


_NOT_BINARY, _CYCLE = 1, 2  # error codes of the compiled builder


def build_schedule(parents: np.ndarray, n_taxa: int, chunk_trees: int | None = None) -> Schedule:
    """Index arrays for trees given as parent arrays `[B, 2N-3]` (see the module docstring);
    `chunk_trees` trees per chunk (default: the whole batch in one chunk).

    One compiled pass per tree (heights by a walk from the root, rows by a counting sort on
    (chunk, height, tree, node)); no Python per tree or node.
    """
    parents = np.ascontiguousarray(parents, dtype=np.int64)
    if parents.ndim == 1:
        parents = parents[None, :]
    n = n_taxa
    n_trees, n_edges = parents.shape
    if n < 3 or n_edges != 2 * n - 3:
        raise VbpiMixError(f"parent arrays need 2N-3 = {2 * n - 3} entries; got {n_edges}")
    status, *arrays = _schedule_arrays(parents, n, chunk_trees or max(n_trees, 1))
    if status == _NOT_BINARY:
        raise VbpiMixError("not an unrooted binary tree: each internal node needs two children")
    if status == _CYCLE:
        raise VbpiMixError("not a tree: the parent array contains a cycle")
    return Schedule(n_trees, n, *arrays)


@numba.njit(cache=True, nogil=True)
def _schedule_arrays(parents: np.ndarray, n: int, chunk_trees: int):
    """(status, segment_bounds, child_rows, child_edges, row_trees, root_child_rows,
    root_child_edges) for Schedule; status _NOT_BINARY or _CYCLE refuses the batch."""
    n_trees, n_edges = parents.shape
    n_inner, root = n - 3, 2 * n - 3
    children = np.empty((n_trees, n - 2, 3), dtype=np.int64)  # ascending child ids
    height = np.zeros((n_trees, 2 * n - 2), dtype=np.int64)
    stack = np.empty(2 * n - 2, dtype=np.int64)
    order = np.empty(2 * n - 2, dtype=np.int64)
    filled = np.empty(n - 2, dtype=np.int64)
    empty = np.empty((0, 2), dtype=np.int64)
    failure = (
        np.empty(0, dtype=np.int64), empty, empty, np.empty(0, dtype=np.int64),
        np.empty((0, 3), dtype=np.int64), np.empty((0, 3), dtype=np.int64),
    )  # fmt: skip
    for b in range(n_trees):
        filled[:] = 0
        for v in range(n_edges):
            u = parents[b, v] - n
            if u < 0 or u > n - 3 or filled[u] == (3 if u == n - 3 else 2):
                return (_NOT_BINARY, *failure)
            children[b, u, filled[u]] = v
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
                    stack[top] = children[b, v - n, k]
        if visited != 2 * n - 2:
            return (_CYCLE, *failure)
        for position in range(visited - 1, -1, -1):  # children before parents
            v = order[position]
            if v >= n:
                tallest = 0
                for k in range(3 if v == root else 2):
                    tallest = max(tallest, height[b, children[b, v - n, k]])
                height[b, v] = tallest + 1

    # rows: counting sort of the internal non-root nodes on (chunk, height), stable in (tree, node)
    n_chunks = (n_trees + chunk_trees - 1) // chunk_trees
    counts = np.zeros((n_chunks, n), dtype=np.int64)  # heights are below n
    for b in range(n_trees):
        for v in range(n, n + n_inner):
            counts[b // chunk_trees, height[b, v]] += 1
    first_row = np.empty((n_chunks, n), dtype=np.int64)
    segment_starts = np.empty(n_chunks * n + 1, dtype=np.int64)
    n_segments, row = 0, n
    for c in range(n_chunks):
        for h in range(n):
            first_row[c, h] = row
            if counts[c, h] > 0:
                segment_starts[n_segments] = row
                n_segments += 1
            row += counts[c, h]
    segment_starts[n_segments] = row
    row_of = np.empty((n_trees, 2 * n - 2), dtype=np.int64)
    row_trees = np.empty(n_trees * n_inner, dtype=np.int64)
    for b in range(n_trees):
        for tip in range(n):
            row_of[b, tip] = tip
        for v in range(n, n + n_inner):
            key = (b // chunk_trees, height[b, v])
            row_of[b, v] = first_row[key]
            first_row[key] += 1
            row_trees[row_of[b, v] - n] = b
    child_rows = np.empty((n_trees * n_inner, 2), dtype=np.int64)
    child_edges = np.empty((n_trees * n_inner, 2), dtype=np.int64)
    root_child_rows = np.empty((n_trees, 3), dtype=np.int64)
    root_child_edges = np.empty((n_trees, 3), dtype=np.int64)
    for b in range(n_trees):
        for v in range(n, n + n_inner):
            k = row_of[b, v] - n
            for s in range(2):
                child = children[b, v - n, s]
                child_rows[k, s] = row_of[b, child]
                child_edges[k, s] = b * n_edges + child
        for s in range(3):
            child = children[b, n - 3, s]
            root_child_rows[b, s] = row_of[b, child]
            root_child_edges[b, s] = b * n_edges + child
    return (
        0, segment_starts[: n_segments + 1].copy(), child_rows, child_edges, row_trees,
        root_child_rows, root_child_edges,
    )  # fmt: skip
