"""Subsplit bookkeeping for the SBN, vectorised over batches of trees (numpy, uint64 bitsets).

Every internal node v of an unrooted tree has three sides (slots 0, 1, 2: its children and its
parent side in the parent-array encoding, or the three children of the encoding's root). A
directed edge u -> v (u the neighbour at slot k of v) makes v's clade C = the union of its
other two sides A, B, split into the child subsplit {A, B}. Its parent subsplit (METHOD.md
section 2) is (C, S) with sister S either X \\ C, when the tree is rooted on the edge u-v
("choice 0"), or one of u's two other sides, whichever does not lead to the root (choices 1
and 2, in u's slot order). So each node has nine possible conditional entries, and a rooting
picks one per node.

Clades are uint64 bitsets (bit i = taxon i), so N <= 64 taxa.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vbpi_mix.errors import VbpiMixError

MAX_TAXA = 64


@dataclass(frozen=True)
class TreeSides:
    """Per-batch structure: `sides [B, N-2, 3]` (bitset of each side of each internal node),
    `neighbours [B, N-2, 3]` (node across each side), `back_slot [B, N-2, 3]` (the slot of v
    among the neighbour's sides, -1 for tips), `toward [B, E, N-2]` (slot of each internal
    node towards edge r), `edge_clades [B, E]` (clade below each edge)."""

    n_taxa: int
    sides: np.ndarray
    neighbours: np.ndarray
    back_slot: np.ndarray
    toward: np.ndarray
    edge_clades: np.ndarray


def full_set(n_taxa: int) -> np.uint64:
    return np.uint64((1 << n_taxa) - 1)


def tree_sides(parents: np.ndarray, n_taxa: int) -> TreeSides:
    """Sides, neighbours and the rooting table of trees given as parent arrays `[B, 2N-3]`."""
    if n_taxa > MAX_TAXA:
        raise VbpiMixError(f"the SBN supports at most {MAX_TAXA} taxa; got {n_taxa}")
    parents = np.asarray(parents, dtype=np.int64).reshape(-1, 2 * n_taxa - 3)
    n, n_trees = n_taxa, parents.shape[0]
    n_inner, root = n - 2, 2 * n - 3
    full = full_set(n)
    order = np.argsort(parents, axis=1, kind="stable")
    children = np.empty((n_trees, n_inner, 3), dtype=np.int64)
    children[:, : n - 3, :2] = order[:, : 2 * (n - 3)].reshape(n_trees, n - 3, 2)
    children[:, : n - 3, 2] = parents[:, n:root]  # slot 2 of a non-root node: its parent
    children[:, n - 3] = order[:, 2 * (n - 3) :]
    batch = np.arange(n_trees)[:, None]

    clade = np.zeros((n_trees, 2 * n - 2), dtype=np.uint64)
    clade[:, :n] = np.left_shift(np.uint64(1), np.arange(n, dtype=np.uint64))
    for _ in range(n):  # fixed point: at most the tree's height
        below = clade[batch, children[:, : n - 3, 0]] | clade[batch, children[:, : n - 3, 1]]
        if (below == clade[:, n:root]).all():
            break
        clade[:, n:root] = below
    clade[:, root] = full

    sides = clade[batch[:, :, None], children]  # [B, N-2, 3]
    sides[:, : n - 3, 2] = full ^ clade[:, n:root]
    neighbours = children

    # Slot of v among its neighbour's sides (the neighbour is internal) or -1 (a tip).
    inner_neighbour = np.clip(neighbours - n, 0, n_inner - 1)
    neighbour_nodes = neighbours[batch[:, :, None], inner_neighbour]  # [B, N-2, 3, 3]
    own = np.arange(n, root + 1)[None, :, None, None]
    matches = neighbour_nodes == own
    back_slot = np.where(neighbours >= n, matches.argmax(axis=-1), -1)

    # toward[b, r, v]: the slot of v whose side contains edge r (the clade below node r).
    edge_clades = clade[:, : 2 * n - 3]
    lower = edge_clades[:, :, None, None]  # [B, E, 1, 1]
    inside = (lower & ~sides[:, None, :, :]) == 0  # edge r's clade lies within side k
    # Otherwise slot 2: the parent side holds every edge not below v, v's own edge included
    # (and the encoding's root has the last edge within its third child).
    toward = np.where(inside[..., 0], 0, np.where(inside[..., 1], 1, 2))
    return TreeSides(n, sides, neighbours, back_slot, toward.astype(np.int64), edge_clades)


def candidate_triples(structure: TreeSides) -> tuple[np.ndarray, np.ndarray]:
    """The nine (sister, child side a, child side b) bitset triples of each internal node,
    `[B, N-2, 3 (slot k of the parent-side neighbour), 3 (choice), 3]`, and their validity
    `[B, N-2, 3, 3]` (choices 1, 2 need an internal neighbour)."""
    sides, n = structure.sides, structure.n_taxa
    n_trees, n_inner = sides.shape[:2]
    other = np.array([[1, 2], [0, 2], [0, 1]])  # the two slots other than k, in order
    a = sides[:, :, other[:, 0]]  # [B, N-2, 3]
    b = sides[:, :, other[:, 1]]
    batch = np.arange(n_trees)[:, None, None]
    u = np.clip(structure.neighbours - n, 0, n_inner - 1)  # [B, N-2, 3]
    m = np.clip(structure.back_slot, 0, 2)
    u_other = other[m]  # [B, N-2, 3, 2]
    s1 = sides[batch, u, u_other[..., 0]]
    s2 = sides[batch, u, u_other[..., 1]]
    sister = np.stack([sides, s1, s2], axis=-1)  # [B, N-2, 3, 3]
    triples = np.stack(
        [sister, np.broadcast_to(a[..., None], sister.shape),
         np.broadcast_to(b[..., None], sister.shape)], axis=-1,
    )  # fmt: skip
    valid = np.ones(sister.shape, dtype=bool)
    valid[..., 1:] = (structure.back_slot >= 0)[..., None]
    return triples, valid


def rooting_choices(structure: TreeSides) -> np.ndarray:
    """For each rooting r and internal node v: the flat candidate index k * 3 + choice,
    `[B, E, N-2]` (see `candidate_triples`)."""
    n = structure.n_taxa
    n_trees, n_edges, n_inner = structure.toward.shape
    batch = np.arange(n_trees)[:, None, None]
    edge = np.arange(n_edges)[None, :, None]
    k = structure.toward  # [B, E, N-2]
    vertex = np.arange(n_inner)[None, None, :]
    u = structure.neighbours[batch, vertex, k]  # neighbour towards r
    m = structure.back_slot[batch, vertex, k]
    # r is the edge u-v: the edge above u when u is a child of v (every side of the encoding's
    # root is a child), else the edge above v.
    u_is_child = (k < 2) | (vertex == n_inner - 1)
    on_edge = np.where(u_is_child, edge == u, edge == vertex + n)
    t = structure.toward[batch, edge, np.clip(u - n, 0, n_inner - 1)]
    sister_slot = 3 - np.clip(m, 0, 2) - t
    first_other = np.where(np.clip(m, 0, 2) == 0, 1, 0)
    choice = np.where(on_edge, 0, np.where(sister_slot == first_other, 1, 2))
    return k * 3 + choice


def split_keys(clades: np.ndarray, n_taxa: int) -> np.ndarray:
    """Canonical root-split key of each edge given by the clade on one side: min(W, Z)."""
    return np.minimum(clades, full_set(n_taxa) ^ clades)


def _entry_keys(s_id: np.ndarray, a_id: np.ndarray, b_id: np.ndarray, q: np.int64) -> np.ndarray:
    """One int64 key per (sister, {a, b}) triple of clade ids, the sides in either order."""
    return (s_id * q + np.minimum(a_id, b_id)) * q + np.maximum(a_id, b_id)


def _parent_keys(s_id: np.ndarray, c_id: np.ndarray, q: np.int64) -> np.ndarray:
    """One int64 key per parent subsplit (sister, clade being split) of clade ids (the compiled
    sampler, variational/sbn_sampling.py, computes the same key)."""
    return s_id * q + c_id


def _lookup(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of each query in `sorted_keys`, or -1 where absent."""
    if sorted_keys.size == 0:
        return np.full(queries.shape, -1, dtype=np.int64)
    position = np.clip(np.searchsorted(sorted_keys, queries), 0, sorted_keys.size - 1)
    return np.where(sorted_keys[position] == queries, position, -1).astype(np.int64)


