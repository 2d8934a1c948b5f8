"""Compiled (numba) log-probability of every rooting of a batch of trees under stacked SBN
components, as a differentiable function of the components' normalised log-probabilities:

    l[a, b, r] = log q_a(root split of rooting r of tree b)
                 + sum_v log q_a(conditional entry of node v in rooting r),

read through the ids of vbpi_mix.trees.subsplits.TopologyTables (-inf where an id is -1,
outside the support). The backward pass adds each rooting's upstream gradient to the root
split and the N-2 entries it read. Gathering the `[A, B, E, N-2]` terms with torch and
reducing them cost a quarter of an A2A iteration at A = 10 (index_select, its index_add and
the sum); one compiled loop per tree reads each term once, without that tensor.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange
from torch.autograd.function import once_differentiable

from vbpi_mix.trees.subsplits import TopologyTables


@numba.njit(cache=True, nogil=True, parallel=True)
def _rooting_log_probs(root_by_id, entries_by_id, root_ids, entry_ids, out):
    """out[b, r, a] = root_by_id[root_ids[b, r], a] + sum_v entries_by_id[entry_ids[b, r, v], a]
    (-inf where an id is -1); the tables are `[R, A]` and `[M, A]`, components last."""
    n_trees, n_rootings, n_inner = entry_ids.shape
    n_components = root_by_id.shape[1]
    for b in prange(n_trees):
        for r in range(n_rootings):
            total = out[b, r]
            root = root_ids[b, r]
            for a in range(n_components):
                total[a] = root_by_id[root, a] if root >= 0 else -np.inf
            for v in range(n_inner):
                entry = entry_ids[b, r, v]
                for a in range(n_components):
                    total[a] += entries_by_id[entry, a] if entry >= 0 else -np.inf


@numba.njit(cache=True, nogil=True)
def _scatter_rooting_gradients(grad, root_ids, entry_ids, grad_root_by_id, grad_entries_by_id):
    """The transpose of _rooting_log_probs: every rooting's gradient `grad [B, E, A]` added to
    the root split and the entries it read (ids -1 read no parameter)."""
    n_trees, n_rootings, n_inner = entry_ids.shape
    n_components = grad.shape[2]
    for b in range(n_trees):
        for r in range(n_rootings):
            upstream = grad[b, r]
            root = root_ids[b, r]
            if root >= 0:
                for a in range(n_components):
                    grad_root_by_id[root, a] += upstream[a]
            for v in range(n_inner):
                entry = entry_ids[b, r, v]
                if entry >= 0:
                    for a in range(n_components):
                        grad_entries_by_id[entry, a] += upstream[a]


class _RootingLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, root_log_probs: torch.Tensor, entry_log_probs: torch.Tensor, tables: TopologyTables
    ) -> torch.Tensor:
        root_ids = np.ascontiguousarray(tables.root_ids, dtype=np.int64)
        entry_ids = np.ascontiguousarray(tables.entry_ids, dtype=np.int64)
        out = np.empty((*root_ids.shape, root_log_probs.shape[0]))
        _rooting_log_probs(
            np.ascontiguousarray(root_log_probs.detach().T.numpy()),
            np.ascontiguousarray(entry_log_probs.detach().T.numpy()),
            root_ids, entry_ids, out,
        )  # fmt: skip
        ctx.ids = (root_ids, entry_ids)
        ctx.sizes = (root_log_probs.shape[1], entry_log_probs.shape[1])
        return torch.from_numpy(out).permute(2, 0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        n_components = grad.shape[0]
        grad_root = np.zeros((ctx.sizes[0], n_components))
        grad_entries = np.zeros((ctx.sizes[1], n_components))
        upstream = np.ascontiguousarray(grad.permute(1, 2, 0).numpy(), dtype=np.float64)
        _scatter_rooting_gradients(upstream, *ctx.ids, grad_root, grad_entries)
        return torch.from_numpy(grad_root.T), torch.from_numpy(grad_entries.T), None


def rooting_log_probs(
    root_log_probs: torch.Tensor, entry_log_probs: torch.Tensor, tables: TopologyTables
) -> torch.Tensor:
    """l `[A, B, E]` (module docstring) from log q_root `[A, R]`, log q(entry) `[A, M]` and
    the tables of B trees; differentiable in both log-probability tensors."""
    return _RootingLogProbs.apply(root_log_probs, entry_log_probs, tables)
