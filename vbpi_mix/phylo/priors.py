"""Priors of the benchmark model: uniform over unrooted topologies, iid exponential branches.

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
