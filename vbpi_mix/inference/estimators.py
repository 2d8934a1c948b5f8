"""Multiple-importance-sampling estimators for mixtures: A2A, S2A, S2S (Hotti et al. 2024),
with VIMCO (Mnih & Rezende 2016) or RWS gradients for the topology part.

Each estimator names the family its particles are weighed against (the mixture, or for S2S
the sub-mixture of the drawn components) and which of its components draw; a shared step
draws K particles from each and returns a `LogWeights` record; each estimator is a few lines
on that record. Weights against the family's density r:
log w = beta log p(y | tau, b) + log p(tau) + log p(b) - log r(tau, b).

    A2A: all A components draw, r = (1/A) sum_a q_a          L = (1/A) sum_a log mean_k w_ak
    S2A: a uniform subset I of S draws, r = (1/A) sum_a q_a  L = (1/S) sum_{s in I} log mean_k w_sk
    S2S: as S2A, r = (1/S) sum_{j in I} q_j                  (a looser bound, cost free of A)

The value reported is the bound itself; `surrogate` is what to differentiate: pathwise for the
branch lengths and the denominators, plus VIMCO's leave-one-out score term (or RWS's
self-normalised wake term) for the topology parameters of the component that drew each
particle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from vbpi_mix.choices import EstimatorName, GradientName
from vbpi_mix.errors import VbpiMixError
from vbpi_mix.variational.mixture import Mixture, SubMixture


@dataclass(frozen=True)
class LogWeights:
    """Terms of the log weights of K particles from each of S drawn components.

    drawn `[S]`: the family's components that drew; log_likelihood, log_prior `[S, K]`;
    log_q_topology, log_q_branches `[S, K, A]`: every particle under every component of the
    family (topology and branch-length parts; their sum is log q_a(tau, b));
    log_q_parameters `[S, K]`: log q(theta) of inferred substitution parameters, shared by
    every component (zero when none are inferred); inverse_temperature: beta, the
    likelihood's weight (annealing; 1 for every reported bound)."""

    drawn: np.ndarray
    log_likelihood: torch.Tensor
    log_prior: torch.Tensor
    log_q_topology: torch.Tensor
    log_q_branches: torch.Tensor
    log_q_parameters: torch.Tensor | float = 0.0
    inverse_temperature: float = 1.0

    @property
    def log_target(self) -> torch.Tensor:
        return self.inverse_temperature * self.log_likelihood + self.log_prior

    @property
    def log_q(self) -> torch.Tensor:
        """log q_a(tau, b, theta) `[S, K, A]`."""
        shared = self.log_q_parameters
        shared = shared[..., None] if isinstance(shared, torch.Tensor) else shared
        return self.log_q_topology + self.log_q_branches + shared

    def untempered(self) -> LogWeights:
        """The same particles weighed with beta = 1."""
        return replace(self, inverse_temperature=1.0)

    def own_topology_score(self) -> torch.Tensor:
        """log q_a(tau) `[S, K]` under the component that drew each particle."""
        drawn = torch.as_tensor(self.drawn)
        return self.log_q_topology[torch.arange(drawn.numel()), :, drawn]


@dataclass(frozen=True)
class Estimate:
    """The bound (a number to report) and the surrogate (a scalar to differentiate)."""

    bound: torch.Tensor
    surrogate: torch.Tensor


class MixtureEstimator:
    """Base: which components draw, and against which mixture they are weighed. The
    constructors refuse, with the fix, the settings that are not what they say."""

    takes_subset = True  # whether --subset S applies

    def __init__(self, n_components: int, subset: int | None = None) -> None:
        self.n_components = n_components
        self.subset = n_components if subset is None else subset
        if not 1 <= self.subset <= n_components:
            raise VbpiMixError(
                f"--subset must be between 1 and --components ({n_components}); got {self.subset}"
            )

    def draw(self, generator: torch.Generator | None = None) -> np.ndarray:
        """The components that draw particles this iteration `[S]`."""
        return np.arange(self.n_components)

    def family(
        self, mixture: Mixture, drawn: np.ndarray
    ) -> tuple[Mixture | SubMixture, np.ndarray]:
        """The family the drawn components' particles are weighed against, and the drawn
        components in its terms: the whole mixture by default."""
        return mixture, drawn

    def log_denominator(self, record: LogWeights) -> torch.Tensor:
        """log r(tau, b) `[S, K]`: the density of the uniform mixture of the record's family."""
        return torch.logsumexp(record.log_q, dim=-1) - math.log(record.log_q.shape[-1])

    def log_weights(self, record: LogWeights) -> torch.Tensor:
        return record.log_target - self.log_denominator(record)


class A2A(MixtureEstimator):
    """All to all: every component draws, every density in every denominator (MISELBO)."""

    takes_subset = False

    def __init__(self, n_components: int, subset: int | None = None) -> None:
        if subset not in (None, n_components):
            raise VbpiMixError("A2A uses every component; drop --subset or choose s2a/s2s")
        super().__init__(n_components, None)