@dataclass(frozen=True)
class SubsplitIndex:
    """The SBN's support: root splits and conditional entries, with SBN-SA counts.

    root_splits `[R]` (sorted split keys min(W, Z)); clades `[Q]` (sorted bitsets of every
    clade involved); entries `[M]` keyed by (sister, child side a, child side b) clade ids
    (a < b), sorted, with `entry_parent [M]` the index of their parent subsplit (C = a | b, S)
    among `parent_keys [P]`, and `entry_child [M]` the bitset of side a. `members [P, W]`
    lists each parent's entries, padded with M.
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

    def clade_ids(self, bitsets: np.ndarray) -> np.ndarray:
        return _lookup(self.clades, bitsets)

    def entry_ids(self, sister: np.ndarray, side_a: np.ndarray, side_b: np.ndarray) -> np.ndarray:
        """Entry index of (sister, {a, b}) triples of bitsets, -1 outside the support."""
        q = np.int64(self.clades.size)
        s_id, a_id, b_id = self.clade_ids(sister), self.clade_ids(side_a), self.clade_ids(side_b)
        ids = _lookup(self.entry_keys, _entry_keys(s_id, a_id, b_id, q))
        return np.where((s_id < 0) | (a_id < 0) | (b_id < 0), -1, ids)

    def root_ids(self, clades: np.ndarray) -> np.ndarray:
        """Root-split index of edges given by the clade on one side, -1 if unknown."""
        return _lookup(self.root_splits, split_keys(clades, self.n_taxa))


@dataclass(frozen=True)
class TopologyTables:
    """What scoring a batch of topologies needs: `root_ids [B, E]` (root split of each
    rooting) and `entry_ids [B, E, N-2]` (conditional entry of each node in each rooting);
    -1 marks a split or subsplit pair outside the support."""

    root_ids: np.ndarray
    entry_ids: np.ndarray


def topology_tables(index: SubsplitIndex, parents: np.ndarray) -> TopologyTables:
    """Scoring tables for trees given as parent arrays `[B, 2N-3]`, vectorised over the batch."""
    structure = tree_sides(parents, index.n_taxa)
    triples, valid = candidate_triples(structure)
    candidates = index.entry_ids(triples[..., 0], triples[..., 1], triples[..., 2])
    candidates = np.where(valid, candidates, -1).reshape(*candidates.shape[:2], 9)
    choices = rooting_choices(structure)  # [B, E, N-2]
    n_trees, n_edges, n_inner = choices.shape
    batch = np.arange(n_trees)[:, None, None]
    entry_ids = candidates[batch, np.arange(n_inner)[None, None, :], choices]
    return TopologyTables(index.root_ids(structure.edge_clades), entry_ids)


def build_subsplit_index(
    parents: np.ndarray, weights: np.ndarray, n_taxa: int, chunk: int = 256
) -> SubsplitIndex:
    """The support of every rooting of the given topologies `[T, 2N-3]`, with SBN-SA counts:
    each topology's weight spread evenly over its 2N-3 rootings (Zhang & Matsen 2018)."""
    parents = np.asarray(parents, dtype=np.int64).reshape(-1, 2 * n_taxa - 3)
    weights = np.asarray(weights, dtype=np.float64)
    n_edges = 2 * n_taxa - 3
    roots, root_w, triples_all, triple_w = [], [], [], []
    for start in range(0, parents.shape[0], chunk):
        structure = tree_sides(parents[start : start + chunk], n_taxa)
        w = weights[start : start + chunk] / n_edges
        roots.append(split_keys(structure.edge_clades, n_taxa).ravel())
        root_w.append(np.repeat(w, n_edges))
        triples, valid = candidate_triples(structure)
        choices = rooting_choices(structure)  # how many rootings use each candidate
        n_trees, _, n_inner = choices.shape
        flat = (np.arange(n_trees)[:, None, None] * n_inner + np.arange(n_inner)) * 9 + choices
        used = np.bincount(flat.ravel(), minlength=n_trees * n_inner * 9).reshape(
            n_trees, n_inner, 3, 3
        )
        keep = valid & (used > 0)
        triples_all.append(triples[keep])
        triple_w.append((used * w[:, None, None, None])[keep])
    roots_flat, root_weights = np.concatenate(roots), np.concatenate(root_w)
    root_splits, root_inverse = np.unique(roots_flat, return_inverse=True)
    root_counts = np.bincount(root_inverse, root_weights, minlength=root_splits.size)

    triples = np.concatenate(triples_all)  # [K, 3]: sister, a, b
    sides = np.sort(triples[:, 1:], axis=1)
    triples = np.column_stack([triples[:, 0], sides])
    clade_of = triples[:, 1] | triples[:, 2]
    clades = np.unique(np.concatenate([triples.ravel(), clade_of]))
    q = np.int64(clades.size)
    s_id, a_id, b_id = (np.searchsorted(clades, triples[:, i]).astype(np.int64) for i in range(3))
    entry_keys, entry_inverse, first = _unique_with_first(_entry_keys(s_id, a_id, b_id, q))
    entry_counts = np.bincount(entry_inverse, np.concatenate(triple_w), minlength=entry_keys.size)
    c_id = np.searchsorted(clades, clade_of).astype(np.int64)
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
