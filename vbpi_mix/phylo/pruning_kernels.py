"""Compiled (numba) loops of the pruning kernel: the numerical core, fused per node.

Each function walks the segments of a Schedule (one level of one chunk of trees) in order;
the nodes of one segment run in parallel (`prange`), and for each node the two messages,
their product and its per-pattern maximum (which decides whether to rescale) are done in one
pass over its patterns, so a node's data are read once while in cache. No Python runs per
node or per tree. The mathematics is stated in vbpi_mix.phylo.likelihood. The kernels make
no BLAS or torch calls: another thread pool spinning beside numba's was measured to double
the cost of a pass.

Array legend: R partials rows, C rate categories, P patterns, B trees; partials `[R, C, 4, P]`,
transitions `[B*E, C, 4, 4]` (row i, column j: P(j | i)).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

TINY = np.finfo(np.float64).tiny
PATTERN_BLOCK = 256  # 2 children x 4 states x 256 patterns x 8 bytes = 16 KiB, inside L1
# A node's vector is rescaled only when some pattern's largest entry leaves [2^-128, 2^128].
# Vectors left as they are keep every pattern's maximum at 2^-128 or more, so a product of two
# (at the root three) messages starts from 2^-384 times the transition probabilities along
# the way, far above float64's smallest normal number, 2^-1022.
RESCALE_BELOW, RESCALE_ABOVE = 2.0**-128, 2.0**128
# Reassociation and contraction let the pattern loops vectorise; no-NaN/no-inf assumptions are
# left out and divisions follow numpy's rules, so a zero site likelihood gives -inf (and an
# infinite gradient) rather than undefined behaviour or an exception inside a kernel.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_jit = numba.njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
_parallel = numba.njit(
    cache=True, nogil=True, parallel=True, fastmath=_FASTMATH, error_model="numpy"
)


@_jit
def _message(matrix, partial, out, maximum):
    """out[c, i, p] = sum_j matrix[c, i, j] partial[c, j, p]; maximum[p] = max_(c,i) out."""
    n_categories, _, n_patterns = partial.shape
    maximum[:] = 0.0
    for c in range(n_categories):
        for i in range(4):
            a0, a1, a2, a3 = matrix[c, i, 0], matrix[c, i, 1], matrix[c, i, 2], matrix[c, i, 3]
            for p in range(n_patterns):
                value = (
                    a0 * partial[c, 0, p]
                    + a1 * partial[c, 1, p]
                    + a2 * partial[c, 2, p]
                    + a3 * partial[c, 3, p]
                )
                out[c, i, p] = value
                maximum[p] = max(maximum[p], value)


@_jit
def _product_of_messages(matrix1, partial1, matrix2, partial2, out, maximum):
    """out = (matrix1 partial1) * (matrix2 partial2), per category, fused, and its per-pattern
    maximum over (c, i); patterns in blocks of PATTERN_BLOCK so that the children's block
    stays in L1 across the four states. (A separate pass over `out` for the maximum was
    measured to cost as much as the product itself.) The loops read one-dimensional row
    views: indexing the 3-d arrays directly kept LLVM from vectorising this loop (2.2x
    slower)."""
    n_categories, _, n_patterns = partial1.shape
    maximum[:] = 0.0
    for start in range(0, n_patterns, PATTERN_BLOCK):
        stop = min(start + PATTERN_BLOCK, n_patterns)
        largest = maximum[start:stop]
        for c in range(n_categories):
            x0, x1 = partial1[c, 0, start:stop], partial1[c, 1, start:stop]
            x2, x3 = partial1[c, 2, start:stop], partial1[c, 3, start:stop]
            y0, y1 = partial2[c, 0, start:stop], partial2[c, 1, start:stop]
            y2, y3 = partial2[c, 2, start:stop], partial2[c, 3, start:stop]
            for i in range(4):
                a0, a1, a2, a3 = (
                    matrix1[c, i, 0],
                    matrix1[c, i, 1],
                    matrix1[c, i, 2],
                    matrix1[c, i, 3],
                )
                b0, b1, b2, b3 = (
                    matrix2[c, i, 0],
                    matrix2[c, i, 1],
                    matrix2[c, i, 2],
                    matrix2[c, i, 3],
                )
                result = out[c, i, start:stop]
                for q in range(stop - start):
                    value = (a0 * x0[q] + a1 * x1[q] + a2 * x2[q] + a3 * x3[q]) * (
                        b0 * y0[q] + b1 * y1[q] + b2 * y2[q] + b3 * y3[q]
                    )
                    result[q] = value
                    largest[q] = max(largest[q], value)


@_jit
def _rescale_if_out_of_range(values, maximum, pattern_weights):
    """Keep `[C, 4, P]` within float64's range; return sum_p n_p log(scale factor).

    If every pattern's maximum lies in [RESCALE_BELOW, RESCALE_ABOVE] nothing is done (0 is
    returned); otherwise each pattern is divided by its maximum (at least TINY). Where a
    vector is rescaled does not change the result: the likelihood adds the log factors back,
    and the gradients are ratios of vectors carrying the same factors. Rescaling every node
    costs a log per pattern and a second pass over the node's vector: measured, it doubled
    the time of the inside pass."""
    n_categories, _, n_patterns = values.shape
    smallest, largest = maximum.min(), maximum.max()
    if smallest >= RESCALE_BELOW and largest <= RESCALE_ABOVE:
        return 0.0
    total = 0.0
    for p in range(n_patterns):
        factor = max(maximum[p], TINY)
        total += pattern_weights[p] * np.log(factor)
        maximum[p] = 1.0 / factor
    for c in range(n_categories):
        for i in range(4):
            for p in range(n_patterns):
                values[c, i, p] *= maximum[p]
    return total


@_jit
def _weighted_log_sum(values, pattern_weights):
    """sum_p n_p log(values[p])."""
    total = 0.0
    for p in range(values.size):
        total += pattern_weights[p] * np.log(values[p])
    return total


@_parallel
def inside_pass(
    partials, node_log_scale, transitions, segment_bounds, child_rows, child_edges,
    pattern_weights, n_taxa,
):  # fmt: skip
    """Fill partials rows N..R-1 segment by segment; node_log_scale `[R-N]` gets each node's
    sum_p n_p log(scale factor)."""
    n_patterns = partials.shape[3]
    for segment in range(segment_bounds.size - 1):
        for row in prange(segment_bounds[segment], segment_bounds[segment + 1]):
            k = row - n_taxa
            maximum = np.empty(n_patterns)
            _product_of_messages(
                transitions[child_edges[k, 0]], partials[child_rows[k, 0]],
                transitions[child_edges[k, 1]], partials[child_rows[k, 1]],
                partials[row], maximum,
            )  # fmt: skip
            node_log_scale[k] = _rescale_if_out_of_range(partials[row], maximum, pattern_weights)


@_parallel
def root_log_likelihoods(
    partials, transitions, rows, edges, frequencies, weights, pattern_weights, out
):
    """out[b] = sum_p n_p log site[b, p], site = sum_c w_c sum_i pi_i prod_k (P_ek L_rk)[c, i, p]
    over the three root children (scale factors of the nodes below are added by the caller)."""
    n_trees = rows.shape[0]
    n_categories, _, n_patterns = partials.shape[1:]
    for b in prange(n_trees):
        pair = np.empty((n_categories, 4, n_patterns))
        third = np.empty((n_categories, 4, n_patterns))
        maximum = np.empty(n_patterns)  # not needed here
        _product_of_messages(
            transitions[edges[b, 0]], partials[rows[b, 0]],
            transitions[edges[b, 1]], partials[rows[b, 1]], pair, maximum,
        )  # fmt: skip
        _message(transitions[edges[b, 2]], partials[rows[b, 2]], third, maximum)
        site = np.zeros(n_patterns)
        for c in range(n_categories):
            for i in range(4):
                factor = weights[c] * frequencies[i]
                for p in range(n_patterns):
                    site[p] += factor * pair[c, i, p] * third[c, i, p]
        out[b] = _weighted_log_sum(site, pattern_weights)


@_jit
def _edge_gradient(upper, lower, coefficient, weights, out):
    """out[c, i, j] = w_c sum_p coefficient[p] upper[c, i, p] lower[c, j, p]."""
    n_categories, _, n_patterns = upper.shape
    for c in range(n_categories):
        low0, low1, low2, low3 = lower[c, 0], lower[c, 1], lower[c, 2], lower[c, 3]
        for i in range(4):
            up = upper[c, i]
            g0 = g1 = g2 = g3 = 0.0
            for p in range(n_patterns):
                u = coefficient[p] * up[p]
                g0 += u * low0[p]
                g1 += u * low1[p]
                g2 += u * low2[p]
                g3 += u * low3[p]
            out[c, i, 0], out[c, i, 1] = weights[c] * g0, weights[c] * g1
            out[c, i, 2], out[c, i, 3] = weights[c] * g2, weights[c] * g3


@_jit
def _push_down(matrix, upper, out, maximum, pattern_weights):
    """out = P^T U, kept in range: the outside vector below an edge, D[c, j, p]."""
    _message(np.transpose(matrix, (0, 2, 1)), upper, out, maximum)
    _rescale_if_out_of_range(out, maximum, pattern_weights)


@_jit
def _site_and_coefficient(a, b, c_, scale_by_frequencies, frequencies, weights, factor, pw, out):
    """out[p] = factor n_p / site[p], site[p] = sum_c w_c sum_i f_i (a b c_)[c, i, p] with
    f_i = pi_i (root stage) or 1 (levels, where pi is already inside the outside vector)."""
    n_categories, _, n_patterns = a.shape
    site = np.zeros(n_patterns)
    for c in range(n_categories):
        for i in range(4):
            f = weights[c] * (frequencies[i] if scale_by_frequencies else 1.0)
            a_row, b_row, c_row = a[c, i], b[c, i], c_[c, i]
            for p in range(n_patterns):
                site[p] += f * a_row[p] * b_row[p] * c_row[p]
    for p in range(n_patterns):
        out[p] = factor * pw[p] / site[p]


@_parallel
def outside_root(
    partials, outside, grad_transitions, grad_frequencies, grad_weights, transitions, rows,
    edges, frequencies, weights, pattern_weights, grad_output, n_taxa,
):  # fmt: skip
    """Root stage of the backward pass: gradients of the three root edges, of pi and of the
    category weights (per tree, `[B, 4]` and `[B, C]`), and D for internal root children."""
    n_trees = rows.shape[0]
    n_categories, _, n_patterns = partials.shape[1:]
    for b in prange(n_trees):
        messages = np.empty((3, n_categories, 4, n_patterns))
        maximum = np.empty(n_patterns)
        for k in range(3):
            _message(transitions[edges[b, k]], partials[rows[b, k]], messages[k], maximum)
        coefficient = np.empty(n_patterns)
        _site_and_coefficient(
            messages[0], messages[1], messages[2], True, frequencies, weights,
            grad_output[b], pattern_weights, coefficient,
        )  # fmt: skip
        for c in range(n_categories):
            for i in range(4):
                m0, m1, m2 = messages[0, c, i], messages[1, c, i], messages[2, c, i]
                total = 0.0
                for p in range(n_patterns):
                    total += coefficient[p] * m0[p] * m1[p] * m2[p]
                grad_frequencies[b, i] += weights[c] * total
                grad_weights[b, c] += frequencies[i] * total
        upper = np.empty((n_categories, 4, n_patterns))
        for k in range(3):
            first, second = (1, 2) if k == 0 else ((0, 2) if k == 1 else (0, 1))
            for c in range(n_categories):
                for i in range(4):
                    up, m1, m2 = upper[c, i], messages[first, c, i], messages[second, c, i]
                    for p in range(n_patterns):
                        up[p] = frequencies[i] * m1[p] * m2[p]
            _edge_gradient(
                upper, partials[rows[b, k]], coefficient, weights, grad_transitions[edges[b, k]]
            )
            if rows[b, k] >= n_taxa:
                _push_down(
                    transitions[edges[b, k]], upper, outside[rows[b, k] - n_taxa], maximum,
                    pattern_weights,
                )  # fmt: skip


@_parallel
def outside_levels(
    partials, outside, grad_transitions, transitions, segment_bounds, child_rows, child_edges,
    row_trees, frequencies, weights, pattern_weights, grad_output, n_taxa,
):  # fmt: skip
    """Segments in reverse (levels top-down): U(child 1) = D_u * message(child 2) and vice
    versa; edge gradients and D for internal children."""
    n_categories, _, n_patterns = partials.shape[1:]
    for segment in range(segment_bounds.size - 2, -1, -1):
        for row in prange(segment_bounds[segment], segment_bounds[segment + 1]):
            k = row - n_taxa
            down = outside[k]
            messages = np.empty((2, n_categories, 4, n_patterns))
            maximum = np.empty(n_patterns)
            for s in range(2):
                _message(
                    transitions[child_edges[k, s]], partials[child_rows[k, s]], messages[s],
                    maximum,
                )  # fmt: skip
            coefficient = np.empty(n_patterns)
            _site_and_coefficient(
                down, messages[0], messages[1], False, frequencies, weights,
                grad_output[row_trees[k]], pattern_weights, coefficient,
            )  # fmt: skip
            upper = np.empty((n_categories, 4, n_patterns))
            for s in range(2):
                sibling = messages[1 - s]
                for c in range(n_categories):
                    for i in range(4):
                        up, outer, message = upper[c, i], down[c, i], sibling[c, i]
                        for p in range(n_patterns):
                            up[p] = outer[p] * message[p]
                child_row, child_edge = child_rows[k, s], child_edges[k, s]
                _edge_gradient(
                    upper, partials[child_row], coefficient, weights, grad_transitions[child_edge]
                )
                if child_row >= n_taxa:
                    _push_down(
                        transitions[child_edge], upper, outside[child_row - n_taxa], maximum,
                        pattern_weights,
                    )  # fmt: skip
