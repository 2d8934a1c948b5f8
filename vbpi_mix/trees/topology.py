"""Unrooted binary topologies over a fixed taxon order, in one canonical parent-array form.

Encoding (the kernel's, see vbpi_mix.phylo.schedule): tips 0..N-1 in taxon order, internal
nodes N..2N-3, root 2N-3, `parents[v]` for v < 2N-3, edge v above node v. Canonical form:
the tree hangs from taxon 0, whose neighbour is the root, and internal nodes are numbered in
increasing order of their clade bitset (the taxa below them). Equal unrooted topologies
therefore have equal arrays, and equality, hashing and de-duplication are array comparisons.

Clades and splits are bitsets (Python ints, bit i = taxon i); a split {W, Z} is stored as
min(W, Z) (`split_key`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.io.newick import ParsedTree

NAMES_SHOWN = 8


def split_key(clade: int, full: int) -> int:
    """Canonical name of the bipartition {clade, full ^ clade}: the smaller bitset."""
    return min(clade, full ^ clade)


def _name_list(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown}, ... ({len(names)} in all)"


def check_taxa(labels: Sequence[str], taxa: Sequence[str], source: str) -> None:
    """One-line error naming the missing, extra and repeated taxa when the label sets differ."""
    missing = sorted(set(taxa) - set(labels))
    extra = sorted(set(labels) - set(taxa))
    repeated = sorted(label for label, count in Counter(labels).items() if count > 1)
    problems = []
    if missing:
        problems.append(f"missing from the tree: {_name_list(missing)}")
    if extra:
        problems.append(f"not in the alignment: {_name_list(extra)}")
    if repeated:
        problems.append(f"repeated: {_name_list(repeated)}")
    if problems:
        raise VbpiMixError(f"{source}: taxa differ from the alignment's ({'; '.join(problems)})")


@dataclass(frozen=True, eq=False)
class Topology:
    """An unrooted binary topology; `parents` `[2N-3]` in canonical form (read-only)."""

    taxa: tuple[str, ...]
    parents: np.ndarray

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Topology)
            and self.taxa == other.taxa
            and np.array_equal(self.parents, other.parents)
        )

    def __hash__(self) -> int:
        return hash(self.parents.tobytes())

    @property
    def n_taxa(self) -> int:
        return len(self.taxa)

    def clades(self) -> list[int]:
        """Bitset of the taxa below each node `[2N-2]` (the root's is every taxon)."""
        n = self.n_taxa
        clades = [1 << v if v < n else 0 for v in range(2 * n - 2)]
        for v in _postorder(self.parents):
            if v != 2 * n - 3:
                clades[int(self.parents[v])] |= clades[v]
        return clades

    def splits(self) -> frozenset[int]:
        """The 2N-3 bipartitions (split keys) of the tree's edges, trivial ones included."""
        full = (1 << self.n_taxa) - 1
        return frozenset(split_key(c, full) for c in self.clades()[: 2 * self.n_taxa - 3])

    def newick(self, lengths: Sequence[float] | None = None) -> str:
        """Canonical Newick (children ordered by smallest taxon), trifurcating at the root."""
        return newick_from_parents(self.parents, self.taxa, lengths)


def newick_from_parents(
    parents: np.ndarray, taxa: Sequence[str], lengths: Sequence[float] | None = None
) -> str:
    """Newick of any parent array in the kernel encoding (branch lengths optional)."""
    n = len(taxa)
    children = _children(parents)

    def write(node: int) -> str:
        if node < n:
            text = quote_label(taxa[node])
        else:
            text = "(" + ",".join(write(c) for c in children[node]) + ")"
        if lengths is not None and node != 2 * n - 3:
            text += f":{float(lengths[node]):.10g}"
        return text

    return write(2 * n - 3) + ";"


def reroot(
    parents: np.ndarray, lengths: np.ndarray, new_root: int
) -> tuple[np.ndarray, np.ndarray]:
    """The same unrooted tree with internal node `new_root` as the trifurcating root.

    Returns a parent array in the kernel encoding (ids of `new_root` and 2N-3 swapped) and the
    branch lengths re-indexed to match; the topology and every edge length are unchanged.
    """
    root = len(parents)
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for child, parent in enumerate(np.asarray(parents).tolist()):
        neighbours.setdefault(child, []).append((parent, float(lengths[child])))
        neighbours.setdefault(parent, []).append((child, float(lengths[child])))
    if new_root < (root + 3) // 2 or new_root > root:
        raise ValueError(f"node {new_root} is not an internal node")
    rename = {new_root: root, root: new_root}
    new_parents = np.empty_like(np.asarray(parents))
    new_lengths = np.empty_like(np.asarray(lengths, dtype=float))
    seen, stack = {new_root}, [new_root]
    while stack:
        node = stack.pop()
        for neighbour, length in neighbours[node]:
            if neighbour not in seen:
                seen.add(neighbour)
                new_parents[rename.get(neighbour, neighbour)] = rename.get(node, node)
                new_lengths[rename.get(neighbour, neighbour)] = length
                stack.append(neighbour)
    return new_parents, new_lengths


def quote_label(label: str) -> str:
    """A Newick/NEXUS label, single-quoted when it holds punctuation or blanks."""
    if any(c in label for c in " (),:;[]'\t"):
        return "'" + label.replace("'", "''") + "'"
    return label


def _children(parents: np.ndarray) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for child, parent in enumerate(np.asarray(parents).tolist()):
        children.setdefault(parent, []).append(child)
    return children


def _postorder(parents: np.ndarray) -> list[int]:
    children = _children(parents)
    root = len(parents)
    order, stack = [], [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(children.get(node, []))
    return order[::-1]


def canonical_from_edges(
    taxa: Sequence[str],
    edges: Sequence[tuple[int, int, float]],
    leaf_labels: dict[int, str],
    source: str,
) -> tuple[Topology, np.ndarray]:
    """Canonical topology and branch lengths `[2N-3]` (nan where missing) of any tree given as
    undirected edges (a, b, length) between node ids 0..M-1, leaves labelled by name.

    The tree is hung from taxon 0; degree-2 nodes (a rooted tree's root) are passed through,
    their two edges joined. Internal nodes are numbered N..2N-3 in increasing order of their
    clade bitset (below them, away from taxon 0), so the root 2N-3 is taxon 0's neighbour.
    """
    check_taxa(list(leaf_labels.values()), taxa, source)
    n = len(taxa)
    taxon_index = {name: i for i, name in enumerate(taxa)}
    n_nodes = 1 + max(max(a, b) for a, b, _ in edges)
    adjacent: list[list[tuple[int, float]]] = [[] for _ in range(n_nodes)]
    for a, b, length in edges:
        adjacent[a].append((b, length))
        adjacent[b].append((a, length))
    tip_of = {node: taxon_index[label] for node, label in leaf_labels.items()}
    start = next(node for node, taxon in tip_of.items() if taxon == 0)

    # Walk away from taxon 0, passing through degree-2 nodes; record effective edges.
    parent_of, length_of, order = {}, {}, []
    stack = [(start, -1)]
    while stack:
        node, came_from = stack.pop()
        order.append(node)
        for neighbour, length in adjacent[node]:
            if neighbour == came_from:
                continue
            previous = node
            while len(adjacent[neighbour]) == 2:  # suppress: continue to the far side
                (x, lx), (y, ly) = adjacent[neighbour]
                nxt, extra = (y, ly) if x == previous else (x, lx)
                previous, neighbour, length = neighbour, nxt, length + extra
            parent_of[neighbour], length_of[neighbour] = node, length
            stack.append((neighbour, previous))
    inner = [v for v in order if len(adjacent[v]) != 1]
    if any(len(adjacent[v]) == 1 and v not in tip_of for v in order):
        raise VbpiMixError(f"{source}: a leaf without a taxon label")
    if len(inner) != n - 2 or any(len(adjacent[v]) != 3 for v in inner):
        raise VbpiMixError(f"{source}: not a binary tree (it has a polytomy)")
    clade = dict.fromkeys(order, 0)
    for node in reversed(order):
        if node in tip_of:
            clade[node] = 1 << tip_of[node]
        if node != start:
            clade[parent_of[node]] |= clade[node]
    ids = {node: n + rank for rank, node in enumerate(sorted(inner, key=clade.__getitem__))}
    ids.update(tip_of)
    parents = np.empty(2 * n - 3, dtype=np.int64)
    lengths = np.empty(2 * n - 3)
    root = 2 * n - 3
    for node, parent in parent_of.items():
        if parent == start:  # taxon 0's pendant edge: taxon 0 hangs from the root
            parents[0], lengths[0] = root, length_of[node]
        else:
            parents[ids[node]], lengths[ids[node]] = ids[parent], length_of[node]
    parents.setflags(write=False)
    return Topology(tuple(taxa), parents), lengths


def topology_from_parsed(
    parsed: ParsedTree, taxa: Sequence[str], source: str
) -> tuple[Topology, np.ndarray]:
    """Canonical topology and lengths of a tree from the fast Newick reader."""
    edges = [(i, p, parsed.lengths[i]) for i, p in enumerate(parsed.parents) if p >= 0]
    leaves = {i: label for i, label in enumerate(parsed.labels) if label is not None}
    return canonical_from_edges(taxa, edges, leaves, source)


def topology_from_parents(parents: np.ndarray, taxa: Sequence[str]) -> Topology:
    """Canonical form of any parent array in the kernel encoding."""
    edges = [(v, p, 0.0) for v, p in enumerate(np.asarray(parents).tolist())]
    leaves = {i: name for i, name in enumerate(taxa)}
    return canonical_from_edges(taxa, edges, leaves, "parent array")[0]