class S2A(MixtureEstimator):
    """Some to all: S components drawn uniformly without replacement; full-mixture weights.
    Unbiased for the A2A objective (Hotti et al. 2024, Theorem 4.1). S < A: with S = A every
    component draws, which is A2A."""

    def __init__(self, n_components: int, subset: int | None = None) -> None:
        if subset is None:
            raise VbpiMixError(
                f"{type(self).__name__} needs --subset S, the components drawn per iteration, "
                f"below --components ({n_components})"
            )
        super().__init__(n_components, subset)
        if self.subset == n_components:
            raise VbpiMixError(
                f"{type(self).__name__} with --subset equal to --components draws every "
                "component: that is A2A; use --estimator a2a or a smaller --subset"
            )

    def draw(self, generator: torch.Generator | None = None) -> np.ndarray:
        order = torch.randperm(self.n_components, generator=generator)[: self.subset]
        return np.sort(order.numpy())


class S2S(S2A):
    """Some to some: as S2A, weighed against the mixture of the S drawn components only."""

    def family(
        self, mixture: Mixture, drawn: np.ndarray
    ) -> tuple[Mixture | SubMixture, np.ndarray]:
        return mixture.select(drawn), np.arange(len(drawn))


ESTIMATORS: dict[str, type[MixtureEstimator]] = {"a2a": A2A, "s2a": S2A, "s2s": S2S}


def make_estimator(name: EstimatorName, n_components: int, subset: int | None) -> MixtureEstimator:
    """An estimator by name (ESTIMATORS, which the command line and the bench grid offer)."""
    if name not in ESTIMATORS:
        raise VbpiMixError(f"unknown estimator {name!r}; choose {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name](n_components, subset)


def k_sample_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k w_k per drawn component `[S]` from log weights `[S, K]`."""
    return torch.logsumexp(log_weights, dim=-1) - math.log(log_weights.shape[-1])


def vimco_baselines(log_weights: torch.Tensor) -> torch.Tensor:
    """L_hat(-k) `[S, K]`: the K-sample bound with log w_k replaced by the mean of the others
    (K >= 2)."""
    n = log_weights.shape[-1]
    others_mean = (log_weights.sum(-1, keepdim=True) - log_weights) / (n - 1)
    replaced = log_weights.unsqueeze(-2).expand(*log_weights.shape, n).clone()  # [S, K, K]
    index = torch.arange(n)
    replaced[..., index, index] = others_mean
    return torch.logsumexp(replaced, dim=-1) - math.log(n)


class GradientEstimator:
    """The topology-gradient axis: a surrogate whose gradient estimates that of the bound."""

    def __init__(self, particles: int | None = None) -> None:
        """`particles`, K, when known: checked against what the estimator needs."""

    def surrogate(
        self, estimator: MixtureEstimator, record: LogWeights, log_weights: torch.Tensor
    ) -> torch.Tensor:
        """Per drawn component `[S]`, from the record and its log weights `[S, K]`."""
        raise NotImplementedError


class VIMCO(GradientEstimator):
    """Mnih & Rezende (2016): the K-sample bound, pathwise, plus the score of each particle's
    topology times its leave-one-out learning signal L_hat - L_hat(-k) (METHOD.md 4)."""

    def __init__(self, particles: int | None = None) -> None:
        if particles is not None and particles < 2:
            raise VbpiMixError(
                f"VIMCO needs at least 2 particles; got --particles {particles} "
                "(use --particles 10, or --objective rws)"
            )

    def surrogate(
        self, estimator: MixtureEstimator, record: LogWeights, log_weights: torch.Tensor
    ) -> torch.Tensor:
        bound = k_sample_bound(log_weights)
        learning_signal = (bound[:, None] - vimco_baselines(log_weights)).detach()
        return bound + (learning_signal * record.own_topology_score()).sum(-1)


class RWS(GradientEstimator):
    """Reweighted wake-sleep (wake phase) for the topology parameters: the self-normalised
    weights times each particle's topology score; the branch lengths pathwise through a
    bound whose denominators hold the topology densities fixed."""

    def surrogate(
        self, estimator: MixtureEstimator, record: LogWeights, log_weights: torch.Tensor
    ) -> torch.Tensor:
        fixed = replace(record, log_q_topology=record.log_q_topology.detach())
        normalised = torch.softmax(log_weights.detach(), dim=-1)
        pathwise = k_sample_bound(estimator.log_weights(fixed))
        return pathwise + (normalised * record.own_topology_score()).sum(-1)


GRADIENTS: dict[str, type[GradientEstimator]] = {"vimco": VIMCO, "rws": RWS}


def make_gradient(name: GradientName, particles: int | None = None) -> GradientEstimator:
    """A gradient estimator by name (GRADIENTS, which the command line offers)."""
    if name not in GRADIENTS:
        raise VbpiMixError(f"unknown objective {name!r}; choose {', '.join(GRADIENTS)}")
    return GRADIENTS[name](particles)


def component_terms(
    estimator: MixtureEstimator, record: LogWeights, gradient: GradientEstimator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per drawn component `[S]`: its K-sample bound and its surrogate (METHOD.md 4-5);
    VIMCO unless another gradient estimator is given."""
    log_weights = estimator.log_weights(record)  # [S, K], differentiable
    surrogate = (gradient or VIMCO()).surrogate(estimator, record, log_weights)
    return k_sample_bound(log_weights), surrogate


def estimate(
    estimator: MixtureEstimator, record: LogWeights, gradient: GradientEstimator | None = None
) -> Estimate:
    """The estimator's bound (mean over drawn components) and the surrogate to maximise."""
    per_component, surrogate = component_terms(estimator, record, gradient)
    return Estimate(per_component.mean().detach(), surrogate.mean())
