"""What a fitted mixture says about trees: samples with branch lengths, exact topology
probabilities of the sampled topologies, split frequencies, the MAP topology with its mean
branch lengths, and the majority-rule consensus (DendroPy) with split support."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import dendropy
import numpy as np
import torch
from tqdm import tqdm

from vbpi_mix.errors import stop_if_asked
from vbpi_mix.trees.conversions import to_dendropy
from vbpi_mix.trees.topology import Topology, newick_from_parents, topology_from_parents
from vbpi_mix.variational.branch_lengths import edge_features
from vbpi_mix.variational.mixture import Mixture
from vbpi_mix.variational.substitution_posterior import SubstitutionPosterior

SAMPLE_CHUNK = 1000  # trees drawn per call: bounds memory for large N


@dataclass(frozen=True)
class TreeSample:
    """n trees drawn from q: parent arrays `[n, 2N-3]` in the kernel encoding, branch lengths
    `[n, 2N-3]` indexed like them, each tree's canonical topology, and where the fit inferred
    substitution parameters, a value of each drawn with each tree (`[n]` or `[n, K]`)."""

    taxa: tuple[str, ...]
    parents: np.ndarray
    branch_lengths: np.ndarray
    topologies: tuple[Topology, ...]
    parameters: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.topologies)

    def newick(self, i: int, labels: Sequence[str] | None = None) -> str:
        """Tree i with its branch lengths, leaves named by `labels` (default: the taxa)."""
        names = self.taxa if labels is None else labels
        return newick_from_parents(self.parents[i], names, self.branch_lengths[i])


@dataclass(frozen=True)
class TopologyProbability:
    """A sampled topology, its exact probability under q, and how often it was drawn."""

    topology: Topology
    probability: float
    count: int


@torch.no_grad()
def draw_trees(
    mixture: Mixture,
    taxa: Sequence[str],
    n: int,
    generator: torch.Generator | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
    parameters: SubstitutionPosterior | None = None,
) -> TreeSample:
    """n trees from q = (1/A) sum_a q_a: each tree's component uniform at random; with
    `parameters`, the q(theta) of inferred substitution parameters, a draw of theta for each
    tree (after the trees, so the trees do not depend on it). Setting `stop` ends it after
    the chunk under way (vbpi_mix.errors.Stopped)."""
    components = torch.randint(mixture.n_components, (n,), generator=generator).numpy()
    parents, lengths = [], []
    with tqdm(total=n, desc="sampling trees", unit="tree", disable=not progress or None) as bar:
        for start in range(0, n, SAMPLE_CHUNK):
            particles = mixture.sample(components[start : start + SAMPLE_CHUNK], generator)
            parents.append(np.asarray(particles.parents))
            lengths.append(particles.branch_lengths.numpy())
            bar.update(len(particles.parents))
            stop_if_asked(stop)
    parents_array = np.concatenate(parents)
    topologies = tuple(topology_from_parents(p, taxa) for p in parents_array)
    values = None
    if parameters is not None:
        draws, _ = parameters.rsample_and_log_prob(n, generator)
        values = {name: value.numpy() for name, value in draws.items()}
    return TreeSample(tuple(taxa), parents_array, np.concatenate(lengths), topologies, values)


def topology_probabilities(
    mixture: Mixture, sample: TreeSample, stop: threading.Event | None = None
) -> list[TopologyProbability]:
    """The distinct topologies of a sample with their exact q(tau), most probable first (the
    sample only decides which topologies are listed; probabilities are not frequencies)."""
    counts = Counter(sample.topologies)
    distinct = list(counts)
    log_q = mixture.sbn.mixture_log_prob(np.stack([t.parents for t in distinct]), stop=stop)
    order = np.argsort(-log_q, kind="stable")
    return [
        TopologyProbability(distinct[i], float(np.exp(log_q[i])), counts[distinct[i]])
        for i in order
    ]


def split_frequencies(topologies: Sequence[Topology]) -> dict[int, float]:
    """Fraction of the trees that contain each non-trivial split (key: `split_key`, the
    smaller of the two sides' bitsets), most frequent first: the Monte Carlo split support."""
    counts: Counter[int] = Counter()
    for topology in topologies:
        n = topology.n_taxa
        counts.update(s for s in topology.splits() if 1 < s.bit_count() < n - 1)
    return {split: count / len(topologies) for split, count in counts.most_common()}


@torch.no_grad()
def mean_branch_lengths(mixture: Mixture, topology: Topology) -> np.ndarray:
    """E_q[b | tau] `[2N-3]` (indexed like topology.parents): under the mixture each component
    weighs q_a(tau) / sum_a' q_a'(tau), and a log-normal's mean is exp(mu + sigma^2 / 2)."""
    parents = topology.parents[None, :]
    tables = mixture.sbn.tables(parents)
    mean, log_std = mixture.branches.mean_and_log_std(edge_features(tables))
    weights = torch.softmax(mixture.sbn.log_prob(tables), dim=0)  # [A, 1]
    per_component = torch.exp(mean + 0.5 * torch.exp(2 * log_std))  # [A, 1, E]
    return (weights[:, :, None] * per_component).sum(dim=0)[0].numpy()


def map_topology(
    mixture: Mixture, candidates: Sequence[Topology], stop: threading.Event | None = None
) -> tuple[Topology, float]:
    """The candidate with the highest q(tau) and that probability."""
    log_q = mixture.sbn.mixture_log_prob(np.stack([t.parents for t in candidates]), stop=stop)
    best = int(np.argmax(log_q))
    return candidates[best], float(np.exp(log_q[best]))


def consensus_tree(table: Sequence[TopologyProbability], min_frequency: float = 0.5):
    """Majority-rule consensus (DendroPy) of the sampled topologies weighted by their sample
    counts, support (split frequency) as internal node labels."""
    trees = dendropy.TreeList()
    for row in table:
        tree = to_dendropy(row.topology, taxon_namespace=trees.taxon_namespace)
        tree.weight = row.count
        trees.append(tree)
    return trees.consensus(
        min_freq=min_frequency, set_support_as_node_label=True, support_label_decimals=3
    )
