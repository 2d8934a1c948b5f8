"""Text formats for posterior trees: NEXUS with a translate block (FigTree, DendroPy, PAUP*),
plain Newick (ete3 and everything else), a MrBayes-style `.trprobs` of topology
probabilities, and tab-separated topology and split tables. Pure text; callers write it
atomically."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from vbpi_mix.choices import RATE_NAMES
from vbpi_mix.export.posterior import TopologyProbability, TreeSample
from vbpi_mix.trees.topology import newick_from_parents, quote_label


def _nexus(taxa: Sequence[str], tree_lines: Iterable[str]) -> str:
    """A NEXUS file: taxa block, then a trees block whose translate maps 1..N to the taxa."""
    labels = " ".join(quote_label(name) for name in taxa)
    translate = ",\n".join(f"    {i} {quote_label(name)}" for i, name in enumerate(taxa, 1))
    return (
        f"#NEXUS\n\nbegin taxa;\n  dimensions ntax={len(taxa)};\n  taxlabels {labels};\nend;\n\n"
        f"begin trees;\n  translate\n{translate};\n"
        + "".join(f"  {line}\n" for line in tree_lines)
        + "end;\n"
    )


def _numbers(taxa: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(i) for i in range(1, len(taxa) + 1))


def sample_nexus(sample: TreeSample) -> str:
    """Every sampled tree, unrooted, with branch lengths, leaves as translate numbers."""
    numbers = _numbers(sample.taxa)
    return _nexus(
        sample.taxa,
        (f"tree sample_{i + 1} = [&U] {sample.newick(i, numbers)}" for i in range(len(sample))),
    )


def sample_newick(sample: TreeSample) -> str:
    """One Newick tree per line, with taxon names and branch lengths."""
    return "".join(f"{sample.newick(i)}\n" for i in range(len(sample)))


# each substitution parameter's coordinates as MrBayes' .p files name them
MRBAYES_COLUMNS: dict[str, tuple[str, ...]] = {
    "kappa": ("kappa",),
    "rates": tuple(f"r({a}<->{b})" for a, b in RATE_NAMES),
    "frequencies": tuple(f"pi({state})" for state in "ACGT"),
    "alpha": ("alpha",),
}


def parameter_table(sample: TreeSample) -> str:
    """The values drawn with each tree, tab-separated, as MrBayes' `.p` files name them: tree
    (its number in the tree file), TL (tree length), kappa, r(A<->C) .. r(G<->T) (summing to
    1), pi(A) .. pi(T), alpha; only the columns of inferred parameters after TL."""
    columns = {"tree": np.arange(1, len(sample) + 1), "TL": sample.branch_lengths.sum(axis=1)}
    for name, values in (sample.parameters or {}).items():
        table = values.reshape(len(sample), -1)
        columns.update({label: table[:, i] for i, label in enumerate(MRBAYES_COLUMNS[name])})
    table = np.column_stack(list(columns.values()))
    rows = ("\t".join(f"{value:.6g}" for value in row) + "\n" for row in table)
    return "\t".join(columns) + "\n" + "".join(rows)


def trprobs_nexus(table: Sequence[TopologyProbability]) -> str:
    """Topologies and probabilities as MrBayes writes `.trprobs`: `[p = .., P = ..]` with the
    probability and the cumulative one, and `[&W p]` (readable back as a golden file)."""
    taxa = table[0].topology.taxa
    numbers, lines = _numbers(taxa), []
    for rank, (row, cumulative) in enumerate(zip(table, _cumulative(table), strict=True), 1):
        newick = newick_from_parents(row.topology.parents, numbers)
        lines.append(
            f"tree tree_{rank} [p = {row.probability:.6g}, P = {cumulative:.6g}] = "
            f"[&W {row.probability:.10g}] {newick}"
        )
    return _nexus(taxa, lines)


def _cumulative(table: Sequence[TopologyProbability]) -> list[float]:
    return np.cumsum([row.probability for row in table]).tolist()


def topology_tsv(table: Sequence[TopologyProbability]) -> str:
    """rank, q(tau), cumulative q, times drawn, Newick; most probable first."""
    lines = ["rank\tprobability\tcumulative\tsample_count\tnewick"]
    for rank, (row, cumulative) in enumerate(zip(table, _cumulative(table), strict=True), 1):
        lines.append(
            f"{rank}\t{row.probability:.6g}\t{cumulative:.6g}\t{row.count}\t{row.topology.newick()}"
        )
    return "\n".join(lines) + "\n"


def split_tsv(frequencies: dict[int, float], taxa: Sequence[str]) -> str:
    """frequency, side size, MrBayes-style pattern (`*` for the taxa on the side without the
    first taxon, in alignment order), and those taxa; most frequent first."""
    full = (1 << len(taxa)) - 1
    lines = ["frequency\tsize\tpattern\ttaxa"]
    for split, frequency in frequencies.items():
        side = full ^ split if split & 1 else split
        members = [i for i in range(len(taxa)) if side >> i & 1]
        pattern = "".join("*" if side >> i & 1 else "." for i in range(len(taxa)))
        names = ",".join(taxa[i] for i in members)
        lines.append(f"{frequency:.6g}\t{len(members)}\t{pattern}\t{names}")
    return "\n".join(lines) + "\n"
