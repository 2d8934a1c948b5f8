"""The schedule: each tree's rows together, every child before its parent, the rows
faithful to the parent arrays, and malformed trees refused."""

from __future__ import annotations

import numpy as np
import pytest

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.phylo.schedule import build_schedule
from vbpi_mix.trees.random_tree import random_parents


def test_rows_of_each_tree_are_contiguous_children_first_and_match_the_parents():
    rng = np.random.default_rng(0)
    n, n_trees = 12, 7
    e = 2 * n - 3
    parents = np.stack([random_parents(n, rng) for _ in range(n_trees)])
    schedule = build_schedule(parents, n)
    assert schedule.n_rows == n + n_trees * (n - 3)

    def node_of(b, row):
        """The node at a row: a tip, or the common parent of the row's two children."""
        if row < n:
            return row
        first, second = schedule.child_edges[row - n] - b * e
        assert parents[b, first] == parents[b, second]
        return parents[b, first]

    for b in range(n_trees):
        rows = range(n + b * (n - 3), n + (b + 1) * (n - 3))
        nodes = {node_of(b, row) for row in rows}
        assert nodes == set(range(n, 2 * n - 3))  # every internal non-root node once
        for row in rows:
            for child_row, child_edge in zip(
                schedule.child_rows[row - n], schedule.child_edges[row - n], strict=True
            ):
                assert child_row < n or rows.start <= child_row < row  # same tree, earlier
                assert node_of(b, child_row) == child_edge - b * e
        for child_row, child_edge in zip(
            schedule.root_child_rows[b], schedule.root_child_edges[b], strict=True
        ):
            assert parents[b, child_edge - b * e] == 2 * n - 3
            assert node_of(b, child_row) == child_edge - b * e
    edges = np.concatenate([schedule.child_edges.ravel(), schedule.root_child_edges.ravel()])
    assert sorted(edges.tolist()) == list(range(n_trees * e))  # every edge exactly once


def test_rejects_non_binary_and_cyclic_parent_arrays():
    with pytest.raises(VbpiMixError, match="two children"):
        build_schedule(np.array([[5, 5, 5, 5, 4]]), 4)  # root with four children, node 4 none
    with pytest.raises(VbpiMixError, match="cycle"):
        # every internal node has two children, but node 8 is its own parent
        build_schedule(np.array([[9, 9, 9, 6, 6, 7, 7, 8, 8]]), 6)
    with pytest.raises(VbpiMixError, match="2N-3"):
        build_schedule(np.zeros((1, 6), dtype=np.int64), 5)
