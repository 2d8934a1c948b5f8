"""Priors: uniform over unrooted topologies, iid exponential branches (the benchmark model),
and MrBayes' defaults for inferred substitution parameters (`log_substitution_prior`).

log p(tau) = -log (2N-5)!!,     log p(b) = sum_e [log lambda - lambda b_e]   (lambda = 10)
"""

from __future__ import annotations

import math

import torch

DEFAULT_BRANCH_RATE = 10.0


def log_topology_prior(n_taxa: int) -> float:
    """-log of the number (2N-5)!! of unrooted binary topologies on N taxa."""
    return -sum(math.log(k) for k in range(3, 2 * n_taxa - 4, 2))


def log_branch_prior(
    branch_lengths: torch.Tensor, rate: float = DEFAULT_BRANCH_RATE
) -> torch.Tensor:
    """sum over the last dimension of log Exponential(b; rate)."""
    return (math.log(rate) - rate * branch_lengths).sum(dim=-1)


def log_substitution_prior(values: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p of inferred substitution parameters, one value per particle `[n]`, under MrBayes
    3.2's default priors:

        exchangeabilities (on the simplex, sum 1)  Dirichlet(1, ..., 1):  log 5!
        frequencies                                Dirichlet(1, 1, 1, 1): log 3!
        kappa (kappa / (1 + kappa) ~ Beta(1, 1))   p(kappa) = 1 / (1 + kappa)^2
        Gamma shape alpha                          Exponential(1):        -alpha

    Simplex densities are with respect to the Lebesgue measure of all coordinates but the
    last, as the variational densities are (vbpi_mix.variational.substitution_posterior)."""
    n = next(iter(values.values())).shape[0]
    total = torch.zeros(n, dtype=torch.float64)
    for name, value in values.items():
        if name in ("rates", "frequencies"):
            total = total + math.lgamma(value.shape[-1])
        elif name == "kappa":
            total = total - 2 * torch.log1p(value)
        elif name == "alpha":
            total = total - value
        else:
            raise ValueError(f"no prior for substitution parameter {name!r}")
    return total
