"""Coverage of the inferred substitution parameters' 95% intervals on simulated data.

For each seed: a random 8-taxon tree with branch lengths from Exponential(10) (the prior),
1000 sites simulated under HKY+G4 (kappa 4, alpha 0.5, frequencies 0.3, 0.2, 0.25, 0.25) or
GTR+G4 (exchangeabilities 1, 4, 0.5, 1.5, 6, 1 scaled to sum 1, the same frequencies and
alpha); a fit on the true topology (the support is that one tree, so only branch lengths and
parameters are learnt); then whether each parameter's 95% interval holds the true value.

    python -m benchmarks.parameter_coverage [--seeds 20] [--iterations 3000]

prints one row per model: intervals that cover the truth, of how many, and per parameter.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from vbpi_mix.inference.runs import ModelConfig, create_run
from vbpi_mix.inference.trainer import TrainingConfig
from vbpi_mix.phylo.models import GTR, HKY, SubstitutionModel
from vbpi_mix.phylo.simulate import simulate_sequences
from vbpi_mix.threads import ThreadTuner, usable_cores
from vbpi_mix.trees.random_tree import random_parents
from vbpi_mix.trees.support import Support
from vbpi_mix.trees.topology import topology_from_parents

FREQUENCIES = (0.3, 0.2, 0.25, 0.25)
TRUE_RATES = np.array([1.0, 4.0, 0.5, 1.5, 6.0, 1.0]) / 14.0
TRUTH = {"kappa": 4.0, "alpha": 0.5, "frequencies": FREQUENCIES, "rates": tuple(TRUE_RATES)}


def true_model(name: str) -> SubstitutionModel:
    frequencies = torch.tensor(FREQUENCIES, dtype=torch.float64)
    if name == "HKY":
        return HKY(TRUTH["kappa"], frequencies, 4, TRUTH["alpha"])
    return GTR(torch.as_tensor(TRUE_RATES), frequencies, 4, TRUTH["alpha"])


def covered_intervals(
    name: str, seed: int, folder: Path, iterations: int = 3000, n_taxa: int = 8, sites: int = 1000
) -> dict[str, list[bool]]:
    """Per inferred parameter, whether each coordinate's 95% interval holds the truth, for
    one simulated alignment fitted on its true topology."""
    rng = np.random.default_rng(seed)
    taxa = tuple(f"t{i}" for i in range(n_taxa))
    parents = random_parents(n_taxa, rng)
    lengths = rng.exponential(0.1, len(parents))
    sequences = simulate_sequences(parents, lengths, true_model(name), sites, rng)
    fasta = folder / f"{name}_{seed}.fasta"
    fasta.write_text("".join(f">{t}\n{s}\n" for t, s in zip(taxa, sequences, strict=True)))
    support = Support(taxa, (topology_from_parents(parents, taxa),), (1.0,))
    model = ModelConfig(alignment=str(fasta), substitution_model=name, gamma_categories=4)
    training = TrainingConfig(
        iterations=iterations, topology_lr=0.01, branch_lr=0.01, warmup=iterations // 4,
        seed=seed, checkpoint_every=iterations,
    )  # fmt: skip
    run = create_run(folder / f"{name}_{seed}", model, training, support)
    run.trainer.run(progress=False, threads=ThreadTuner(usable_cores()))  # as `vbpi-mix fit`
    result = {}
    for parameter, estimate in run.parameters.summary(seed=seed).items():
        truth = np.atleast_1d(TRUTH[parameter])
        lower, upper = np.array(estimate["lower"]), np.array(estimate["upper"])
        result[parameter] = list((lower <= truth) & (truth <= upper))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--models", nargs="+", default=["HKY", "GTR"])
    args = parser.parse_args()
    print("| model | covered | per parameter (covered / intervals) |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models:
            hits, totals = Counter(), Counter()
            for seed in range(args.seeds):
                for parameter, flags in covered_intervals(
                    name, seed, Path(folder), args.iterations
                ).items():
                    hits[parameter] += sum(flags)
                    totals[parameter] += len(flags)
            per = ", ".join(f"{p} {hits[p]}/{totals[p]}" for p in totals)
            print(
                f"| {name}+G4 | {sum(hits.values())}/{sum(totals.values())} "
                f"({sum(hits.values()) / sum(totals.values()):.1%}) | {per} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
