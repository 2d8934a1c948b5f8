"""The shared step of every estimator: draw particles from the chosen components and score
them under the target and under every component (METHOD.md sections 1 and 5). With
inferred substitution parameters, each particle also draws its own theta from the shared
q(theta) (vbpi_mix.variational.substitution_posterior): the likelihood is computed under it,
log p(theta) joins the prior and log q(theta) every component's density."""

from __future__ import annotations

import numpy as np
import torch

from vbpi_mix.inference.estimators import LogWeights
from vbpi_mix.phylo.likelihood import TreeLikelihood
from vbpi_mix.phylo.priors import log_branch_prior, log_substitution_prior, log_topology_prior
from vbpi_mix.variational.mixture import Mixture, Particles, SubMixture
from vbpi_mix.variational.substitution_posterior import SubstitutionPosterior

Values = dict[str, torch.Tensor]  # substitution parameters, one value per particle


class Target:
    """log p(y, tau, b, theta) = log p(y | tau, b, theta) + log p(tau) + log p(b) + log p(theta),
    batched over particles; theta: the inferred substitution parameters' values per particle,
    or none (every parameter fixed in the likelihood's model)."""

    def __init__(self, likelihood: TreeLikelihood, branch_rate: float = 10.0) -> None:
        self.likelihood = likelihood
        self.branch_rate = branch_rate
        self.log_topology_prior = log_topology_prior(likelihood.alignment.n_taxa)

    def log_likelihood(self, particles: Particles, values: Values | None = None) -> torch.Tensor:
        return self.likelihood(particles.parents, particles.branch_lengths, values)

    def log_prior(self, particles: Particles, values: Values | None = None) -> torch.Tensor:
        prior = self.log_topology_prior + log_branch_prior(
            particles.branch_lengths, self.branch_rate
        )
        return prior + log_substitution_prior(values) if values else prior


def draw_log_weights(
    family: Mixture | SubMixture,
    target: Target,
    drawn: np.ndarray,
    particles_per_component: int,
    inverse_temperature: float = 1.0,
    generator: torch.Generator | None = None,
    parameters: SubstitutionPosterior | None = None,
) -> LogWeights:
    """K particles from each of the family's components `drawn` `[S]`, scored under all of
    its components, as a LogWeights record `[S, K(, A)]`; with `parameters`, each particle
    with its own substitution parameters drawn from it."""
    n_drawn, k = len(drawn), particles_per_component
    particles, log_q_topology, log_q_branches = family.sample_and_score(
        np.repeat(drawn, k), generator
    )
    values, log_q_parameters = draw_parameters(parameters, n_drawn * k, generator)
    return LogWeights(
        drawn=np.asarray(drawn),
        log_likelihood=target.log_likelihood(particles, values).view(n_drawn, k),
        log_prior=target.log_prior(particles, values).view(n_drawn, k),
        log_q_topology=log_q_topology.view(n_drawn, k, -1),
        log_q_branches=log_q_branches.view(n_drawn, k, -1),
        log_q_parameters=log_q_parameters.view(n_drawn, k),
        inverse_temperature=inverse_temperature,
    )


def draw_parameters(
    parameters: SubstitutionPosterior | None, n: int, generator: torch.Generator | None
) -> tuple[Values | None, torch.Tensor]:
    """n draws of theta and log q(theta) `[n]`; none and zeros when nothing is inferred."""
    if parameters is None:
        return None, torch.zeros(n, dtype=torch.float64)
    return parameters.rsample_and_log_prob(n, generator)
