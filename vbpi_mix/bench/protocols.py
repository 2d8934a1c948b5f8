"""Benchmark protocols: the published one and a short smoke test of the grid.

`paper` is the VBPI / VBPI-Mixtures protocol (published.md): 400,000 iterations, K = 10,
VIMCO, Adam with learning rate 0.001, x0.75 every 20,000 iterations, annealing over the first
100,000, PSP features, MLL from 1000 particles x 100 repeats; one 1000-particle estimate
every 10,000 iterations records the MLL against training time.
`short` is the common protocol of the mixture comparison (A = 1 against A = 5 under A2A, S2A
and S2S): 100,000 iterations, learning rate 0.003 x0.75 every 20,000 (it ends near the
published 0.001), annealing over the first 25,000, the paper's evaluation; a mixture trains
one component for the first half and splits it (as the reproduction's mixture runs did,
whatever the trainer's default).
`quick` keeps K, VIMCO and PSP, and trains 10,000 iterations at learning rate 0.003, annealing
over all of them (beta reaches 1 at the end); MLL from 1000 particles x 10 repeats: a smoke
test of the whole grid in minutes, not a reproduction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vbpi_mix.inference.trainer import TrainingConfig


@dataclass(frozen=True)
class Protocol:
    """A training budget and schedule plus the evaluation it ends with."""

    name: str
    iterations: int
    learning_rate: float
    decay_every: int
    warmup: int
    eval_repeats: int
    eval_every: int
    particles: int = 10
    eval_particles: int = 1000

    def with_iterations(self, iterations: int) -> Protocol:
        """The protocol over another budget; the warm-up keeps its fraction of it."""
        warmup = round(self.warmup * iterations / self.iterations)
        return dataclasses.replace(self, iterations=iterations, warmup=warmup)

    def training(
        self, estimator: str, subset: int | None, seed: int, components: int
    ) -> TrainingConfig:
        """The training of one setting; a mixture splits at half the iterations."""
        return TrainingConfig(
            iterations=self.iterations,
            particles=self.particles,
            estimator=estimator,
            subset=subset,
            objective="vimco",
            topology_lr=self.learning_rate,
            branch_lr=self.learning_rate,
            decay_every=self.decay_every,
            warmup=self.warmup,
            split_at=self.iterations // 2 if components > 1 else None,
            eval_every=self.eval_every,
            eval_particles=self.eval_particles,
            seed=seed,
        )


PROTOCOLS = {
    "paper": Protocol("paper", 400_000, 0.001, 20_000, 100_000, 100, 10_000),
    "short": Protocol("short", 100_000, 0.003, 20_000, 25_000, 100, 10_000),
    "quick": Protocol("quick", 10_000, 0.003, 20_000, 10_000, 10, 1_000),
}
