"""Compiled (numba), differentiable sum of an SBN's rooted-tree probabilities over the 2N-3
rootings of each unrooted tree, in O(N) per tree and component:

    log q_a(tau) = log sum_r exp( l_a(root split of r) + sum_v l_a(entry of v in rooting r) )

with l_a the component's log-probabilities. Node v's entry depends on the rooting only
through its slot k towards the root and, unless the root is on the edge to that neighbour,
through which side of the neighbour leads on (vbpi_mix.trees.subsplits: candidate 3k +
choice). So with D(v, k), the sum of the entries of every node beyond v's sides other than k,

    D(v, k) = sum_{j != k, neighbour c_j internal} [ l(c_j, 3 m_j + h(k, j)) + D(c_j, m_j) ]

(m_j the slot of v in c_j; h(k, j) the choice whose sister is v's third side), the rooting on
the edge from internal node v (child slot j) to its child c has the value

    l(root split) + l(v, 3j) + D(v, j) + [c internal] ( l(c, 3 m + 0) + D(c, m) ).

D(v, parent slot) follows children first, D(v, child slot) parents first: 3(N-2) sums per
tree and component instead of the (2N-3)(N-2) terms of every rooting (DS8: 186 against
7,750).

Backward: a term's gradient is the upstream gradient times the softmax weight of the
rootings that read it: w_e for the root split and both choice-0 entries of edge e, and
G(v, k) for every term of D(v, k), the weight of the edges on v's slot-k side with the edge
to that neighbour: w(edge to child c) + S(c) for a child slot, S(root) - S(v) for the parent
slot, with S(v) the weight of the edges below v (children first; S(root) = 1, or 0 for a tree
outside the support).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import prange
from torch.autograd.function import once_differentiable

from vbpi_mix.compile_presets import compiled, compiled_in_parallel
from vbpi_mix.trees.subsplits import TopologyTables
from vbpi_mix.variational.parameter_tables import as_float64_array


@compiled
def _choice(k, j):
    """h(k, j): the choice (1 or 2) of the child at slot j of a node whose root side is slot
    k, whose sister is the node's third side 3 - k - j. Choices 1 and 2 name the node's two
    sides other than the child's, k and 3 - k - j, in slot order: the sister's is choice 1
    when 3 - k - j < k."""
    return 1 if 3 - k - j < k else 2


@compiled
def _read(table, a, i):
    """table[a, i], or -inf for id -1 (outside the support)."""
    return table[a, i] if i >= 0 else -np.inf


@compiled
def _add(table, a, i, value):
    """table[a, i] += value, unless i is -1."""
    if i >= 0:
        table[a, i] += value


@compiled
def _beyond(entries, a, ids, neighbours, back_slots, down, v, k, n_taxa):
    """D(v, k) (module docstring) of one tree from the D of v's neighbours."""
    total = 0.0
    for j in range(3):
        c = neighbours[v, j]
        if j != k and c >= n_taxa:
            m = back_slots[v, j]
            total += _read(entries, a, ids[c - n_taxa, 3 * m + _choice(k, j)]) + down[c - n_taxa, m]
    return total


@compiled_in_parallel
def _forward(roots, entries, root_ids, ids, neighbours, back_slots, order, out, weights):
    """out[a, b] = log q_a(tree b) and weights[a, b, e] = the softmax weight of the rooting on
    edge e (the edge above node e; zero where the tree is outside the support)."""
    n_components, n_trees, n_edges = weights.shape
    n_taxa, n_inner = (n_edges + 3) // 2, ids.shape[1]
    root = n_inner - 1
    for b in prange(n_trees):
        down = np.empty((n_inner, 3))
        tree_ids, tree_neighbours, tree_back = ids[b], neighbours[b], back_slots[b]
        for a in range(n_components):
            for i in range(n_inner):  # children first
                v = order[b, i]
                if v != root:
                    down[v, 2] = _beyond(
                        entries, a, tree_ids, tree_neighbours, tree_back, down, v, 2, n_taxa
                    )
            for i in range(n_inner - 1, -1, -1):  # parents first
                v = order[b, i]
                for k in range(3 if v == root else 2):
                    down[v, k] = _beyond(
                        entries, a, tree_ids, tree_neighbours, tree_back, down, v, k, n_taxa
                    )
            values = weights[a, b]
            for v in range(n_inner):
                for j in range(3 if v == root else 2):
                    c = tree_neighbours[v, j]
                    value = _read(roots, a, root_ids[b, c]) + _read(entries, a, tree_ids[v, 3 * j])
                    value += down[v, j]
                    if c >= n_taxa:
                        value += _read(entries, a, tree_ids[c - n_taxa, 6]) + down[c - n_taxa, 2]
                    values[c] = value
            largest = values.max()
            if largest == -np.inf:
                out[a, b] = -np.inf
                values[:] = 0.0
                continue
            total = 0.0
            for e in range(n_edges):
                values[e] = np.exp(values[e] - largest)
                total += values[e]
            out[a, b] = largest + np.log(total)
            values /= total


