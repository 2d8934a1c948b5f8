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


def build_schedule(parents: np.ndarray, n_taxa: int, chunk_trees: int | None = None) -> Schedule:
    """Index arrays for trees given as parent arrays `[B, 2N-3]` (see the module docstring);
    `chunk_trees` trees per chunk (default: the whole batch in one chunk).

    Vectorised over the batch: one numpy pass per tree height, none per tree or node.
    """
    parents = np.asarray(parents, dtype=np.int64)
    if parents.ndim == 1:
        parents = parents[None, :]
    n = n_taxa
    n_trees, n_edges = parents.shape
    if n < 3 or n_edges != 2 * n - 3:
        raise VbpiMixError(f"parent arrays need 2N-3 = {2 * n - 3} entries; got {n_edges}")
    n_inner = n - 3  # internal non-root nodes per tree
    order = np.argsort(parents, axis=1, kind="stable")
    expected = np.concatenate([np.repeat(np.arange(n, 2 * n - 3), 2), np.full(3, 2 * n - 3)])
    if not (np.take_along_axis(parents, order, axis=1) == expected).all():
        raise VbpiMixError("not an unrooted binary tree: each internal node needs two children")
    children = order[:, : 2 * n_inner].reshape(n_trees, n_inner, 2)
    root_children = order[:, 2 * n_inner :]

    height = np.zeros((n_trees, 2 * n - 2), dtype=np.int64)
    tree_index = np.arange(n_trees)[:, None, None]
    for _ in range(n):
        inner_height = 1 + height[tree_index, children].max(axis=2)
        if (inner_height == height[:, n : 2 * n - 3]).all():
            break
        height[:, n : 2 * n - 3] = inner_height
    else:
        raise VbpiMixError("not a tree: the parent array contains a cycle")

    # Sort internal nodes by (chunk, level, tree, node) and number their rows in that order.
    inner_height = height[:, n : 2 * n - 3].reshape(-1)
    chunk = np.repeat(np.arange(n_trees) // (chunk_trees or n_trees), n_inner)
    flat_order = np.lexsort((np.arange(inner_height.size), inner_height, chunk))
    trees, slots = np.divmod(flat_order, n_inner)
    row_of = np.empty((n_trees, 2 * n - 2), dtype=np.int64)
    row_of[:, :n] = np.arange(n)
    row_of[trees, n + slots] = n + np.arange(flat_order.size)
    kids = children[trees, slots]
    segment = chunk[flat_order] * n + inner_height[flat_order]  # heights are below n
    starts = np.flatnonzero(np.diff(segment, prepend=-1))
    segment_bounds = n + np.append(starts, segment.size)
    all_trees = np.arange(n_trees)[:, None]
    return Schedule(
        n_trees=n_trees,
        n_taxa=n,
        segment_bounds=segment_bounds.astype(np.int64),
        child_rows=row_of[trees[:, None], kids],
        child_edges=trees[:, None] * n_edges + kids,
        row_trees=trees,
        root_child_rows=row_of[all_trees, root_children],
        root_child_edges=all_trees * n_edges + root_children,
    )
