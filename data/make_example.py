"""Make the bundled example: 16 taxa, 800 sites simulated under JC69 down a random tree.

Run from the repository root: `python data/make_example.py`. Fixed seed, so the files are
reproducible. Internal branches of 0.004-0.05 leave a few of them short, so that the posterior
concentrates on a few topologies around the true one rather than on one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vbpi_mix.io.text_files import write_text_atomic
from vbpi_mix.phylo.models import JC69
from vbpi_mix.phylo.simulate import simulate_sequences
from vbpi_mix.trees.random_tree import random_parents
from vbpi_mix.trees.topology import newick_from_parents

SEED = 20261125
N_TAXA = 16
N_SITES = 800
MISSING_FRACTION = 0.01  # a few gaps, as real alignments have


def main() -> None:
    rng = np.random.default_rng(SEED)
    taxa = [f"taxon_{i + 1:02d}" for i in range(N_TAXA)]
    parents = random_parents(N_TAXA, rng)
    lengths = np.where(
        np.arange(len(parents)) < N_TAXA,
        rng.uniform(0.02, 0.15, len(parents)),  # pendant edges
        rng.uniform(0.004, 0.05, len(parents)),  # internal edges: a few are short
    )
    sequences = simulate_sequences(parents, lengths, JC69(), N_SITES, rng)
    gapped = []
    for sequence in sequences:
        chars = np.array(list(sequence))
        chars[rng.random(N_SITES) < MISSING_FRACTION] = "-"
        gapped.append("".join(chars))
    here = Path(__file__).parent
    fasta = "".join(f">{name}\n{seq}\n" for name, seq in zip(taxa, gapped, strict=True))
    write_text_atomic(here / "example.fasta", fasta)
    write_text_atomic(
        here / "example_true_tree.nwk", newick_from_parents(parents, taxa, lengths) + "\n"
    )


if __name__ == "__main__":
    main()
