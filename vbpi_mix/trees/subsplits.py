"""Subsplit bookkeeping for the SBN over batches of trees; the per-tree walk
(vbpi_mix.trees.rootings) and the lookups in the support (vbpi_mix.trees.support_lookup)
are compiled.

Every internal node v of an unrooted tree has three sides (slots 0, 1, 2: its children and its
parent side in the parent-array encoding, or the three children of the encoding's root). A
directed edge u -> v (u the neighbour at slot k of v) makes v's clade C = the union of its
other two sides A, B, split into the child subsplit {A, B}. Its parent subsplit (METHOD.md
section 2) is (C, S) with sister S either X \\ C, when the tree is rooted on the edge u-v
("choice 0"), or one of u's two other sides, whichever does not lead to the root (choices 1
and 2, in u's slot order). So each node has nine possible conditional entries, and a rooting
picks one per node: candidate 3k + choice, with k the slot of v towards the root, choice 0
when the root is on the edge to that neighbour u, otherwise the choice naming u's side that
does not lead to the root. The SBN sums over the 2N-3 rootings with these in O(N) per tree
(vbpi_mix.variational.rooting_sums).

Clades are bitsets of W = ceil(N / 64) uint64 words (vbpi_mix.trees.clade_words), fixed
when the support is built: N <= 64 taxa keep one word.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.trees.clade_words import (
    clade_ids,
    integer_less,
    split_sides,
    taxon_counts,
    unique_clades,
    word_count,
)
from vbpi_mix.trees.rootings import rooting_structure as compiled_rooting_structure
from vbpi_mix.trees.support_lookup import hash_slots, integer_key_slots, scoring_ids


class RootingStructure(NamedTuple):
    """Per-batch structure (vbpi_mix.trees.rootings): `edge_clades [B, E, W]` (clade below
    each edge), `triples [B, N-2, 9, 3, W]` (each internal node's nine candidate (sister, a,
    b) clade triples, index 3k + choice), `valid [B, N-2, 9]`, and the tree's shape by slot:
    `neighbours [B, N-2, 3]` (node ids), `back_slots [B, N-2, 3]` (slot of the node in its
    neighbour; -1 for a tip) and `order [B, N-2]` (internal nodes, children first)."""

    edge_clades: np.ndarray
    triples: np.ndarray
    valid: np.ndarray
    neighbours: np.ndarray
    back_slots: np.ndarray
    order: np.ndarray


def rooting_structure(parents: np.ndarray, n_taxa: int, words: int) -> RootingStructure:
    """Candidate subsplit triples and rooting choices of trees given as parent arrays
    `[B, 2N-3]`, clades of `words` words."""
    parents = np.ascontiguousarray(parents, dtype=np.int64).reshape(-1, 2 * n_taxa - 3)
    return RootingStructure(*compiled_rooting_structure(parents, n_taxa, words))


def _entry_keys(s_id: np.ndarray, a_id: np.ndarray, b_id: np.ndarray, q: np.int64) -> np.ndarray:
    """One int64 key per (sister, {a, b}) triple of clade ids, the sides in either order."""
    return (s_id * q + np.minimum(a_id, b_id)) * q + np.maximum(a_id, b_id)


def _parent_keys(s_id: np.ndarray, c_id: np.ndarray, q: np.int64) -> np.ndarray:
    """One int64 key per parent subsplit (sister, clade being split) of clade ids (the compiled
    sampler, variational/sbn_sampling.py, computes the same key)."""
    return s_id * q + c_id


@dataclass(frozen=True)
class SubsplitIndex:
    """The SBN's support: root splits and conditional entries, with SBN-SA counts.

    root_splits `[R, W]` (each split's canonical side min(W, Z), sorted); clades `[Q, W]`
    (every clade involved, sorted); entries `[M]` keyed by (sister, child side a, child side
    b) clade ids (a < b), sorted, with `entry_parent [M]` the index of their parent subsplit
    (C = a | b, S) among `parent_keys [P]`, and `entry_child [M, W]` the clade of side a.
    `members [P, F]` lists each parent's entries, padded with M. Clades and splits are
    W-word bitsets (vbpi_mix.trees.clade_words), in integer order.
    """

    n_taxa: int
    root_splits: np.ndarray
    root_counts: np.ndarray
    clades: np.ndarray
    entry_keys: np.ndarray
    entry_parent: np.ndarray
    entry_child: np.ndarray
    entry_counts: np.ndarray
    parent_keys: np.ndarray
    members: np.ndarray

    @property
    def n_entries(self) -> int:
        return self.entry_keys.size

    @property
    def n_root_splits(self) -> int:
        return self.root_splits.shape[0]

    @property
    def words(self) -> int:
        """Words per clade."""
        return self.clades.shape[1]

    # Hash tables (support_lookup.hash_slots) of the sorted key arrays, for compiled lookups.
    @cached_property
    def clade_slots(self) -> np.ndarray:
        return hash_slots(self.clades)

    @cached_property
    def entry_slots(self) -> np.ndarray:
        return integer_key_slots(self.entry_keys)

    @cached_property
    def root_slots(self) -> np.ndarray:
        return hash_slots(self.root_splits)

    @cached_property
    def parent_slots(self) -> np.ndarray:
        return integer_key_slots(self.parent_keys)


@dataclass(frozen=True)
class TopologyTables:
    """What scoring a batch of topologies needs: `root_ids [B, E]` (root split of the
    rooting on each edge), `candidate_ids [B, N-2, 9]` (conditional entry of each candidate
    subsplit pair of each internal node, index 3k + choice; -1 marks a split or subsplit pair
    outside the support, or a candidate a tip neighbour rules out), and the shape by slot,
    `neighbours`, `back_slots` and `order` (RootingStructure)."""

    root_ids: np.ndarray
    candidate_ids: np.ndarray
    neighbours: np.ndarray
    back_slots: np.ndarray
    order: np.ndarray


def topology_tables(index: SubsplitIndex, parents: np.ndarray) -> TopologyTables:
    """Scoring tables for trees given as parent arrays `[B, 2N-3]` (compiled walks)."""
    structure = rooting_structure(parents, index.n_taxa, index.words)
    root_ids, candidate_ids = scoring_ids(
        structure.edge_clades, structure.triples, structure.valid, index.clades,
        index.clade_slots, index.entry_keys, index.entry_slots, index.root_splits,
        index.root_slots, index.n_taxa,
    )  # fmt: skip
    return TopologyTables(
        root_ids, candidate_ids, structure.neighbours, structure.back_slots, structure.order
    )


def build_subsplit_index(
    parents: np.ndarray, weights: np.ndarray, n_taxa: int, words: int | None = None
) -> SubsplitIndex:
    """The support of every rooting of the given topologies `[T, 2N-3]`, with SBN-SA counts:
    each topology's weight spread evenly over its 2N-3 rootings (Zhang & Matsen 2018).
    Clades get `words` words (default: as few as hold N taxa; more give the same ids)."""
    words = words or word_count(n_taxa)
    parents = np.asarray(parents, dtype=np.int64).reshape(-1, 2 * n_taxa - 3)
    weights = np.asarray(weights, dtype=np.float64)
    n_edges = 2 * n_taxa - 3
    chunk = max(16, 256 // words)  # a chunk's triples: 27 (N-2) W words per tree
    roots, root_w, triples_all, triple_w = [], [], [], []
    for start in range(0, parents.shape[0], chunk):  # each chunk's distinct rows kept, summed
        structure = rooting_structure(parents[start : start + chunk], n_taxa, words)
        w = weights[start : start + chunk] / n_edges
        sides = split_sides(structure.edge_clades, n_taxa).reshape(-1, words)
        rows, row_weights = _summed(sides, np.repeat(w, n_edges))
        roots.append(rows)
        root_w.append(row_weights)
        valid = structure.valid
        uses = (_rootings_using(structure.triples, n_taxa) * w[:, None, None])[valid]
        chunk_triples = _sides_in_order(structure.triples[valid])
        rows, row_weights = _summed(chunk_triples.reshape(-1, 3 * words), uses)
        triples_all.append(rows)
        triple_w.append(row_weights)
    root_splits, root_counts = _summed(np.concatenate(roots), np.concatenate(root_w))
    triples, triple_weights = _summed(np.concatenate(triples_all), np.concatenate(triple_w))
    triples = triples.reshape(-1, 3, words)  # [K, 3, W]: sister, a < b
    clade_of = triples[:, 1] | triples[:, 2]
    clades, _ = unique_clades(np.concatenate([triples.reshape(-1, words), clade_of]))
    q = np.int64(clades.shape[0])
    if int(q) ** 3 >= 2**63:  # entry keys (s q + a) q + b are int64
        raise VbpiMixError(f"the support has {q} distinct clades; at most 2,097,151 fit")
    s_id, a_id, b_id = (clade_ids(clades, triples[:, i]) for i in range(3))
    entry_keys, entry_inverse, first = _unique_with_first(_entry_keys(s_id, a_id, b_id, q))
    entry_counts = np.bincount(entry_inverse, triple_weights, minlength=entry_keys.size)
    c_id = clade_ids(clades, clade_of)
    parent_keys, entry_parent = np.unique(_parent_keys(s_id, c_id, q)[first], return_inverse=True)
    side_a = clades[a_id[first]]  # sides were sorted, so a is the smaller; the other is C ^ a
    return SubsplitIndex(
        n_taxa=n_taxa,
        root_splits=root_splits,
        root_counts=root_counts,
        clades=clades,
        entry_keys=entry_keys,
        entry_parent=entry_parent.astype(np.int64),
        entry_child=side_a,
        entry_counts=entry_counts,
        parent_keys=parent_keys,
        members=_padded_members(entry_parent, parent_keys.size),
    )


def _rootings_using(triples: np.ndarray, n_taxa: int) -> np.ndarray:
    """How many of a tree's rootings use each candidate (sister, a, b) `[..., 9, 3, W]` of a
    node: one for choice 0 (the rooting on the edge to its neighbour); for choices 1 and 2
    the edges on the neighbour's third side R = X minus (sister, a, b), the side leading to
    the root, with the edge to it: 2 |R| - 1 (|R| = N - |sister| - |a| - |b|)."""
    taxa = n_taxa - taxon_counts(triples).sum(-1)
    uses = 2 * taxa - 1
    uses[..., 0::3] = 1
    return uses


def _sides_in_order(triples: np.ndarray) -> np.ndarray:
    """(sister, a, b) triples `[K, 3, W]` with the two sides in integer order, a < b."""
    swap = integer_less(triples[:, 2], triples[:, 1])
    triples[swap, 1:] = triples[swap, 2:0:-1]
    return triples


def _summed(rows: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows `[n, m]` of uint64 words (in the integer order of clade_words) and
    the summed weight of each: a support's trees repeat most clades and triples, so keeping
    each chunk's distinct rows bounds the memory by the support's size, not T (N-2) 27."""
    distinct, inverse = unique_clades(rows)
    return distinct, np.bincount(inverse, weights, minlength=distinct.shape[0])


def _unique_with_first(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted unique keys, the inverse map, and the first occurrence of each."""
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return unique, inverse, first


def _padded_members(entry_parent: np.ndarray, n_parents: int) -> np.ndarray:
    """`[P, W]` entry indices of each parent, padded with M (one past the last entry)."""
    n_entries = entry_parent.size
    order = np.argsort(entry_parent, kind="stable")
    sizes = np.bincount(entry_parent, minlength=n_parents)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(n_entries) - starts[entry_parent[order]]
    members = np.full((n_parents, max(int(sizes.max(initial=1)), 1)), n_entries, dtype=np.int64)
    members[entry_parent[order], rank] = order
    return members
