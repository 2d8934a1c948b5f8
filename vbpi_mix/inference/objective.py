"""The shared step of every estimator: draw particles from the chosen components and score
them under the target and under every component (METHOD.md sections 1 and 5)."""

from __future__ import annotations

import numpy as np
import torch

from vbpi_mix.inference.estimators import LogWeights
from vbpi_mix.phylo.likelihood import TreeLikelihood
from vbpi_mix.phylo.priors import log_branch_prior, log_topology_prior
from vbpi_mix.variational.mixture import Mixture, Particles, SubMixture


class Target:
    """log p(y, tau, b) = log p(y | tau, b) + log p(tau) + log p(b), batched over particles."""

    def __init__(self, likelihood: TreeLikelihood, branch_rate: float = 10.0) -> None:
        self.likelihood = likelihood
        self.branch_rate = branch_rate
        self.log_topology_prior = log_topology_prior(likelihood.alignment.n_taxa)

    def log_likelihood(self, particles: Particles) -> torch.Tensor:
        return self.likelihood(particles.parents, particles.branch_lengths)

    def log_prior(self, particles: Particles) -> torch.Tensor:
        return self.log_topology_prior + log_branch_prior(
            particles.branch_lengths, self.branch_rate
        )


def draw_log_weights(
    family: Mixture | SubMixture,
    target: Target,
    drawn: np.ndarray,
    particles_per_component: int,
    inverse_temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> LogWeights:
    """K particles from each of the family's components `drawn` `[S]`, scored under all of
    its components, as a LogWeights record `[S, K(, A)]`."""
    n_drawn, k = len(drawn), particles_per_component
    particles, log_q_topology, log_q_branches = family.sample_and_score(
        np.repeat(drawn, k), generator
    )
    return LogWeights(
        drawn=np.asarray(drawn),
        log_likelihood=target.log_likelihood(particles).view(n_drawn, k),
        log_prior=target.log_prior(particles).view(n_drawn, k),
        log_q_topology=log_q_topology.view(n_drawn, k, -1),
        log_q_branches=log_q_branches.view(n_drawn, k, -1),
        inverse_temperature=inverse_temperature,
    )
