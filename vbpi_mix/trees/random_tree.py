"""Random unrooted binary topologies (uniform, by stepwise addition) as parent arrays."""

from __future__ import annotations

import numpy as np


def random_parents(n_taxa: int, rng: np.random.Generator) -> np.ndarray:
    """Parent array `[2N-3]` of a topology drawn uniformly from the (2N-5)!! unrooted ones.

    Stepwise addition: start from the star of taxa 0, 1, 2 on the root 2N-3, then attach each
    next taxon to a uniformly chosen existing edge (each of the 2k-5 edges gives a distinct
    topology, so every topology is equally likely). Internal nodes are numbered as created.
    """
    if n_taxa < 3:
        raise ValueError(f"an unrooted binary tree needs at least 3 taxa; got {n_taxa}")
    root = 2 * n_taxa - 3
    parents = np.full(2 * n_taxa - 3, -1, dtype=np.int64)
    parents[:3] = root
    edges = [0, 1, 2]  # an edge is named by the node below it
    next_inner = n_taxa
    for taxon in range(3, n_taxa):
        below = edges[rng.integers(len(edges))]
        middle = next_inner
        next_inner += 1
        parents[middle] = parents[below]
        parents[below] = middle
        parents[taxon] = middle
        edges += [middle, taxon]
    return parents
