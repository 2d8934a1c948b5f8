"""Unrooted binary topologies by stepwise addition: random (uniform) or all of them."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np


def parents_from_insertions(n_taxa: int, insertions: Sequence[int]) -> np.ndarray:
    """Parent array `[2N-3]` of the tree built by stepwise addition.

    Start from the star of taxa 0, 1, 2 on the root 2N-3; taxon k (k = 3..N-1) is attached to
    existing edge number insertions[k - 3] (0 <= it < 2k - 3, edges in creation order). Each
    sequence gives a distinct topology, and every topology arises from exactly one sequence.
    """
    if n_taxa < 3 or len(insertions) != n_taxa - 3:
        raise ValueError(f"{n_taxa} taxa need {max(n_taxa - 3, 0)} insertions")
    root = 2 * n_taxa - 3
    parents = np.full(2 * n_taxa - 3, -1, dtype=np.int64)
    parents[:3] = root
    edges = [0, 1, 2]  # an edge is named by the node below it
    for taxon, choice in zip(range(3, n_taxa), insertions, strict=True):
        below = edges[choice]
        middle = n_taxa + taxon - 3
        parents[middle] = parents[below]
        parents[below] = middle
        parents[taxon] = middle
        edges += [middle, taxon]
    return parents


def random_parents(n_taxa: int, rng: np.random.Generator) -> np.ndarray:
    """A topology drawn uniformly from the (2N-5)!! unrooted ones."""
    return parents_from_insertions(n_taxa, [int(rng.integers(2 * k - 3)) for k in range(3, n_taxa)])


def all_parents(n_taxa: int) -> Iterator[np.ndarray]:
    """Every unrooted topology on `n_taxa` taxa exactly once ((2N-5)!! of them)."""
    for insertions in itertools.product(*(range(2 * k - 3) for k in range(3, n_taxa))):
        yield parents_from_insertions(n_taxa, insertions)
