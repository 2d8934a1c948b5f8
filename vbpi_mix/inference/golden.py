"""KL(golden || q) over topologies, against MrBayes golden-run probabilities (METHOD.md 6).

A topology outside the SBN's support has probability 0 under q, so the plain KL is infinite
as soon as the golden run puts any mass there (DS1: 0.4%, DS4: 4.8% of the golden mass lies
outside the UFBoot support). Two finite quantities are reported, each named for what it is:

- the published convention: q floored at FLOOR = float64's machine epsilon (2.2e-16), as
  the reference SBN/VBPI code computes it,
      KL_floor = sum_g p_g (log(p_g + FLOOR) - log max(q_g, FLOOR));
- the KL over the golden topologies q can reach, the golden probabilities renormalised to
  them, with the golden mass q cannot reach beside it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from vbpi_mix.trees.topology import Topology
from vbpi_mix.variational.sbn import SBN

FLOOR = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class GoldenKL:
    """KL with q floored at FLOOR (the published convention), KL over the golden
    topologies q can reach (golden renormalised to them), and the golden mass outside."""

    kl_floored: float
    kl_reachable: float
    unreachable_mass: float


def kl_from_golden(
    sbn: SBN, golden: dict[Topology, float], stop: threading.Event | None = None
) -> GoldenKL:
    """KL(p_g || q) with q(tau) = (1/A) sum_a q_a(tau), both conventions."""
    topologies = list(golden)
    p = np.array([golden[t] for t in topologies])
    log_q = sbn.mixture_log_prob(np.stack([t.parents for t in topologies]), stop=stop)
    kl_floored = float(np.sum(p * (np.log(p + FLOOR) - np.maximum(log_q, np.log(FLOOR)))))
    reachable = np.isfinite(log_q)
    p_reachable = p[reachable] / p[reachable].sum()
    kl_reachable = float(np.sum(p_reachable * (np.log(p_reachable) - log_q[reachable])))
    return GoldenKL(kl_floored, kl_reachable, float(p[~reachable].sum()))
