"""Compiled (numba) draw of log-normal branch lengths and their density under every mixture
component, differentiable: the training step's branch-length part in three passes.

For tree b, edge e and component a, with the feature ids of the edge (its split s, the ids
f_v of its primary subsplit pairs; an id of -1 adds nothing) and the parameter tables of
vbpi_mix.variational.branch_lengths:

    mu_abe = shift + m_split[a, s] + sum_v m_psp[a, f_v]
    l_abe  = min(s_split[a, s] + sum_v s_psp[a, f_v], L),  sigma_abe = exp(l_abe)
    log b_be = mu_rbe + sigma_rbe eps_be                   (r = r_b, the drawing component)
    log q_a(b | tau) = sum_e [-z_abe^2 / 2 - l_abe - log(2 pi) / 2 - log b_be],
                       z_abe = (log b_be - mu_abe) / sigma_abe

Backward, with upstream gradients G_b `[B, E]` for the lengths and G_q `[A, B]`:

    g_be   = G_b b_be + sum_a G_q[a, b] (-z_abe / sigma_abe - 1)      (d / d log b_be)
    d/d mu_abe = G_q[a, b] z_abe / sigma_abe + [a = r_b] g_be
    d/d l_abe  = G_q[a, b] (z_abe^2 - 1) + [a = r_b] g_be sigma_abe eps_be   (0 where capped)

each added to the parameters the moment read. L, the cap on log sigma (+inf: none), keeps a
component from growing tails that no posterior has (vbpi_mix.variational.branch_lengths).
The forward keeps z and 1 / sigma of every (a, b, e) for the backward, cheaper than
recomputing the moments there. Compiled, the draw and scores avoid torch's `[A, B, E]`
temporaries and their gradients; the forward runs as three passes (moments; numpy's
vectorised exponentials; scores), which beat one compiled pass that calls a moments helper
per edge (benchmarks/results/iteration.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import prange
from torch.autograd.function import once_differentiable

from vbpi_mix.compile_presets import compiled_in_parallel
from vbpi_mix.variational.parameter_tables import as_float64_array

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


@compiled_in_parallel
def _edge_moments(tables, shift, cap, splits, psp, mean, log_std, capped):
    """mu_abe and l_abe `[A, B, E]` (module docstring) of every edge of every tree under
    every component, and where l_abe met the cap `cap`; components in parallel (a thread
    reads one component's rows of the tables, which stay in cache). The sums are written out
    here, not in a helper called per edge: numba's inlining of a function that takes arrays
    counts references to them on every call (atomic increments and decrements)."""
    split_mean, split_log_std, psp_mean, psp_log_std = tables
    n_trees, n_edges = splits.shape
    for a in prange(mean.shape[0]):
        for b in range(n_trees):
            for e in range(n_edges):
                edge_mean = edge_log_std = 0.0
                split_id = splits[b, e]
                if split_id >= 0:
                    edge_mean, edge_log_std = split_mean[a, split_id], split_log_std[a, split_id]
                for v in range(psp.shape[2]):
                    psp_id = psp[b, e, v]
                    if psp_id >= 0:
                        edge_mean += psp_mean[a, psp_id]
                        edge_log_std += psp_log_std[a, psp_id]
                capped[a, b, e] = edge_log_std > cap
                mean[a, b, e] = shift + edge_mean
                log_std[a, b, e] = min(edge_log_std, cap)


@compiled_in_parallel
def _scores(log_lengths, mean, log_std, inverse_std, log_q):
    """log q_a(b | tau) `[A, B]` of the drawn log lengths `[B, E]` under every component,
    from the moments and 1 / sigma `[A, B, E]`; z_abe is written over `mean` (kept for the
    backward)."""
    n_trees, n_edges = log_lengths.shape
    for a in prange(log_q.shape[0]):
        for b in range(n_trees):
            total = 0.0
            for e in range(n_edges):
                standard = (log_lengths[b, e] - mean[a, b, e]) * inverse_std[a, b, e]
                total += -0.5 * standard * standard - log_std[a, b, e] - log_lengths[b, e]
                mean[a, b, e] = standard
            log_q[a, b] = total - n_edges * HALF_LOG_TWO_PI


def _draw_and_score(tables, shift, cap, splits, psp, rows, noise):
    """log b `[B, E]`, tree b drawn with `noise` from row rows[b] of the tables, log q `[A, B]`
    of the draw under every row, and each (a, b, e)'s z, 1 / sigma and capped flag
    `[A, B, E]` for the backward. The exponentials run in numpy's vectorised loops, not one
    at a time in the compiled loop (numba's exp is scalar)."""
    shape = (tables[0].shape[0], *splits.shape)
    z, log_std, capped = np.empty(shape), np.empty(shape), np.empty(shape, dtype=np.bool_)
    _edge_moments(tables, shift, cap, splits, psp, z, log_std, capped)
    trees = np.arange(splits.shape[0])
    log_lengths = z[rows, trees] + np.exp(log_std[rows, trees]) * noise
    inverse_std = np.exp(np.negative(log_std))
    log_q = np.empty(shape[:2])
    _scores(log_lengths, z, log_std, inverse_std, log_q)
    return log_lengths, log_q, z, inverse_std, capped


@compiled_in_parallel
def _log_length_gradients(log_lengths, z, inverse_std, grad_lengths, grad_q, out):
    """g_be `[B, E]` (module docstring): the gradient with respect to log b_be."""
    n_trees, n_edges = log_lengths.shape
    for b in prange(n_trees):
        for e in range(n_edges):
            out[b, e] = grad_lengths[b, e] * math.exp(log_lengths[b, e])
        for a in range(grad_q.shape[0]):
            upstream = grad_q[a, b]
            for e in range(n_edges):
                out[b, e] -= upstream * (z[a, b, e] * inverse_std[a, b, e] + 1.0)


@compiled_in_parallel
def _parameter_gradients(
    splits, psp, rows, noise, z, inverse_std, capped, grad_q, grad_log_lengths, grads
):  # fmt: skip
    """Every (a, b, e)'s d/d mu and d/d log sigma added to the parameters its moments read;
    components in parallel, so no two threads write the same row of `grads` (the four
    tables' shapes)."""
    n_trees, n_edges = splits.shape
    grad_split_mean, grad_split_log_std, grad_psp_mean, grad_psp_log_std = grads
    for a in prange(grad_q.shape[0]):
        for b in range(n_trees):
            drawn, upstream = rows[b] == a, grad_q[a, b]
            for e in range(n_edges):
                standard = z[a, b, e]
                d_mean = upstream * standard * inverse_std[a, b, e]
                d_log_std = upstream * (standard * standard - 1.0)
                if drawn:
                    d_mean += grad_log_lengths[b, e]
                    d_log_std += grad_log_lengths[b, e] * noise[b, e] / inverse_std[a, b, e]
                if capped[a, b, e]:
                    d_log_std = 0.0
                split_id = splits[b, e]
                if split_id >= 0:
                    grad_split_mean[a, split_id] += d_mean
                    grad_split_log_std[a, split_id] += d_log_std
                for v in range(psp.shape[2]):
                    psp_id = psp[b, e, v]
                    if psp_id >= 0:
                        grad_psp_mean[a, psp_id] += d_mean
                        grad_psp_log_std[a, psp_id] += d_log_std


class _DrawAndScore(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        split_mean: torch.Tensor,
        split_log_std: torch.Tensor,
        psp_mean: torch.Tensor,
        psp_log_std: torch.Tensor,
        shift: float,
        cap: float,
        splits: np.ndarray,
        psp: np.ndarray,
        rows: np.ndarray,
        noise: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tables = tuple(
            as_float64_array(t) for t in (split_mean, split_log_std, psp_mean, psp_log_std)
        )
        noise_array = as_float64_array(noise)
        log_lengths, log_q, z, inverse_std, capped = _draw_and_score(
            tables, shift, cap, splits, psp, rows, noise_array
        )
        ctx.saved = (splits, psp, rows, noise_array, log_lengths, z, inverse_std, capped)
        ctx.shapes = [table.shape for table in tables]
        return torch.from_numpy(log_lengths).exp(), torch.from_numpy(log_q)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_lengths: torch.Tensor, grad_q: torch.Tensor):  # type: ignore[override]
        splits, psp, rows, noise, log_lengths, z, inverse_std, capped = ctx.saved
        upstream_q = as_float64_array(grad_q)
        grad_log_lengths = np.empty(log_lengths.shape)
        _log_length_gradients(
            log_lengths, z, inverse_std, as_float64_array(grad_lengths), upstream_q,
            grad_log_lengths,
        )  # fmt: skip
        grads = tuple(np.zeros(shape) for shape in ctx.shapes)
        _parameter_gradients(
            splits, psp, rows, noise, z, inverse_std, capped, upstream_q, grad_log_lengths, grads
        )
        return (*(torch.from_numpy(g) for g in grads), None, None, None, None, None, None)


def draw_and_score(
    tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    shift: float,
    cap: float,
    splits: np.ndarray,
    psp: np.ndarray,
    rows: np.ndarray,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Branch lengths `[B, E]`, tree b drawn with `noise [B, E]` from row rows[b] of the
    tables (split mean and log-std `[A, R]`, PSP mean and log-std `[A, M]`), and log q_a(b |
    tau) `[A, B]` of the draw under every row; differentiable in the four tables, through
    the draw and the scores (module docstring), log sigma capped at `cap` (math.inf: none).
    splits `[B, E]` and psp `[B, E, V]` are the edges' feature ids (V = 0 without PSP
    features)."""
    ids = (
        np.ascontiguousarray(splits, dtype=np.int64),
        np.ascontiguousarray(psp, dtype=np.int64),
        np.ascontiguousarray(rows, dtype=np.int64),
    )
    return _DrawAndScore.apply(*tables, shift, float(cap), *ids, noise)
