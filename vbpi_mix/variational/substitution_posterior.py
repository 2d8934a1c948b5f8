"""Variational posterior q(theta) of the substitution model's inferred parameters, reparameterised.

Each inferred parameter is a fixed transform of coordinates z of one Gaussian (full
covariance, `SubstitutionPosterior`):

    kappa, alpha                  log-normal:       x = exp(z),          log |dx/dz| = log x
    exchangeabilities (6, sum 1)  logistic-normal:  x = softmax([z, 0]), log |dx/dz| = sum log x_i
    frequencies (4, sum 1)        logistic-normal   (z has one coordinate fewer than x)

so log q(x) = log N(z; mu, Sigma) - log |dx/dz|, a density on the simplex with respect to the
Lebesgue measure of all coordinates but the last (as the Dirichlet priors are written,
vbpi_mix.phylo.priors.log_substitution_prior). Draws are differentiable in mu and Sigma's
Cholesky factor (pathwise gradients, as the branch lengths').

One q(theta) is shared by every component of a mixture: q(tau, b, theta) = q(theta) (1/A)
sum_a q_a(tau, b), so theta's density factors out of every mixture denominator and A2A, S2A
and S2S stay as they are, with log q(theta) added to each particle's log q. Shared because
the parameters' posterior is close to unimodal and barely changes between the topology modes
that components may take; one q is then trained by every component's particles, at no cost
per component.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# coordinates of z for each parameter
_DIMENSIONS = {"kappa": 1, "alpha": 1, "rates": 5, "frequencies": 3}
INITIAL_SCALE = 0.05  # sigma of every coordinate at the start: early draws stay near the start


def _unconstrained(name: str, value: torch.Tensor) -> torch.Tensor:
    """z `[..., d]` of values `[...]` (kappa, alpha) or `[..., K]`: log x, or the log ratios
    log x_i - log x_K of a simplex point (the values rescaled to sum 1 first)."""
    value = torch.as_tensor(value, dtype=torch.float64)
    if _DIMENSIONS[name] == 1:
        return value.log()[..., None]
    simplex = value / value.sum(dim=-1, keepdim=True)
    return simplex[..., :-1].log() - simplex[..., -1:].log()


def _constrained(name: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, log |dx/dz|) for z `[n, d]`: x `[n]` for kappa and alpha, `[n, d + 1]` on the
    simplex otherwise."""
    if _DIMENSIONS[name] == 1:
        return z[:, 0].exp(), z[:, 0]
    log_x = torch.log_softmax(torch.cat([z, z.new_zeros(len(z), 1)], dim=1), dim=1)
    return log_x.exp(), log_x.sum(dim=1)


def _slices(names: tuple[str, ...] | list[str]) -> dict[str, slice]:
    """Where each parameter's coordinates lie in the concatenation of `names`' coordinates."""
    bounds = [0]
    for name in names:
        bounds.append(bounds[-1] + _DIMENSIONS[name])
    return {name: slice(bounds[i], bounds[i + 1]) for i, name in enumerate(names)}


class SubstitutionPosterior(nn.Module):
    """q(theta) over the named parameters, starting at `start` (their values in the model:
    kappa and alpha numbers, rates and frequencies vectors, rescaled onto the simplex).

    z, the concatenation of every parameter's coordinates (D of them, at most 9 for GTR+G),
    is one Gaussian with a full covariance: z = mu + L eps, L lower triangular with a
    positive diagonal (its log is the parameter). Full, not diagonal, because the
    coordinates are correlated in the posterior (the exchangeabilities with each other and
    with alpha), and because a diagonal Gaussian over log ratios to the last coordinate
    leaves that coordinate's marginal too narrow; D is small, so L costs nothing."""

    def __init__(self, start: dict[str, torch.Tensor], scale: float = INITIAL_SCALE) -> None:
        super().__init__()
        unknown = set(start) - set(_DIMENSIONS)
        if unknown:
            raise ValueError(f"no variational family for {sorted(unknown)}")
        self.names = tuple(start)
        self.slices = _slices(self.names)
        size = sum(_DIMENSIONS[name] for name in self.names)
        self.loc = nn.Parameter(torch.cat([_unconstrained(n, start[n]) for n in self.names]))
        self.log_diagonal = nn.Parameter(torch.full((size,), math.log(scale), dtype=torch.float64))
        self.below_diagonal = nn.Parameter(torch.zeros(size * (size - 1) // 2, dtype=torch.float64))
        self._rows, self._cols = torch.tril_indices(size, size, offset=-1)

    def scale_tril(self) -> torch.Tensor:
        """L `[D, D]`: exp(log_diagonal) on the diagonal, below_diagonal under it."""
        below = self.loc.new_zeros(len(self.loc), len(self.loc))
        below[self._rows, self._cols] = self.below_diagonal
        return below + torch.diag(self.log_diagonal.exp())

    def rsample_and_log_prob(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """n draws, each parameter's `[n]` or `[n, K]`, and log q(theta) `[n]`; differentiable
        in the variational parameters."""
        noise = torch.randn(n, len(self.loc), generator=generator, dtype=torch.float64)
        z = self.loc + noise @ self.scale_tril().T
        log_normal = (-0.5 * noise.square() - 0.5 * math.log(2 * math.pi)).sum(dim=1)
        log_q = log_normal - self.log_diagonal.sum()
        values = {}
        for name in self.names:
            values[name], log_jacobian = _constrained(name, z[:, self.slices[name]])
            log_q = log_q - log_jacobian
        return values, log_q

    def log_prob(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q of given values `[n]` of some of the parameters: the Gaussian marginal of
        their coordinates of z, less their Jacobians."""
        names = [name for name in self.names if name in values]
        columns = torch.cat([torch.arange(len(self.loc))[self.slices[name]] for name in names])
        z = torch.cat([_unconstrained(name, values[name]) for name in names], dim=-1)
        tril = self.scale_tril()
        covariance = (tril @ tril.T)[columns][:, columns]
        gaussian = torch.distributions.MultivariateNormal(self.loc[columns], covariance)
        log_q = gaussian.log_prob(z)
        for name, where in _slices(names).items():
            log_q = log_q - _constrained(name, z[:, where])[1]
        return log_q

    @torch.no_grad()
    def summary(self, draws: int = 10_000, seed: int = 0) -> dict[str, dict[str, list[float]]]:
        """Per parameter its posterior mean and 95% interval (2.5% and 97.5% quantiles) from
        `draws` draws: {"mean": [..], "lower": [..], "upper": [..]}, one entry per coordinate
        (one for kappa and alpha, six exchangeabilities summing to 1, four frequencies)."""
        values, _ = self.rsample_and_log_prob(draws, torch.Generator().manual_seed(seed))
        result = {}
        for name, value in values.items():
            columns = value.reshape(draws, -1)
            levels = torch.tensor([0.025, 0.975], dtype=torch.float64)
            lower, upper = torch.quantile(columns, levels, dim=0)
            result[name] = {
                "mean": columns.mean(dim=0).tolist(), "lower": lower.tolist(),
                "upper": upper.tolist(),
            }  # fmt: skip
        return result
