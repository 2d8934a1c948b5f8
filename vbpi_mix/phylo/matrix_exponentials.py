"""exp(S t) - I for symmetric 4 x 4 matrices S, each with a batch of times t, differentiable
in S and t even where eigenvalues repeat.

With S = U diag(lambda) U^T, exp(S t) - I = U diag(expm1(lambda t)) U^T (expm1 keeps the
O(t) entries of short branches accurate). Its derivative in a direction dS is the
Daleckii-Krein formula

    d(exp(S t)) = U (Phi(t) o (U^T dS U)) U^T,
    Phi_ij(t) = (exp(lambda_i t) - exp(lambda_j t)) / (lambda_i - lambda_j),  i != j,
    Phi_ii(t) = t exp(lambda_i t)   (the limit, also used for repeated eigenvalues),

so that, for an upstream gradient G_b per time t_b, dL/dS = U (sum_b Phi(t_b) o (U^T G_b U))
U^T, and dL/dt_b = sum_k lambda_k exp(lambda_k t_b) (U^T G_b U)_kk. Autograd through the
eigenvectors instead divides by lambda_i - lambda_j, infinite wherever eigenvalues repeat
(JC69 has a threefold one, K80 and HKY with equal frequencies a twofold one), although
exp(S t) itself is smooth there.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

# below this |lambda_i - lambda_j| t, Phi_ij is its series (see divided_differences)
_SERIES_BELOW = 1e-5


class _SymmetricExpm1(torch.autograd.Function):
    """Matrices `[n, 4, 4]`, times `[n, T]`: exp(S_m t_mr) - I `[n, T, 4, 4]`."""

    @staticmethod
    def forward(ctx, symmetric: torch.Tensor, times: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        eigenvalues, eigenvectors = torch.linalg.eigh(symmetric)  # [n, 4], [n, 4, 4]
        increments = torch.expm1(times[..., None] * eigenvalues[:, None, :])  # [n, T, 4]
        ctx.save_for_backward(eigenvalues, eigenvectors, times)
        return torch.einsum("mik,mtk,mjk->mtij", eigenvectors, increments, eigenvectors)

    @staticmethod
    @once_differentiable
    def backward(ctx, upstream: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        eigenvalues, eigenvectors, times = ctx.saved_tensors
        rotated = torch.einsum("mki,mtkl,mlj->mtij", eigenvectors, upstream, eigenvectors)
        grad_symmetric = grad_times = None
        if ctx.needs_input_grad[0]:
            weights = divided_differences(eigenvalues, times)  # [n, T, 4, 4]
            inner = (weights * rotated).sum(dim=1)
            grad_symmetric = eigenvectors @ inner @ eigenvectors.transpose(-1, -2)
        if ctx.needs_input_grad[1]:
            slopes = eigenvalues[:, None, :] * torch.exp(times[..., None] * eigenvalues[:, None, :])
            grad_times = (slopes * torch.diagonal(rotated, dim1=-2, dim2=-1)).sum(dim=-1)
        return grad_symmetric, grad_times


def divided_differences(eigenvalues: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Phi(t) `[n, T, 4, 4]` for eigenvalues `[n, 4]` and times `[n, T]`:
    (e^{l_i t} - e^{l_j t}) / (l_i - l_j), written as t e^{m t} (1 - e^{-x}) / x with
    m = max(l_i, l_j) and x = |l_i - l_j| t >= 0, which neither overflows for long branches
    nor cancels for close eigenvalues; its series 1 - x/2 + x^2/6 where x is small."""
    t = times[..., None, None]
    gaps = (eigenvalues[:, :, None] - eigenvalues[:, None, :]).abs()  # [n, 4, 4]
    larger = torch.maximum(eigenvalues[:, :, None], eigenvalues[:, None, :])
    x = gaps[:, None] * t
    small = x < _SERIES_BELOW
    ratio = torch.where(small, 1 - x / 2 + x * x / 6, -torch.expm1(-x) / torch.where(small, 1, x))
    return t * torch.exp(larger[:, None] * t) * ratio


def symmetric_expm1(symmetric: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """exp(S t) - I `[n, ..., 4, 4]` for symmetric matrices S `[n, 4, 4]` and times
    `[n, ...]`: matrix m with its own times (see the module docstring); only each S's lower
    triangle is read, as by torch.linalg.eigh."""
    flat = times.reshape(times.shape[0], -1)
    return _SymmetricExpm1.apply(symmetric, flat).view(*times.shape, 4, 4)
