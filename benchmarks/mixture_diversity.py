"""Does a mixture gain by diversifying? From a trained one-component run, a uniform mixture
of A copies (optionally with Gaussian noise of sd `--noise` added to every component's SBN
logits, or to every parameter with `--noise-on all`) trains under A2A at a constant learning
rate; every `--every` iterations its ELBO is split into the components' mean ELBO and their
Jensen-Shannon divergence (benchmarks/component_spread.py):

    ELBO(q) = (1/A) sum_a ELBO(q_a) + (1/A) sum_a KL(q_a || q).

Components that move apart raise the second term; the mixture gains only if the first does
not fall by as much.

    python -m benchmarks.mixture_diversity RUN_DIR [--components 5] [--iterations 8000]
        [--lr 3e-4] [--noise 0.1] [--noise-on sbn|all] [--every 2000] [--particles 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numba
import torch

from benchmarks.component_spread import elbo_terms
from vbpi_mix.inference.runs import Run, create_run, open_run
from vbpi_mix.inference.trainer import TrainingConfig


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a trained one-component run folder")
    parser.add_argument("--components", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=8000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--noise-on", choices=("sbn", "all"), default="sbn")
    parser.add_argument("--every", type=int, default=2000)
    parser.add_argument("--particles", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


def copies(args: argparse.Namespace, single: Run) -> Run:
    """A-component copies of `single`'s fit, perturbed, with their own A2A trainer."""
    model = dataclasses.replace(single.model, components=args.components)
    training = TrainingConfig(
        iterations=args.iterations, particles=10, topology_lr=args.lr, branch_lr=args.lr,
        warmup=0, split_at=0, decay_every=10**9, seed=args.seed,
    )  # fmt: skip
    run = create_run(Path(tempfile.mkdtemp()), model, training, single.support)
    generator = torch.Generator().manual_seed(args.seed)
    mixture = run.mixture
    with torch.no_grad():
        mixture.tie_to(single.mixture)
        noisy = mixture.sbn if args.noise_on == "sbn" else mixture
        for parameter in noisy.parameters():
            parameter.add_(args.noise * torch.randn(parameter.shape, generator=generator))
    return run


def row(args: argparse.Namespace, run: Run, label: str) -> str:
    log_w, own = elbo_terms(run, args.particles, seed=0)
    mll = float(torch.logsumexp(log_w, 0)) - math.log(len(log_w))
    return (f"| {label} | {float(log_w.mean()):.2f} | {float(own.mean()):.2f} | "
            f"{float((log_w - own).mean()):.3f} | {mll:.2f} |")  # fmt: skip


def main() -> None:
    args = arguments()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    single = open_run(args.run)
    print(f"{args.run}: A = {args.components} copies, noise sd {args.noise:g} on "
          f"{args.noise_on}, A2A, K = 10, learning rate {args.lr:g} (constant), seed "
          f"{args.seed}; estimates from {args.particles} particles (the MLL from all of "
          "them).\n")  # fmt: skip
    print("| iterations | ELBO | components' mean ELBO | JS divergence | MLL |")
    print("|---|---:|---:|---:|---:|")
    print(row(args, single, "A = 1 (the run)"), flush=True)
    run = copies(args, single)
    print(row(args, run, "0"), flush=True)
    start = time.perf_counter()
    for iteration in range(1, args.iterations + 1):
        run.trainer.step()
        if iteration % args.every == 0:
            label = f"{iteration} ({time.perf_counter() - start:.0f} s)"
            print(row(args, run, label), flush=True)


if __name__ == "__main__":
    main()
