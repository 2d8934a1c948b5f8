"""Evaluation of a fitted mixture (METHOD.md 6): the marginal likelihood by importance
sampling, the ELBO, and the effective sample size and Pareto k-hat of the importance weights."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import trange

from vbpi_mix.errors import stop_if_asked
from vbpi_mix.inference.objective import Target, draw_parameters
from vbpi_mix.inference.psis import pareto_k_hat
from vbpi_mix.variational.mixture import Mixture
from vbpi_mix.variational.substitution_posterior import SubstitutionPosterior


@dataclass(frozen=True)
class MarginalLikelihood:
    """MLL estimates log (1/M) sum_m w_m over `repeats` independent sets of M particles, their
    mean and standard deviation, the ELBO (mean log w), and, averaged over the sets, the
    effective sample size (sum w)^2 / sum w^2 and the PSIS Pareto k-hat of one set."""

    estimates: tuple[float, ...]
    mean: float
    std: float
    elbo: float
    effective_sample_size: float
    pareto_k: float


@dataclass(frozen=True)
class ParticleScores:
    """Particles drawn from a mixture and scored: the component that drew each `[M]`, log p(y,
    tau, b, theta) `[M]`, every component's log q_a(tau, b) `[M, A]`, and log q(theta) `[M]`
    (zeros when the substitution parameters are fixed)."""

    components: np.ndarray
    log_joint: torch.Tensor
    log_q_components: torch.Tensor
    log_q_theta: torch.Tensor

    def log_weights(self) -> torch.Tensor:
        """log w = log p(y, tau, b, theta) - log q(theta) - log (1/A) sum_a q_a(tau, b) `[M]`."""
        n_components = self.log_q_components.shape[-1]
        log_mixture = torch.logsumexp(self.log_q_components, -1) - math.log(n_components)
        return self.log_joint - log_mixture - self.log_q_theta

    def own_log_weights(self) -> torch.Tensor:
        """log p(y, tau, b, theta) - log q(theta) - log q_a(tau, b) under the component a that
        drew each particle `[M]`: its mean over a stratified draw is the components' mean
        ELBO, which falls short of the mixture's ELBO by the components' Jensen-Shannon
        divergence, (1/A) sum_a KL(q_a || q), at most log A."""
        rows = torch.arange(len(self.components))
        own = self.log_q_components[rows, torch.as_tensor(self.components)]
        return self.log_joint - own - self.log_q_theta


@torch.no_grad()
def score_particles(
    mixture: Mixture,
    target: Target,
    n_particles: int,
    generator: torch.Generator | None = None,
    chunk: int = 250,
    stop: threading.Event | None = None,
    parameters: SubstitutionPosterior | None = None,
) -> ParticleScores:
    """`n_particles` particles from the mixture, stratified (M/A per component) when A divides
    M, else a uniform component per particle, each with its own substitution parameters drawn
    from `parameters` (their q) when they are inferred. Setting `stop` ends it after the chunk
    under way (vbpi_mix.errors.Stopped)."""
    n_components = mixture.n_components
    if n_particles % n_components == 0:
        components = np.repeat(np.arange(n_components), n_particles // n_components)
    else:
        draws = torch.randint(n_components, (n_particles,), generator=generator)
        components = draws.numpy()
    log_joint, log_q_components, log_q_theta = [], [], []
    for start in range(0, n_particles, chunk):
        particles, log_q_topology, log_q_branches = mixture.sample_and_score(
            components[start : start + chunk], generator=generator
        )
        theta, log_q = draw_parameters(parameters, len(particles.components), generator)
        log_joint.append(
            target.log_likelihood(particles, theta) + target.log_prior(particles, theta)
        )
        log_q_components.append(log_q_topology + log_q_branches)
        log_q_theta.append(log_q)
        stop_if_asked(stop)
    return ParticleScores(
        components, torch.cat(log_joint), torch.cat(log_q_components), torch.cat(log_q_theta)
    )


def marginal_likelihood(
    mixture: Mixture,
    target: Target,
    n_particles: int = 1000,
    repeats: int = 10,
    generator: torch.Generator | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
    parameters: SubstitutionPosterior | None = None,
) -> MarginalLikelihood:
    """Importance-sampling estimates of log p(y), repeated; `stop` and `parameters` as
    score_particles."""
    estimates, elbos, sizes, shapes = [], [], [], []
    for _ in trange(repeats, desc="marginal likelihood", disable=not progress or None):
        log_w = score_particles(
            mixture, target, n_particles, generator, stop=stop, parameters=parameters
        ).log_weights()
        estimates.append(float(torch.logsumexp(log_w, 0) - math.log(n_particles)))
        elbos.append(float(log_w.mean()))
        sizes.append(
            float(torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)))
        )
        shapes.append(pareto_k_hat(log_w.numpy()))
    values = np.array(estimates)
    return MarginalLikelihood(
        estimates=tuple(estimates),
        mean=float(values.mean()),
        std=float(values.std(ddof=1)) if repeats > 1 else 0.0,
        elbo=float(np.mean(elbos)),
        effective_sample_size=float(np.mean(sizes)),
        pareto_k=float(np.mean(shapes)),
    )
