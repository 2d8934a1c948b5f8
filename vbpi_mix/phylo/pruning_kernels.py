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
def _entries(matrix):
    """The 16 entries of a 4 x 4 matrix, row by row, as scalars for the pattern loops."""
    return (
        matrix[0, 0], matrix[0, 1], matrix[0, 2], matrix[0, 3],
        matrix[1, 0], matrix[1, 1], matrix[1, 2], matrix[1, 3],
        matrix[2, 0], matrix[2, 1], matrix[2, 2], matrix[2, 3],
        matrix[3, 0], matrix[3, 1], matrix[3, 2], matrix[3, 3],
    )  # fmt: skip


@_jit
def _times(m, v0, v1, v2, v3):
    """The matrix (16 entries from _entries) times the vector (v0, v1, v2, v3)."""
    return (
        m[0] * v0 + m[1] * v1 + m[2] * v2 + m[3] * v3,
        m[4] * v0 + m[5] * v1 + m[6] * v2 + m[7] * v3,
        m[8] * v0 + m[9] * v1 + m[10] * v2 + m[11] * v3,
        m[12] * v0 + m[13] * v1 + m[14] * v2 + m[15] * v3,
    )


# The pattern loops below compute all four states of a pattern in one iteration, reading each
# input row once (a loop per state read the inputs four times: 1.4x slower), through
# one-dimensional row views (indexing the 3-d arrays inside the loop kept LLVM from
# vectorising it: 2.2x slower).


@_jit
def _message(matrix, partial, out, maximum):
    """out[c, i, p] = sum_j matrix[c, i, j] partial[c, j, p]; maximum[p] = max_(c,i) out."""
    maximum[:] = 0.0
    for c in range(partial.shape[0]):
        x0, x1, x2, x3 = partial[c, 0], partial[c, 1], partial[c, 2], partial[c, 3]
        o0, o1, o2, o3 = out[c, 0], out[c, 1], out[c, 2], out[c, 3]
        a = _entries(matrix[c])
        for p in range(maximum.size):
            r0, r1, r2, r3 = _times(a, x0[p], x1[p], x2[p], x3[p])
            o0[p], o1[p], o2[p], o3[p] = r0, r1, r2, r3
            maximum[p] = max(maximum[p], max(max(r0, r1), max(r2, r3)))


@_jit
def _product_of_messages(matrix1, partial1, matrix2, partial2, out, maximum):
    """out = (matrix1 partial1) * (matrix2 partial2), per category, fused, and its per-pattern
    maximum over (c, i). (A separate pass over `out` for the maximum was measured to cost as
    much as the product itself.)"""
    maximum[:] = 0.0
    for c in range(partial1.shape[0]):
        x0, x1, x2, x3 = partial1[c, 0], partial1[c, 1], partial1[c, 2], partial1[c, 3]
        y0, y1, y2, y3 = partial2[c, 0], partial2[c, 1], partial2[c, 2], partial2[c, 3]
        o0, o1, o2, o3 = out[c, 0], out[c, 1], out[c, 2], out[c, 3]
        a, b = _entries(matrix1[c]), _entries(matrix2[c])
        for p in range(maximum.size):
            s0, s1, s2, s3 = _times(a, x0[p], x1[p], x2[p], x3[p])
            t0, t1, t2, t3 = _times(b, y0[p], y1[p], y2[p], y3[p])
            r0, r1, r2, r3 = s0 * t0, s1 * t1, s2 * t2, s3 * t3
            o0[p], o1[p], o2[p], o3[p] = r0, r1, r2, r3
            maximum[p] = max(maximum[p], max(max(r0, r1), max(r2, r3)))


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
    for p in range(n_patterns):
        maximum[p] = max(maximum[p], TINY)
    total = _weighted_log_sum(maximum, pattern_weights)
    for p in range(n_patterns):
        maximum[p] = 1.0 / maximum[p]
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
    for c in range(upper.shape[0]):
        u0, u1, u2, u3 = upper[c, 0], upper[c, 1], upper[c, 2], upper[c, 3]
        l0, l1, l2, l3 = lower[c, 0], lower[c, 1], lower[c, 2], lower[c, 3]
        g00 = g01 = g02 = g03 = g10 = g11 = g12 = g13 = 0.0
        g20 = g21 = g22 = g23 = g30 = g31 = g32 = g33 = 0.0
        for p in range(coefficient.size):
            k = coefficient[p]
            a0, a1, a2, a3 = k * u0[p], k * u1[p], k * u2[p], k * u3[p]
            b0, b1, b2, b3 = l0[p], l1[p], l2[p], l3[p]
            g00, g01, g02, g03 = g00 + a0 * b0, g01 + a0 * b1, g02 + a0 * b2, g03 + a0 * b3
            g10, g11, g12, g13 = g10 + a1 * b0, g11 + a1 * b1, g12 + a1 * b2, g13 + a1 * b3
            g20, g21, g22, g23 = g20 + a2 * b0, g21 + a2 * b1, g22 + a2 * b2, g23 + a2 * b3
            g30, g31, g32, g33 = g30 + a3 * b0, g31 + a3 * b1, g32 + a3 * b2, g33 + a3 * b3
        w = weights[c]
        out[c, 0, 0], out[c, 0, 1], out[c, 0, 2], out[c, 0, 3] = w * g00, w * g01, w * g02, w * g03
        out[c, 1, 0], out[c, 1, 1], out[c, 1, 2], out[c, 1, 3] = w * g10, w * g11, w * g12, w * g13
        out[c, 2, 0], out[c, 2, 1], out[c, 2, 2], out[c, 2, 3] = w * g20, w * g21, w * g22, w * g23
        out[c, 3, 0], out[c, 3, 1], out[c, 3, 2], out[c, 3, 3] = w * g30, w * g31, w * g32, w * g33


@_jit
def _push_down(matrix, upper, out, maximum, pattern_weights):
    """out = P^T U, kept in range: the outside vector below an edge, D[c, j, p]."""
    _message(np.transpose(matrix, (0, 2, 1)), upper, out, maximum)
    _rescale_if_out_of_range(out, maximum, pattern_weights)


@_jit
def _site_and_coefficient(a, b, c_, scale_by_frequencies, frequencies, weights, factor, pw, out):
    """out[p] = factor n_p / site[p], site[p] = sum_c w_c sum_i f_i (a b c_)[c, i, p] with
    f_i = pi_i (root stage) or 1 (levels, where pi is already inside the outside vector)."""
    out[:] = 0.0
    for c in range(a.shape[0]):
        f0 = f1 = f2 = f3 = weights[c]
        if scale_by_frequencies:
            f0, f1, f2, f3 = (
                f0 * frequencies[0],
                f1 * frequencies[1],
                f2 * frequencies[2],
                f3 * frequencies[3],
            )
        a0, a1, a2, a3 = a[c, 0], a[c, 1], a[c, 2], a[c, 3]
        b0, b1, b2, b3 = b[c, 0], b[c, 1], b[c, 2], b[c, 3]
        c0, c1, c2, c3 = c_[c, 0], c_[c, 1], c_[c, 2], c_[c, 3]
        for p in range(out.size):
            out[p] += (
                f0 * a0[p] * b0[p] * c0[p]
                + f1 * a1[p] * b1[p] * c1[p]
                + f2 * a2[p] * b2[p] * c2[p]
                + f3 * a3[p] * b3[p] * c3[p]
            )
    for p in range(out.size):
        out[p] = factor * pw[p] / out[p]


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