@compiled_in_parallel
def _backward(
    grad, weights, root_ids, ids, neighbours, back_slots, order, grad_roots, grad_entries
):  # fmt: skip
    """The upstream grad `[A, B]` times each term's rooting weight (module docstring), added
    to grad_roots `[A, R]` and grad_entries `[A, U]` (zero-filled by the caller); components
    in parallel, so no two threads write the same row."""
    n_components, n_trees, _ = weights.shape
    n_inner = ids.shape[1]
    n_taxa, root = n_inner + 2, n_inner - 1
    for a in prange(n_components):
        below = np.empty(n_inner)
        for b in range(n_trees):
            g, w = grad[a, b], weights[a, b]
            tree_ids, tree_neighbours, tree_back = ids[b], neighbours[b], back_slots[b]
            for i in range(n_inner):  # S(v), children first
                v = order[b, i]
                total = 0.0
                for j in range(3 if v == root else 2):
                    c = tree_neighbours[v, j]
                    total += w[c] + (below[c - n_taxa] if c >= n_taxa else 0.0)
                below[v] = total
            for v in range(n_inner):
                for k in range(3):
                    c = tree_neighbours[v, k]
                    if k == 2 and v != root:
                        side = below[root] - below[v]
                    else:
                        side = w[c] + (below[c - n_taxa] if c >= n_taxa else 0.0)
                        edge = g * w[c]  # the rooting on the edge to child c
                        _add(grad_roots, a, root_ids[b, c], edge)
                        _add(grad_entries, a, tree_ids[v, 3 * k], edge)
                        if c >= n_taxa:
                            _add(grad_entries, a, tree_ids[c - n_taxa, 6], edge)
                    for j in range(3):
                        child = tree_neighbours[v, j]
                        if j != k and child >= n_taxa:
                            slot = 3 * tree_back[v, j] + _choice(k, j)
                            _add(grad_entries, a, tree_ids[child - n_taxa, slot], g * side)


class _RootingLogSum(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        root_log_probs: torch.Tensor,
        entry_log_probs: torch.Tensor,
        tables: TopologyTables,
        candidate_ids: np.ndarray,
    ) -> torch.Tensor:
        n_components, (n_trees, n_edges) = root_log_probs.shape[0], tables.root_ids.shape
        out = np.empty((n_components, n_trees))
        weights = np.empty((n_components, n_trees, n_edges))
        _forward(
            as_float64_array(root_log_probs), as_float64_array(entry_log_probs), tables.root_ids,
            candidate_ids, tables.neighbours, tables.back_slots, tables.order, out, weights,
        )  # fmt: skip
        ctx.saved = (weights, tables, candidate_ids, root_log_probs.shape, entry_log_probs.shape)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        weights, tables, candidate_ids, root_shape, entry_shape = ctx.saved
        grad_roots, grad_entries = np.zeros(root_shape), np.zeros(entry_shape)
        _backward(
            np.ascontiguousarray(grad.numpy(), dtype=np.float64), weights, tables.root_ids,
            candidate_ids, tables.neighbours, tables.back_slots, tables.order, grad_roots,
            grad_entries,
        )  # fmt: skip
        return torch.from_numpy(grad_roots), torch.from_numpy(grad_entries), None, None


def rooting_log_sum(
    root_log_probs: torch.Tensor,
    entry_log_probs: torch.Tensor,
    tables: TopologyTables,
    candidate_ids: np.ndarray,
) -> torch.Tensor:
    """log q_a(tau) `[A, B]`: the log of the sum over every rooting of each tree in `tables`
    of the product of its root split's and its nodes' probabilities, from log-probabilities
    root_log_probs `[A, R]` (columns: tables.root_ids) and entry_log_probs `[A, U]`
    (columns: candidate_ids `[B, N-2, 9]`, -1 reading -inf); differentiable in both."""
    return _RootingLogSum.apply(root_log_probs, entry_log_probs, tables, candidate_ids)
