"""Plain torch versions of what the package computes in compiled passes: the tests check the
compiled paths against them (and them against closed forms and torch.distributions)."""

from __future__ import annotations

import numpy as np
import torch

from vbpi_mix.variational.branch_lengths import BranchLengthModel, EdgeFeatures
from vbpi_mix.variational.parameter_tables import component_rows
from vbpi_mix.variational.sbn import SBN


def family_log_softmax(logits: torch.Tensor, family: torch.Tensor, n_families: int) -> torch.Tensor:
    """`[A, X]` logits normalised within each family: logit - log sum over the logits of the
    same family (`family [X]`, values below `n_families`), per row.

    Shifted by each family's own maximum, so a family far below the rest of its row does not
    underflow. gather / scatter_add with the expanded family index, faster forward and
    backward than index_select / index_add along X or advanced indexing.
    """
    family = family.expand_as(logits)
    with torch.no_grad():  # any per-family shift c gives the same value and gradient
        shift = torch.full(
            (logits.shape[0], n_families), -torch.inf, dtype=logits.dtype
        ).scatter_reduce(1, family, logits, "amax")
    shifted = logits - shift.gather(1, family)
    sums = torch.zeros_like(shift).scatter_add(1, family, shifted.exp())
    return shifted - sums.log().gather(1, family)


def entry_log_probs(sbn: SBN, components: np.ndarray | None = None) -> torch.Tensor:
    """log q(child | parent) `[A, M]` of every entry (or of the given components' rows):
    each logit against its parent's entries only."""
    logits = component_rows(sbn.entry_logits, components)
    return family_log_softmax(logits, sbn.entry_parent, sbn.n_parents)


def branch_log_prob(
    model: BranchLengthModel,
    edges: EdgeFeatures,
    branch_lengths: torch.Tensor,
    components: np.ndarray | None = None,
) -> torch.Tensor:
    """log q_a(b | tau) `[A, B]` for branch lengths `[B, E]` (rows: every component or the
    given ones), Jacobian of exp included."""
    mean, log_std = model.mean_and_log_std(edges, components)
    log_b = branch_lengths.log()
    standard = (log_b - mean) / log_std.exp()
    per_edge = -0.5 * standard**2 - log_std - 0.5 * np.log(2 * np.pi) - log_b
    return per_edge.sum(dim=-1)
