"""A fitted run's posterior for Python users, as DendroPy and ete3 trees.

from vbpi_mix.export.api import Posterior
posterior = Posterior.open("runs/example")
trees = posterior.tree_list(1000)        # dendropy.TreeList, branch lengths drawn from q
best = posterior.map_tree()              # dendropy.Tree, mean branch lengths
consensus = posterior.consensus_tree()   # majority rule, support as node labels
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dendropy
import torch

from vbpi_mix.export.posterior import (
    TopologyProbability,
    TreeSample,
    consensus_tree,
    draw_trees,
    map_topology,
    mean_branch_lengths,
    topology_probabilities,
)
from vbpi_mix.export.tree_writers import sample_newick
from vbpi_mix.inference.runs import Run, open_run
from vbpi_mix.trees.conversions import import_ete3, to_dendropy, to_ete3
from vbpi_mix.trees.topology import Topology

if TYPE_CHECKING:
    import ete3


@dataclass
class Posterior:
    """The variational posterior q of one run folder."""

    run: Run

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str]) -> Posterior:
        return cls(open_run(run_dir))

    @property
    def taxa(self) -> tuple[str, ...]:
        return self.run.alignment.taxa

    def sample(
        self, n: int, seed: int = 0, progress: bool = False, stop: threading.Event | None = None
    ) -> TreeSample:
        """n trees with branch lengths drawn from q (repeatable by seed), each with a draw of
        the inferred substitution parameters where the fit has any; setting `stop` ends the
        draw after the chunk under way (vbpi_mix.errors.Stopped)."""
        generator = torch.Generator().manual_seed(seed)
        return draw_trees(
            self.run.mixture, self.taxa, n, generator, progress, stop, self.run.parameters
        )

    def tree_list(self, n: int, seed: int = 0) -> dendropy.TreeList:
        """n sampled trees as an unrooted DendroPy TreeList."""
        return dendropy.TreeList.get(
            data=sample_newick(self.sample(n, seed)), schema="newick",
            rooting="force-unrooted", preserve_underscores=True,
        )  # fmt: skip

    def ete3_trees(self, n: int, seed: int = 0) -> list[ete3.Tree]:
        """n sampled trees as ete3 trees (trifurcating at the root)."""
        ete3 = import_ete3()
        sample = self.sample(n, seed)
        return [ete3.Tree(sample.newick(i), format=1, quoted_node_names=True) for i in range(n)]

    def topology_probabilities(self, n: int = 10_000, seed: int = 0) -> list[TopologyProbability]:
        """Exact q of the distinct topologies among n draws, most probable first."""
        return topology_probabilities(self.run.mixture, self.sample(n, seed))

    def map_topology(
        self, extra: tuple[Topology, ...] = (), stop: threading.Event | None = None
    ) -> tuple[Topology, float]:
        """The topology of highest q among the support (and `extra`), with its probability."""
        return map_topology(self.run.mixture, self.run.support.topologies + tuple(extra), stop)

    def map_tree(self, extra: tuple[Topology, ...] = ()) -> dendropy.Tree:
        """The MAP topology with its mean branch lengths under q, as a DendroPy tree."""
        topology, _ = self.map_topology(extra)
        return to_dendropy(topology, mean_branch_lengths(self.run.mixture, topology))

    def map_tree_ete3(self, extra: tuple[Topology, ...] = ()) -> ete3.Tree:
        """The MAP topology with its mean branch lengths, as an ete3 tree."""
        topology, _ = self.map_topology(extra)
        return to_ete3(topology, mean_branch_lengths(self.run.mixture, topology))

    def consensus_tree(self, n: int = 10_000, seed: int = 0) -> dendropy.Tree:
        """Majority-rule consensus of n draws, split frequencies as node labels."""
        return consensus_tree(self.topology_probabilities(n, seed))
