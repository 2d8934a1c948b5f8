"""Flatten a batch of unrooted binary trees into level-by-level index arrays for the kernel.

Tree encoding (the contract between trees and the kernel): for N taxa, nodes 0..N-1 are the
tips in the alignment's taxon order, N..2N-3 the internal nodes, and node 2N-3 is the
(trifurcating) root. `parents[b, v]` is the parent of node v in tree b for v = 0..2N-4, so
edge v is the edge above node v and branch lengths are indexed the same way: `[..., B, E]`,
E = 2N-3. Every internal non-root node has two children, the root three.

Rows of the kernel's partials buffer: tip i is row i (shared by all trees); the internal
non-root nodes of all trees follow, grouped by level (height above the tips), so that one
level's outputs are the contiguous rows [start, stop). All nodes of one level, across every
tree of the batch, are evaluated together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vbpi_mix.errors import VbpiMixError


@dataclass(frozen=True)
class Level:
    """The M = stop - start internal non-root nodes of one height, across the batch.

    Their partials are rows [start, stop); child_rows `[M, 2]`; child_edges `[M, 2]` flat
    indices into `[B * E]`; trees `[M]`: the tree each node belongs to.
    """

    start: int
    stop: int
    child_rows: torch.Tensor
    child_edges: torch.Tensor
    trees: torch.Tensor


@dataclass(frozen=True)
class Schedule:
    """Levels bottom-up plus the root stage; root_child_rows / root_child_edges are `[B, 3]`,
    row_trees `[B (N-3)]` the tree of each internal non-root row (in row order)."""

    n_trees: int
    n_taxa: int
    levels: tuple[Level, ...]
    row_trees: torch.Tensor
    root_child_rows: torch.Tensor
    root_child_edges: torch.Tensor

    @property
    def n_edges(self) -> int:
        return 2 * self.n_taxa - 3

    @property
    def max_children(self) -> int:
        """Largest number of child rows any one stage gathers (workspace size)."""
        return max([3 * self.n_trees] + [2 * (level.stop - level.start) for level in self.levels])

    @property
    def n_rows(self) -> int:
        return self.n_taxa + self.n_trees * (self.n_taxa - 3)


def build_schedule(parents: np.ndarray, n_taxa: int) -> Schedule:
    """Index arrays for trees given as parent arrays `[B, 2N-3]` (see the module docstring).

    Vectorised over the batch: one numpy pass per level, none per tree or node.
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
    for _ in range(n):
        inner_height = 1 + height[np.arange(n_trees)[:, None, None], children].max(axis=2)
        if (inner_height == height[:, n : 2 * n - 3]).all():
            break
        height[:, n : 2 * n - 3] = inner_height
    else:
        raise VbpiMixError("not a tree: the parent array contains a cycle")

    row_of = np.zeros((n_trees, 2 * n - 2), dtype=np.int64)
    row_of[:, :n] = np.arange(n)
    inner_height = height[:, n : 2 * n - 3]
    levels, row_trees, start = [], [], n
    for level in range(1, int(inner_height.max(initial=0)) + 1):
        trees, slots = np.nonzero(inner_height == level)
        stop = start + trees.size
        row_of[trees, n + slots] = np.arange(start, stop)
        kids = children[trees, slots]
        levels.append(
            Level(
                start=start,
                stop=stop,
                child_rows=torch.as_tensor(row_of[trees[:, None], kids]),
                child_edges=torch.as_tensor(trees[:, None] * n_edges + kids),
                trees=torch.as_tensor(trees),
            )
        )
        row_trees.append(trees)
        start = stop
    all_trees = np.arange(n_trees)[:, None]
    return Schedule(
        n_trees=n_trees,
        n_taxa=n,
        levels=tuple(levels),
        row_trees=torch.as_tensor(np.concatenate(row_trees or [np.zeros(0, np.int64)])),
        root_child_rows=torch.as_tensor(row_of[all_trees, root_children]),
        root_child_edges=torch.as_tensor(all_trees * n_edges + root_children),
    )
