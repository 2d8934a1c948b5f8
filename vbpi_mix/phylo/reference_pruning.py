"""One-tree-at-a-time recursive pruning with plain autograd: the research code's way.

Deliberately simple and independent of the batched kernel (transition matrices from
`torch.linalg.matrix_exp(Q t r_c)`, a recursion over nodes, autograd for gradients), so that
tests can cross-check the kernel against it and benchmarks can show what batching buys.
"""

from __future__ import annotations

import numpy as np
import torch

from vbpi_mix.phylo.alignment import Alignment
from vbpi_mix.phylo.models import SubstitutionModel


def reference_log_likelihood(
    alignment: Alignment,
    model: SubstitutionModel,
    parents: np.ndarray,
    branch_lengths: torch.Tensor,
) -> torch.Tensor:
    """log p(y | tau, b) of one tree (`parents [2N-3]`, `branch_lengths [2N-3]`), recursively."""
    n = alignment.n_taxa
    children: dict[int, list[int]] = {}
    for child, parent in enumerate(np.asarray(parents).tolist()):
        children.setdefault(parent, []).append(child)
    tips = alignment.tip_partials()  # [N, 4, P]
    rates = model.category_rates
    q = model.rate_matrix()

    def partial(node: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rescaled conditional likelihood `[C, 4, P]` of the subtree and its log scale `[P]`."""
        if node < n:
            return tips[node].expand(len(rates), -1, -1), torch.zeros(tips.shape[-1])
        result, log_scale = None, 0.0
        for child in children[node]:
            child_partial, child_scale = partial(child)
            matrices = torch.linalg.matrix_exp(q * branch_lengths[child] * rates[:, None, None])
            message = matrices @ child_partial
            result = message if result is None else result * message
            log_scale = log_scale + child_scale
        scale = result.amax(dim=(0, 1))
        return result / scale, log_scale + scale.log()

    root_partial, log_scale = partial(2 * n - 3)
    site = torch.einsum("c,i,cip->p", model.category_weights, model.frequencies, root_partial)
    return (site.log() + log_scale) @ alignment.pattern_weights()
