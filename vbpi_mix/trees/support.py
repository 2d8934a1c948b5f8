"""The SBN support from tree collections: per file, the credible set of its topologies by
frequency; then the union over files (replicates), with summed counts (as VBPI does).

Distinct tree strings are parsed once across all files (UFBoot files repeat many trees), with
the fast Newick reader; everything else is counting.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from vbpi_mix.errors import VbpiMixError
from vbpi_mix.io.newick import parse_newick
from vbpi_mix.io.tree_files import read_tree_strings
from vbpi_mix.trees.topology import Topology, topology_from_parsed


@dataclass(frozen=True)
class Support:
    """Topologies of the support (most frequent first) and their summed weights."""

    taxa: tuple[str, ...]
    topologies: tuple[Topology, ...]
    counts: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.topologies)

    def parents(self) -> np.ndarray:
        """The topologies as parent arrays `[T, 2N-3]`, in support order."""
        return np.stack([topology.parents for topology in self.topologies])


class TopologyReader:
    """Reads tree files into topology counts, parsing each distinct string only once."""

    def __init__(self, taxa: Sequence[str]) -> None:
        self.taxa = tuple(taxa)
        # one cache per translate table: the same string may name other taxa under another
        self._caches: dict[frozenset[tuple[str, str]] | None, dict[str, Topology]] = {}

    def read(self, path: str | os.PathLike[str], burnin: float = 0) -> Counter[Topology]:
        """Weights of each topology in one file (after burn-in; `[&W p]` weights honoured)."""
        strings = read_tree_strings(path, burnin)
        table = frozenset(strings.translate.items()) if strings.translate else None
        cache = self._caches.setdefault(table, {})
        counts: Counter[Topology] = Counter()
        for index, (newick, weight) in enumerate(strings.weights.items(), start=1):
            topology = cache.get(newick)
            if topology is None:
                try:
                    parsed = parse_newick(newick, strings.translate)
                except VbpiMixError as error:
                    raise VbpiMixError(f"{path}, tree {index}: {error}") from None
                topology = topology_from_parsed(parsed, self.taxa, f"{path}, tree {index}")[0]
                cache[newick] = topology
            counts[topology] += weight
        return counts


def credible_set(counts: Counter[Topology], mass: float = 0.95) -> Counter[Topology]:
    """The most frequent topologies whose weights first reach `mass` of the total (ties broken
    by first appearance); mass 1 keeps all."""
    if not 0 < mass <= 1:
        raise VbpiMixError(f"credible mass must be in (0, 1]; got {mass}")
    total = sum(counts.values())
    kept: Counter[Topology] = Counter()
    cumulative = 0.0
    for topology, weight in counts.most_common():
        if cumulative >= mass * total * (1 - 1e-12):
            break
        kept[topology] = weight
        cumulative += weight
    return kept


def build_support(
    paths: Sequence[str | os.PathLike[str]],
    taxa: Sequence[str],
    credible: float = 0.95,
    burnin: float = 0,
    progress: bool = True,
) -> Support:
    """Union over files of each file's credible set, counts summed over files."""
    if not paths:
        raise VbpiMixError("no support tree files given")
    reader = TopologyReader(taxa)
    union: Counter[Topology] = Counter()
    for path in tqdm(paths, desc="support files", unit="file", disable=not progress or None):
        union.update(credible_set(reader.read(path, burnin), credible))
    ranked = union.most_common()
    return Support(tuple(taxa), tuple(t for t, _ in ranked), tuple(float(c) for _, c in ranked))


def golden_probabilities(
    paths: Sequence[str | os.PathLike[str]], taxa: Sequence[str]
) -> dict[Topology, float]:
    """Topology posterior probabilities from MrBayes `.trprobs` files (`[&W p]` weights), each
    file normalised to 1 and then averaged over files (the golden-run replicates)."""
    if not paths:
        raise VbpiMixError("no golden-run .trprobs files given")
    reader = TopologyReader(taxa)
    average: Counter[Topology] = Counter()
    for path in paths:
        counts = reader.read(path)
        total = sum(counts.values())
        for topology, weight in counts.items():
            average[topology] += weight / total / len(paths)
    return dict(average)
