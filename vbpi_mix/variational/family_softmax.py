"""Compiled (numba), differentiable log-probabilities of the SBN entries a batch reads,
each logit normalised within its family (the entries sharing its parent subsplit):

    log q_a(e) = l_a(e) - m_af - log S_af,   S_af = sum_{j in f} exp(l_a(j) - m_af),

with f the family of e and m_af the largest logit of f in component a (any shift gives the
same value; the family's own keeps a family far below the rest of its row from underflowing).
The families are those listed by vbpi_mix.variational.read_entries, whose members lie family
by family, so each family is one contiguous run. Backward, with g_a(j) the upstream gradient
of member j (zero for a member not read):

    d / d l_a(j) = g_a(j) - q_a(j) sum_{i in f} g_a(i).

Three passes over the members (gather and shift, family sums, the entries read) with numpy's
vectorised exp and log between them (numba's exp is scalar here). One compiled op replaces a
dozen torch ops (gather, scatter_reduce for the maxima, exp, scatter_add, log, gathers) and
their temporaries, forward and backward.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import prange
from torch.autograd.function import once_differentiable

from vbpi_mix.compile_presets import compiled_in_parallel
from vbpi_mix.variational.parameter_tables import as_float64_array
from vbpi_mix.variational.read_entries import ReadEntries


@compiled_in_parallel
def _shifted_members(logits, members, family_starts, shifted):
    """shifted[a, s] = l_a(members[s]) - m_af, f the family of member s."""
    for a in prange(logits.shape[0]):
        row, out = logits[a], shifted[a]
        for f in range(family_starts.size - 1):
            start, end = family_starts[f], family_starts[f + 1]
            largest = -np.inf
            for s in range(start, end):
                out[s] = row[members[s]]
                largest = max(largest, out[s])
            for s in range(start, end):
                out[s] -= largest


@compiled_in_parallel
def _family_sums(exps, family_starts, sums):
    """sums[a, f] = S_af, the sum of the family's shifted exponentials."""
    for a in prange(exps.shape[0]):
        for f in range(family_starts.size - 1):
            total = 0.0
            for s in range(family_starts[f], family_starts[f + 1]):
                total += exps[a, s]
            sums[a, f] = total


@compiled_in_parallel
def _entries_read(shifted, log_sums, member_family, entry_slot, out):
    """out[a, u] = log q_a of entry u read: its shifted logit less its family's log S_af."""
    for a in prange(shifted.shape[0]):
        for u in range(entry_slot.size):
            s = entry_slot[u]
            out[a, u] = shifted[a, s] - log_sums[a, member_family[s]]


@compiled_in_parallel
def _backward(grad, exps, sums, members, family_starts, entry_slot, grad_logits):
    """grad_logits[a, members[s]] = g_a(s) - q_a(s) G_af (module docstring); grad_logits is
    zero-filled by the caller, and no member is listed twice."""
    for a in prange(grad.shape[0]):
        member_grad = np.zeros(exps.shape[1])
        for u in range(entry_slot.size):
            member_grad[entry_slot[u]] = grad[a, u]
        for f in range(family_starts.size - 1):
            start, end = family_starts[f], family_starts[f + 1]
            total = 0.0
            for s in range(start, end):
                total += member_grad[s]
            scale = total / sums[a, f]
            for s in range(start, end):
                grad_logits[a, members[s]] = member_grad[s] - exps[a, s] * scale


class _ReadEntryLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, read: ReadEntries) -> torch.Tensor:  # type: ignore[override]
        n_rows = logits.shape[0]
        shifted = np.empty((n_rows, read.members.size))
        _shifted_members(as_float64_array(logits), read.members, read.family_starts, shifted)
        exps = np.exp(shifted)
        sums = np.empty((n_rows, read.family_starts.size - 1))
        _family_sums(exps, read.family_starts, sums)
        out = np.empty((n_rows, read.entry_slot.size))
        _entries_read(shifted, np.log(sums), read.member_family, read.entry_slot, out)
        ctx.saved = (exps, sums, read, logits.shape)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        exps, sums, read, shape = ctx.saved
        grad_logits = np.zeros(shape)
        _backward(
            np.ascontiguousarray(grad.numpy(), dtype=np.float64), exps, sums, read.members,
            read.family_starts, read.entry_slot, grad_logits,
        )  # fmt: skip
        return torch.from_numpy(grad_logits), None


def read_entry_log_probs(logits: torch.Tensor, read: ReadEntries) -> torch.Tensor:
    """log q_a(e) `[A, U]` of the U entries a batch reads (columns: read.remapped's
    positions), each normalised within its family, from entry logits `[A, M]`;
    differentiable in the logits (zero gradient for every logit outside the families
    read)."""
    return _ReadEntryLogProbs.apply(logits, read)
