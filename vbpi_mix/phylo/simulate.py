"""Simulate DNA alignments down a known tree (for the bundled example and for tests)."""

from __future__ import annotations

import numpy as np
import torch

from vbpi_mix.phylo.alignment import STATES
from vbpi_mix.phylo.models import SubstitutionModel


def simulate_sequences(
    parents: np.ndarray,
    branch_lengths: np.ndarray,
    model: SubstitutionModel,
    n_sites: int,
    rng: np.random.Generator,
) -> list[str]:
    """Sequences of the N tips (taxon order) evolved under `model` down a parent-array tree.

    The root state is drawn from the model's frequencies, each rate category uniformly per
    site, and every child state from the row P(t r_c)[parent state] of its edge.
    """
    n_edges = len(parents)
    n_taxa = (n_edges + 3) // 2
    root = n_edges
    with torch.no_grad():
        matrices = model.transition_matrices(torch.as_tensor(branch_lengths, dtype=torch.float64))
    cumulative = np.cumsum(matrices.numpy(), axis=-1)  # [E, C, 4, 4]
    category = rng.integers(model.category_rates.numel(), size=n_sites)
    states = np.empty((n_edges + 1, n_sites), dtype=np.int64)
    states[root] = rng.choice(4, size=n_sites, p=model.frequencies.numpy())
    order = _preorder(np.asarray(parents), root)
    for node in order[1:]:
        rows = cumulative[node, category, states[parents[node]]]  # [n_sites, 4]
        draws = rng.random(n_sites)[:, None]
        states[node] = np.minimum((draws > rows).sum(axis=1), 3)
    alphabet = np.array(list(STATES))
    return ["".join(alphabet[states[taxon]]) for taxon in range(n_taxa)]


def _preorder(parents: np.ndarray, root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for child, parent in enumerate(parents.tolist()):
        children.setdefault(parent, []).append(child)
    order, stack = [], [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(children.get(node, []))
    return order
