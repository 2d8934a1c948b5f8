"""How much a fitted mixture gains from being a mixture: its ELBO split into the components'
mean ELBO and their Jensen-Shannon divergence,

    ELBO(q) = (1/A) sum_a ELBO(q_a) + (1/A) sum_a KL(q_a || q),   q = (1/A) sum_a q_a,

estimated from one stratified draw (M/A particles per component). The divergence is at most
log A, reached only by components with disjoint supports; so a uniform mixture's ELBO is at
most log A above that of the best single member of its family, and components that stay
copies of one another (divergence near 0) add nothing to it.

    python -m benchmarks.component_spread RUN_DIR [RUN_DIR ...] [--particles 5000]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numba
import torch

from vbpi_mix.inference.evaluation import score_particles
from vbpi_mix.inference.runs import Run, open_run


def standard_error(values: torch.Tensor) -> float:
    return float(values.std() / math.sqrt(len(values)))


def elbo_terms(run: Run, particles: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """log w under the mixture and under each particle's own component `[M]`, from one
    stratified draw of `particles`: their means are the ELBO and the components' mean ELBO,
    their difference's mean the Jensen-Shannon divergence."""
    scores = score_particles(
        run.mixture, run.target, particles, torch.Generator().manual_seed(seed),
        parameters=run.parameters,
    )  # fmt: skip
    return scores.log_weights(), scores.own_log_weights()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--particles", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"{args.particles} particles, stratified over the components, seed {args.seed}; "
          "standard errors in brackets.\n")  # fmt: skip
    print("| run | A | ELBO | components' mean ELBO | JS divergence | log A |")
    print("|---|---:|---:|---:|---:|---:|")
    for folder in args.runs:
        run = open_run(folder)
        mixture, own = elbo_terms(run, args.particles, args.seed)
        components = run.mixture.n_components
        print(f"| {folder} | {components} | {float(mixture.mean()):.2f} "
              f"({standard_error(mixture):.2f}) | {float(own.mean()):.2f} "
              f"({standard_error(own):.2f}) | {float((mixture - own).mean()):.3f} "
              f"({standard_error(mixture - own):.3f}) | {math.log(components):.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
