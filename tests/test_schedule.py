"""The level schedule: every child computed before its parent, and malformed trees refused."""

from __future__ import annotations

import numpy as np
import pytest

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.phylo.schedule import build_schedule
from vbpi_mix.trees.random_tree import random_parents


@pytest.mark.parametrize("chunk_trees", [None, 1, 3])
def test_children_lie_in_earlier_segments_and_rows_cover_every_node(chunk_trees):
    rng = np.random.default_rng(0)
    n = 12
    parents = np.stack([random_parents(n, rng) for _ in range(7)])
    schedule = build_schedule(parents, n, chunk_trees)
    assert schedule.segment_bounds[0] == n and schedule.segment_bounds[-1] == schedule.n_rows
    segment_of_row = np.searchsorted(schedule.segment_bounds, np.arange(schedule.n_rows), "right")
    for k, row in enumerate(range(n, schedule.n_rows)):
        for child in schedule.child_rows[k]:
            assert child < n or segment_of_row[child] < segment_of_row[row]
            assert child < n or schedule.row_trees[child - n] == schedule.row_trees[k]
    edges = np.concatenate([schedule.child_edges.ravel(), schedule.root_child_edges.ravel()])
    assert sorted(edges.tolist()) == list(range(7 * (2 * n - 3)))  # every edge exactly once


def test_rejects_non_binary_and_cyclic_parent_arrays():
    with pytest.raises(VbpiMixError, match="two children"):
        build_schedule(np.array([[5, 5, 5, 5, 4]]), 4)  # root with four children, node 4 none
    with pytest.raises(VbpiMixError, match="cycle"):
        # every internal node has two children, but node 8 is its own parent
        build_schedule(np.array([[9, 9, 9, 6, 6, 7, 7, 8, 8]]), 6)
    with pytest.raises(VbpiMixError, match="2N-3"):
        build_schedule(np.zeros((1, 6), dtype=np.int64), 5)
