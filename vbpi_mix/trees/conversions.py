"""Conversions between our Topology and DendroPy / ete3 trees (for users and file IO)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import dendropy
import numpy as np

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.trees.topology import Topology, canonical_from_edges

if TYPE_CHECKING:
    import ete3


def topology_from_dendropy(
    tree: dendropy.Tree, taxa: Sequence[str], source: str = "tree"
) -> tuple[Topology, np.ndarray]:
    """Canonical topology and branch lengths `[2N-3]` (nan where missing) of a DendroPy tree."""
    ids = {node: i for i, node in enumerate(tree.preorder_node_iter())}
    edges = [
        (
            ids[node],
            ids[node.parent_node],
            node.edge.length if node.edge.length is not None else np.nan,
        )
        for node in ids
        if node.parent_node is not None
    ]
    leaves = {ids[leaf]: leaf.taxon.label if leaf.taxon else "" for leaf in tree.leaf_node_iter()}
    return canonical_from_edges(taxa, edges, leaves, source)


def topology_from_ete3(
    tree: ete3.Tree, taxa: Sequence[str], source: str = "tree"
) -> tuple[Topology, np.ndarray]:
    """Canonical topology and branch lengths of an ete3 tree."""
    ids = {node: i for i, node in enumerate(tree.traverse("preorder"))}
    edges = [(ids[node], ids[node.up], float(node.dist)) for node in ids if node.up is not None]
    leaves = {ids[leaf]: leaf.name for leaf in tree.iter_leaves()}
    return canonical_from_edges(taxa, edges, leaves, source)


def to_dendropy(
    topology: Topology,
    lengths: Sequence[float] | None = None,
    taxon_namespace: dendropy.TaxonNamespace | None = None,
) -> dendropy.Tree:
    """An unrooted DendroPy tree (trifurcating at the canonical root)."""
    return dendropy.Tree.get(
        data=topology.newick(lengths), schema="newick", rooting="force-unrooted",
        preserve_underscores=True, taxon_namespace=taxon_namespace,
    )  # fmt: skip


def import_ete3():
    """The ete3 module, an optional extra (imported where used: with scipy.stats it takes a
    second to load), or a one-line error naming the install."""
    try:
        import ete3
    except ImportError:
        raise VbpiMixError(
            "ete3 trees need the optional ete3 package: pip install 'vbpi-mix[ete3]'"
        ) from None
    return ete3


def to_ete3(topology: Topology, lengths: Sequence[float] | None = None) -> ete3.Tree:
    """An ete3 tree (trifurcating at the canonical root, so unrooted in ete3's sense)."""
    return import_ete3().Tree(
        topology.newick(lengths), format=1 if lengths is not None else 9, quoted_node_names=True
    )
