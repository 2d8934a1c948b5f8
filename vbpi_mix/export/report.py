"""`vbpi-mix summarize`: the files a phylogeneticist opens after a fit.

OUT/topologies.tsv and topologies.trprobs (exact q of the sampled topologies, sorted, with
cumulative probability), splits.tsv (split frequencies among the draws), map_tree.nwk (MAP
topology, mean branch lengths under q) and consensus.nwk (majority rule, split frequencies as
node labels). Every file is written atomically.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vbpi_mix.export.api import Posterior
from vbpi_mix.export.posterior import (
    TopologyProbability,
    consensus_tree,
    mean_branch_lengths,
    split_frequencies,
    topology_probabilities,
)
from vbpi_mix.export.tree_writers import split_tsv, topology_tsv, trprobs_nexus
from vbpi_mix.io.text_files import write_text_atomic

CREDIBLE_MASS = 0.95


@dataclass(frozen=True)
class PosteriorSummary:
    """Headline numbers of a summary and the files written."""

    n_trees: int
    table: list[TopologyProbability]
    credible_set_size: int | None  # topologies making up 95% of q; None if the draws cover less
    map_newick: str
    map_probability: float
    majority_splits: int
    files: list[Path]


def credible_set_size(table: list[TopologyProbability], mass: float = CREDIBLE_MASS) -> int | None:
    """Fewest most-probable topologies whose q adds up to `mass` (None when they do not)."""
    cumulative = np.cumsum([row.probability for row in table])
    size = int(np.searchsorted(cumulative, mass)) + 1
    return size if size <= len(table) else None


def write_posterior_summary(
    posterior: Posterior, out_dir: Path, n_trees: int = 10_000, seed: int = 0,
    progress: bool = False, stop: threading.Event | None = None,
) -> PosteriorSummary:  # fmt: skip
    """Draw `n_trees` from q and write the summary files into `out_dir`; setting `stop`
    ends it at its next safe point (vbpi_mix.errors.Stopped), before any file is written."""
    mixture = posterior.run.mixture
    sample = posterior.sample(n_trees, seed, progress, stop)
    table = topology_probabilities(mixture, sample, stop)
    splits = split_frequencies(sample.topologies)
    topology, probability = posterior.map_topology(tuple(row.topology for row in table), stop)
    map_newick = topology.newick(mean_branch_lengths(mixture, topology))
    consensus = consensus_tree(table)
    consensus.seed_node.label = None  # the root carries no split
    out_dir = Path(out_dir)
    texts = {
        "topologies.tsv": topology_tsv(table),
        "topologies.trprobs": trprobs_nexus(table),
        "splits.tsv": split_tsv(splits, posterior.taxa),
        "map_tree.nwk": map_newick + "\n",
        "consensus.nwk": consensus.as_string(
            schema="newick", suppress_rooting=True, unquoted_underscores=True
        ),
    }
    for name, text in texts.items():
        write_text_atomic(out_dir / name, text)
    return PosteriorSummary(
        n_trees=n_trees,
        table=table,
        credible_set_size=credible_set_size(table),
        map_newick=map_newick,
        map_probability=probability,
        majority_splits=sum(1 for frequency in splits.values() if frequency > 0.5),
        files=[out_dir / name for name in texts],
    )
