"""KL(golden || q) over topologies, against MrBayes golden-run probabilities (METHOD.md 6)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vbpi_mix.trees.topology import Topology
from vbpi_mix.variational.sbn import SBN


@dataclass(frozen=True)
class GoldenKL:
    """KL over the golden topologies that q can reach (golden renormalised to them), the
    golden mass q cannot reach (probability 0 under q), and the plain KL (inf if any)."""

    kl_covered: float
    missing_mass: float
    kl: float


def kl_from_golden(sbn: SBN, golden: dict[Topology, float]) -> GoldenKL:
    """KL(p_g || q) with q(tau) = (1/A) sum_a q_a(tau), computed in batches."""
    topologies = list(golden)
    p = np.array([golden[t] for t in topologies])
    log_q = sbn.mixture_log_prob(np.stack([t.parents for t in topologies]))
    covered = np.isfinite(log_q)
    missing = float(p[~covered].sum())
    p_covered = p[covered] / p[covered].sum()
    kl_covered = float(np.sum(p_covered * (np.log(p_covered) - log_q[covered])))
    kl = float(np.sum(p * (np.log(p) - log_q))) if missing == 0 else float("inf")
    return GoldenKL(kl_covered, missing, kl)
