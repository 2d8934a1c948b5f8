"""Compiled (numba) ancestral sampling of SBN trees: the per-tree walk from the root split
down to the tips, drawing each clade's split by inverse CDF from uniforms drawn beforehand
(so a torch generator keeps runs repeatable). One compiled loop over trees replaces a
vectorised step per tree depth, whose per-step overhead dominated a training iteration.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from vbpi_mix.compile_presets import compiled, compiled_in_parallel
from vbpi_mix.trees.clade_words import (
    all_taxa_row,
    copy_clade,
    first_taxon,
    taxon_count,
    xor_clades,
)
from vbpi_mix.trees.support_lookup import clade_position, key_position, slot_shift


@compiled
def _first_at_or_above(cumulative: np.ndarray, u: float) -> int:
    """Inverse CDF: the first index whose cumulative probability exceeds u (the last on
    round-off)."""
    for i in range(cumulative.size):
        if u < cumulative[i]:
            return i
    return cumulative.size - 1


@compiled
def _draw_member(
    family: np.ndarray, logits: np.ndarray, n_entries: int, u: float, weights: np.ndarray
) -> int:
    """Inverse CDF within one family (`family`: its entry ids, padded with n_entries): the
    first member whose cumulative softmax probability exceeds u (the last on round-off).
    Weights exp(logit - max) keep a family far below zero from underflowing."""
    size, largest = 0, -np.inf
    while size < family.size and family[size] != n_entries:
        largest = max(largest, logits[family[size]])
        size += 1
    total = 0.0
    for slot in range(size):
        weights[slot] = np.exp(logits[family[slot]] - largest)
        total += weights[slot]
    threshold, cumulative = u * total, 0.0
    for slot in range(size - 1):
        cumulative += weights[slot]
        if threshold < cumulative:
            return family[slot]
    return family[size - 1]


@compiled_in_parallel
def sample_parent_arrays(
    rows: np.ndarray,
    root_uniforms: np.ndarray,
    split_uniforms: np.ndarray,
    root_cumulative: np.ndarray,
    entry_logits: np.ndarray,
    members: np.ndarray,
    entry_child: np.ndarray,
    root_splits: np.ndarray,
    clades: np.ndarray,
    clade_slots: np.ndarray,
    parent_keys: np.ndarray,
    parent_slots: np.ndarray,
    n_taxa: int,
) -> np.ndarray:
    """Parent arrays `[n, 2N-3]` in the kernel encoding (tips 0..N-1, root 2N-3) of n trees.

    Tree i uses the parameters of component `rows[i]`: the root split from
    `root_cumulative [., R]` and `root_uniforms[i]`, then each clade C with sister S splits
    into entry m of its family (C, S) (`members [P, W]`, padded with M) with probability
    softmax over the family of `entry_logits[., m]`, one `split_uniforms[i, k]` per split.
    Only the families a draw visits are normalised (a tree visits N-2 of them), not the
    whole support of every component. The root split's internal side becomes the unrooted
    tree's trifurcating root, the other side hangs from it. Clades and parent subsplits are
    found through the support's hash tables (`clade_slots`, `parent_slots`), not binary
    searches, and the trees are shared among the threads.
    """
    n_trees = rows.size
    n_entries = entry_logits.shape[1]
    n_clades, words = clades.shape
    clade_shift, parent_shift = slot_shift(clade_slots), slot_shift(parent_slots)
    root = 2 * n_taxa - 3
    full = all_taxa_row(n_taxa, words)
    parents = np.empty((n_trees, root), dtype=np.int64)
    for i in prange(n_trees):  # each tree with its own stacks
        weights = np.empty(members.shape[1])
        stack_clade = np.empty((n_taxa, words), dtype=np.uint64)
        stack_sister = np.empty((n_taxa, words), dtype=np.uint64)
        stack_node = np.empty(n_taxa, dtype=np.int64)
        work = np.empty((3, words), dtype=np.uint64)  # root sides; then a drawn side, the rest
        row = rows[i]
        west = _first_at_or_above(root_cumulative[row], root_uniforms[i])
        copy_clade(root_splits, west, work, 0)
        xor_clades(full, 0, root_splits, west, work, 2)
        inner, other = (0, 2) if taxon_count(work, 0) > 1 else (2, 0)
        next_id = n_taxa
        copy_clade(work, inner, stack_clade, 0)
        copy_clade(work, other, stack_sister, 0)
        stack_node[0] = root
        depth = 1
        if taxon_count(work, other) == 1:
            parents[i, first_taxon(work, other)] = root
        else:
            parents[i, next_id] = root
            copy_clade(work, other, stack_clade, 1)
            copy_clade(work, inner, stack_sister, 1)
            stack_node[1] = next_id
            next_id += 1
            depth = 2
        k = 0
        while depth > 0:
            depth -= 1
            node = stack_node[depth]
            # the parent key of subsplits._parent_keys: sister id * Q + clade id
            sister_id = clade_position(clades, clade_slots, clade_shift, stack_sister, depth)
            clade_id = clade_position(clades, clade_slots, clade_shift, stack_clade, depth)
            key = sister_id * n_clades + clade_id
            family = key_position(parent_keys, parent_slots, parent_shift, key)
            entry = _draw_member(
                members[family], entry_logits[row], n_entries, split_uniforms[i, k], weights
            )
            k += 1
            # the drawn side and the rest of the clade, before the children overwrite its row
            copy_clade(entry_child, entry, work, 1)
            xor_clades(stack_clade, depth, entry_child, entry, work, 2)
            for child, sister in ((1, 2), (2, 1)):  # the drawn side, then the rest
                if taxon_count(work, child) == 1:
                    parents[i, first_taxon(work, child)] = node
                else:
                    parents[i, next_id] = node
                    copy_clade(work, child, stack_clade, depth)
                    copy_clade(work, sister, stack_sister, depth)
                    stack_node[depth] = next_id
                    next_id += 1
                    depth += 1
    return parents
