"""Convert DendroPy trees to the kernel's parent-array encoding in a fixed taxon order.

Encoding (see vbpi_mix.phylo.schedule): tips 0..N-1 in taxon order, internal nodes N..2N-3,
root 2N-3 trifurcating; `parents[v]` for v < 2N-3 and branch lengths indexed by the node below
the edge. A rooted input (bifurcating root) is unrooted by joining the root's two edges.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import dendropy
import numpy as np

from vbpi_mix.errors import VbpiMixError

NAMES_SHOWN = 8


def _name_list(names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown}, ... ({len(names)} in all)"


def check_taxa(labels: Sequence[str], taxa: Sequence[str], source: str) -> None:
    """One-line error naming the missing and extra taxa when the label sets differ."""
    missing = sorted(set(taxa) - set(labels))
    extra = sorted(set(labels) - set(taxa))
    duplicated = sorted(label for label, count in Counter(labels).items() if count > 1)
    problems = []
    if missing:
        problems.append(f"missing from the tree: {_name_list(missing)}")
    if extra:
        problems.append(f"not in the alignment: {_name_list(extra)}")
    if duplicated:
        problems.append(f"repeated: {_name_list(duplicated)}")
    if problems:
        raise VbpiMixError(f"{source}: taxa differ from the alignment's ({'; '.join(problems)})")


def dendropy_to_parents(
    tree: dendropy.Tree, taxa: Sequence[str], source: str = "tree"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Parent array `[2N-3]` and branch lengths `[2N-3]` (None if any length is missing)."""
    n = len(taxa)
    leaf_labels = [leaf.taxon.label if leaf.taxon else "" for leaf in tree.leaf_node_iter()]
    check_taxa(leaf_labels, taxa, source)
    taxon_index = {name: i for i, name in enumerate(taxa)}

    neighbours: dict[dendropy.Node, dict[dendropy.Node, float | None]] = {}
    for node in tree.preorder_node_iter():
        neighbours.setdefault(node, {})
        if node.parent_node is not None:
            length = node.edge.length
            neighbours[node][node.parent_node] = length
            neighbours[node.parent_node][node] = length
    for node in [v for v, adjacent in neighbours.items() if len(adjacent) == 2]:
        (a, length_a), (b, length_b) = neighbours.pop(node).items()
        del neighbours[a][node], neighbours[b][node]
        joined = None if length_a is None or length_b is None else length_a + length_b
        neighbours[a][b] = neighbours[b][a] = joined
    inner = [v for v, adjacent in neighbours.items() if len(adjacent) != 1]
    if any(len(neighbours[v]) != 3 for v in inner) or len(inner) != n - 2:
        raise VbpiMixError(f"{source}: not a binary tree (it has a polytomy)")

    parents = np.empty(2 * n - 3, dtype=np.int64)
    lengths = np.empty(2 * n - 3, dtype=np.float64)
    has_lengths = True
    root = inner[0]
    ids = {root: 2 * n - 3}
    next_inner = n
    stack = [root]
    while stack:
        node = stack.pop()
        for child, length in neighbours[node].items():
            if child in ids:
                continue
            if len(neighbours[child]) == 1:
                ids[child] = taxon_index[child.taxon.label]
            else:
                ids[child] = next_inner
                next_inner += 1
                stack.append(child)
            parents[ids[child]] = ids[node]
            has_lengths = has_lengths and length is not None
            lengths[ids[child]] = length if length is not None else np.nan
    return parents, (lengths if has_lengths else None)


def parents_to_newick(
    parents: np.ndarray, taxa: Sequence[str], lengths: np.ndarray | None = None
) -> str:
    """Newick string of a parent-array tree, trifurcating at the root (`[&U]` unrooted)."""
    n = len(taxa)
    children: dict[int, list[int]] = {}
    for child, parent in enumerate(np.asarray(parents).tolist()):
        children.setdefault(parent, []).append(child)

    def write(node: int) -> str:
        text = taxa[node] if node < n else "(" + ",".join(write(c) for c in children[node]) + ")"
        if lengths is not None and node != 2 * n - 3:
            text += f":{float(lengths[node]):.10g}"
        return text

    return f"{write(2 * n - 3)};"
