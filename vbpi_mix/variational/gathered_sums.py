"""Compiled (numba) sums of gathered parameters of stacked mixture components, differentiable:

    out[a, i] = first[a, first_ids[i]] + sum_v rest[a, rest_ids[i, v]],

where an id of -1 contributes nothing. The branch model's log-normal moments of every edge
are built on it (vbpi_mix.variational.branch_lengths): first = the split's parameter, rest =
those of its two primary subsplit pairs (a tip edge has no subsplit below it: -1).

The backward pass adds each item's upstream gradient to the parameters it read. The three
gathers in torch, their padding and sums cost a tenth of an A2A iteration at A = 10 (DS1);
one compiled loop per item reads each term once, without those tensors.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange
from torch.autograd.function import once_differentiable

from vbpi_mix.variational.numpy_tables import as_float64_array


@numba.njit(cache=True, nogil=True, parallel=True)
def _gathered_sums(first, rest, first_ids, rest_ids, out):
    """out[i, a] = first[a, first_ids[i]] + sum_v rest[a, rest_ids[i, v]], an id of -1
    adding nothing; the tables are the parameters' own `[A, R]` and `[A, M]` (copying them
    to a components-last layout cost more than the strided reads it saved)."""
    n_items, n_rest = rest_ids.shape
    n_components = out.shape[1]
    for i in prange(n_items):
        total = out[i]
        first_id = first_ids[i]
        for a in range(n_components):
            total[a] = first[a, first_id] if first_id >= 0 else 0.0
        for v in range(n_rest):
            rest_id = rest_ids[i, v]
            if rest_id >= 0:
                for a in range(n_components):
                    total[a] += rest[a, rest_id]


@numba.njit(cache=True, nogil=True, parallel=True)
def _scatter_gradients(grad, first_ids, rest_ids, grad_first, grad_rest):
    """The transpose of _gathered_sums: every item's gradient `grad [A, I]` added to the
    parameters it read, in `[A, R]` and `[A, M]` (ids -1 read none); components in parallel,
    so no two threads write the same row."""
    n_items, n_rest = rest_ids.shape
    for a in prange(grad.shape[0]):
        upstream, first_row, rest_row = grad[a], grad_first[a], grad_rest[a]
        for i in range(n_items):
            first_id = first_ids[i]
            if first_id >= 0:
                first_row[first_id] += upstream[i]
            for v in range(n_rest):
                rest_id = rest_ids[i, v]
                if rest_id >= 0:
                    rest_row[rest_id] += upstream[i]


class _GatheredSum(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        first: torch.Tensor,
        rest: torch.Tensor,
        first_ids: np.ndarray,
        rest_ids: np.ndarray,
    ) -> torch.Tensor:
        shape = first_ids.shape
        first_ids = np.ascontiguousarray(first_ids, dtype=np.int64).reshape(-1)
        rest_ids = np.ascontiguousarray(rest_ids, dtype=np.int64).reshape(first_ids.size, -1)
        out = np.empty((first_ids.size, first.shape[0]))
        _gathered_sums(as_float64_array(first), as_float64_array(rest), first_ids, rest_ids, out)
        ctx.ids = (first_ids, rest_ids)
        ctx.shapes = (first.shape, rest.shape)
        return torch.from_numpy(out).T.reshape(first.shape[0], *shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad_first, grad_rest = np.zeros(ctx.shapes[0]), np.zeros(ctx.shapes[1])
        upstream = np.ascontiguousarray(grad.reshape(grad.shape[0], -1).numpy(), dtype=np.float64)
        _scatter_gradients(upstream, *ctx.ids, grad_first, grad_rest)
        return torch.from_numpy(grad_first), torch.from_numpy(grad_rest), None, None


def gathered_sum(
    first: torch.Tensor,
    rest: torch.Tensor,
    first_ids: np.ndarray,
    rest_ids: np.ndarray,
) -> torch.Tensor:
    """`[A, *S]` (module docstring) from parameter tables first `[A, R]` and rest `[A, M]`,
    first_ids of any shape S and rest_ids `[*S, V]`; differentiable in both tables."""
    return _GatheredSum.apply(first, rest, first_ids, rest_ids)
