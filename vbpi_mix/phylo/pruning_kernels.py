"""Compiled (numba) loops of the pruning kernel: the numerical core, fused per tree.

The trees of a batch are split into one block per thread (`prange`); a thread walks each tree
of its block on its own: the tree's nodes children first (likelihood), then, when a gradient
is wanted, parents first (its gradient with respect to every transition matrix, with an
upstream gradient of 1; the autograd backward only scales it). A tree's vectors live in a
per-thread scratch buffer of N-3 rows that stays in cache (DS1: 0.7 MB), and for each node
the two messages, their product and its per-pattern maximum (which decides whether to
rescale) are one pass over its patterns. No Python runs per node or per tree. The
mathematics is stated in vbpi_mix.phylo.likelihood. The kernels make no BLAS or torch calls:
another thread pool spinning beside numba's would compete for the same cores.

Array legend: B trees, N taxa, C rate categories, P patterns; vectors `[C, 4, P]`, tips
`[N, C, 4, P]`, scratch `[threads, N-3, C, 4, P]`, transitions `[B*E, C, 4, 4]` (row i,
column j: P(j | i)) or, for Jukes-Cantor, `[B*E, C, 2]`: the pair (a, b) of P = a I + b J,
whose per-edge loops (vbpi_mix.phylo.jukes_cantor_kernels) numba substitutes for the
general ones; gradients have the shape of the transitions.
"""

from __future__ import annotations

import numpy as np
from numba import prange
from numba.extending import overload

from vbpi_mix.compile_presets import kernel, kernel_in_parallel
from vbpi_mix.phylo import jukes_cantor_kernels as jukes_cantor
from vbpi_mix.phylo.pattern_loops import TINY, keep_pattern, state_rows


def _by_matrix_kind(general, jukes_cantor_loop, argument: int):
    """A compiled function that runs `general` when argument `argument` is per-category
    4 x 4 data (`[C, 4, 4]`) and `jukes_cantor_loop` when it is a (a, b) pair per category
    (`[C, 2]`, vbpi_mix.phylo.jukes_cantor_kernels); numba picks one when compiling."""

    def by_kind(*args):
        raise NotImplementedError("called from compiled code only")

    @overload(by_kind)
    def _choose(*args):
        loop = jukes_cantor_loop if args[argument].ndim == 2 else general
        return lambda *args: loop(*args)

    return by_kind


@kernel
def _entries(matrix):
    """The 16 entries of a 4 x 4 matrix, row by row, as scalars for the pattern loops."""
    return (
        matrix[0, 0], matrix[0, 1], matrix[0, 2], matrix[0, 3],
        matrix[1, 0], matrix[1, 1], matrix[1, 2], matrix[1, 3],
        matrix[2, 0], matrix[2, 1], matrix[2, 2], matrix[2, 3],
        matrix[3, 0], matrix[3, 1], matrix[3, 2], matrix[3, 3],
    )  # fmt: skip


@kernel
def _times(m, v0, v1, v2, v3):
    """The matrix (16 entries from _entries) times the vector (v0, v1, v2, v3)."""
    return (
        m[0] * v0 + m[1] * v1 + m[2] * v2 + m[3] * v3,
        m[4] * v0 + m[5] * v1 + m[6] * v2 + m[7] * v3,
        m[8] * v0 + m[9] * v1 + m[10] * v2 + m[11] * v3,
        m[12] * v0 + m[13] * v1 + m[14] * v2 + m[15] * v3,
    )


# The pattern loops below compute all four states of a pattern in one iteration, reading each
# input row once (a loop per state would read the inputs four times), through
# one-dimensional row views (`state_rows`).


@kernel
def _general_message(matrix, partial, out):
    """out[c, i, p] = sum_j matrix[c, i, j] partial[c, j, p]. A message is never rescaled on
    its own (its product is, or it enters a site likelihood), so no range test."""
    for c in range(partial.shape[0]):
        x0, x1, x2, x3 = state_rows(partial, c)
        o0, o1, o2, o3 = state_rows(out, c)
        a = _entries(matrix[c])
        for p in range(out.shape[2]):
            o0[p], o1[p], o2[p], o3[p] = _times(a, x0[p], x1[p], x2[p], x3[p])


@kernel
def _general_product_of_messages(
    matrix1, partial1, matrix2, partial2, out, maximum, rescale_range
):  # fmt: skip
    """out = (matrix1 partial1) * (matrix2 partial2), per category, fused, and its per-pattern
    maximum over (c, i); returns whether some maximum lies outside `rescale_range`.
    (Separate passes for the maxima and for the range test would each cost nearly as much as
    the product.)"""
    maximum[:] = 0.0
    out_of_range = 0
    for c in range(partial1.shape[0]):
        x0, x1, x2, x3 = state_rows(partial1, c)
        y0, y1, y2, y3 = state_rows(partial2, c)
        o0, o1, o2, o3 = state_rows(out, c)
        a, b = _entries(matrix1[c]), _entries(matrix2[c])
        out_of_range = 0  # only the last category's pass sees the final maxima
        for p in range(maximum.size):
            s0, s1, s2, s3 = _times(a, x0[p], x1[p], x2[p], x3[p])
            t0, t1, t2, t3 = _times(b, y0[p], y1[p], y2[p], y3[p])
            r0, r1, r2, r3 = s0 * t0, s1 * t1, s2 * t2, s3 * t3
            out_of_range += keep_pattern(o0, o1, o2, o3, p, r0, r1, r2, r3, maximum, rescale_range)
    return out_of_range > 0


@kernel
def _rescale(values, maximum, pattern_weights):
    """Divide each pattern of `[C, 4, P]` by its maximum over (c, i) (at least TINY; the
    maxima are worked out here, in `maximum`); return sum_p n_p log(maximum[p]), the log
    scale factor to add back.

    Called only for vectors with some pattern out of the rescaling range. Where a
    vector is rescaled does not change the result: the likelihood adds the log factors back,
    and the gradients are ratios of vectors carrying the same factors. Rescaling every node
    costs a log per pattern and a second pass over the node's vector."""
    n_categories, _, n_patterns = values.shape
    maximum[:] = TINY
    for c in range(n_categories):
        for i in range(4):
            for p in range(n_patterns):
                maximum[p] = max(maximum[p], values[c, i, p])
    total = _weighted_log_sum(maximum, pattern_weights)
    for p in range(n_patterns):
        maximum[p] = 1.0 / maximum[p]
    for c in range(n_categories):
        for i in range(4):
            for p in range(n_patterns):
                values[c, i, p] *= maximum[p]
    return total


@kernel
def _weighted_log_sum(values, pattern_weights):
    """sum_p n_p log(values[p])."""
    total = 0.0
    for p in range(values.size):
        total += pattern_weights[p] * np.log(values[p])
    return total


# The outside pass never stores an upper vector U = f * first * second (f = pi and the other
# two root messages at the root; f = 1, D_u and the sibling's message below): its consumers
# form it on the fly, saving a pass that writes U and two that read it.


@kernel
def _site(first, second, third, factors, weights, out):
    """out[p] = site[p] = sum_c w_c sum_i f_i (first second third)[c, i, p]."""
    out[:] = 0.0
    for c in range(first.shape[0]):
        w = weights[c]
        f0, f1, f2, f3 = w * factors[0], w * factors[1], w * factors[2], w * factors[3]
        a0, a1, a2, a3 = state_rows(first, c)
        b0, b1, b2, b3 = state_rows(second, c)
        c0, c1, c2, c3 = state_rows(third, c)
        for p in range(out.size):
            out[p] += (
                f0 * a0[p] * b0[p] * c0[p]
                + f1 * a1[p] * b1[p] * c1[p]
                + f2 * a2[p] * b2[p] * c2[p]
                + f3 * a3[p] * b3[p] * c3[p]
            )


@kernel
def _coefficient(site, pattern_weights, out):
    """out[p] = n_p / site[p] (`out` may be `site`)."""
    for p in range(out.size):
        out[p] = pattern_weights[p] / site[p]


@kernel
def _matrix_gradient(first, second, factors, lower, coefficient, weights, out):
    """out[c, i, j] = w_c sum_p coefficient[p] U[c, i, p] lower[c, j, p], with the upper
    vector U = f * first * second."""
    for c in range(first.shape[0]):
        u0, u1, u2, u3 = state_rows(first, c)
        v0, v1, v2, v3 = state_rows(second, c)
        l0, l1, l2, l3 = state_rows(lower, c)
        g00 = g01 = g02 = g03 = g10 = g11 = g12 = g13 = 0.0
        g20 = g21 = g22 = g23 = g30 = g31 = g32 = g33 = 0.0
        for p in range(coefficient.size):
            k = coefficient[p]
            a0, a1, a2, a3 = (
                k * u0[p] * v0[p],
                k * u1[p] * v1[p],
                k * u2[p] * v2[p],
                k * u3[p] * v3[p],
            )
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
        for i in range(4):
            out[c, i] *= factors[i]


@kernel
def _outside_vector(matrix, first, second, factors, out, maximum, rescale_range):
    """out = P^T U with U = f * first * second: the outside vector D[c, j, p] below an
    edge; returns whether some pattern's maximum lies outside `rescale_range`."""
    maximum[:] = 0.0
    out_of_range = 0
    for c in range(first.shape[0]):
        x0, x1, x2, x3 = state_rows(first, c)
        y0, y1, y2, y3 = state_rows(second, c)
        o0, o1, o2, o3 = state_rows(out, c)
        m = matrix[c]
        f0, f1, f2, f3 = factors[0], factors[1], factors[2], factors[3]
        a = (
            m[0, 0] * f0, m[1, 0] * f1, m[2, 0] * f2, m[3, 0] * f3,
            m[0, 1] * f0, m[1, 1] * f1, m[2, 1] * f2, m[3, 1] * f3,
            m[0, 2] * f0, m[1, 2] * f1, m[2, 2] * f2, m[3, 2] * f3,
            m[0, 3] * f0, m[1, 3] * f1, m[2, 3] * f2, m[3, 3] * f3,
        )  # fmt: skip
        out_of_range = 0  # only the last category's pass sees the final maxima
        for p in range(maximum.size):
            r0, r1, r2, r3 = _times(a, x0[p] * y0[p], x1[p] * y1[p], x2[p] * y2[p], x3[p] * y3[p])
            out_of_range += keep_pattern(o0, o1, o2, o3, p, r0, r1, r2, r3, maximum, rescale_range)
    return out_of_range > 0


@kernel
def _general_edge_gradient(
    matrix, first, second, factors, lower, coefficient, weights, out, maximum, push_down,
    rescale_range,
):  # fmt: skip
    """The gradient with respect to P of the edge above `lower` into `out` and, with
    push_down, the outside vector below it written over `lower`; returns whether that
    vector has a pattern out of `rescale_range` (False without push_down).

    Two passes: one loop doing both (as the Jukes-Cantor kernels do) would keep 16 gradient
    accumulators and 16 matrix entries live, more than the vector registers hold."""
    _matrix_gradient(first, second, factors, lower, coefficient, weights, out)
    return push_down and _outside_vector(
        matrix, first, second, factors, lower, maximum, rescale_range
    )


_message = _by_matrix_kind(_general_message, jukes_cantor.message, 0)
_product_of_messages = _by_matrix_kind(
    _general_product_of_messages, jukes_cantor.product_of_messages, 0
)
_edge_gradient = _by_matrix_kind(_general_edge_gradient, jukes_cantor.edge_gradient, 0)


@kernel
def _vector(tips, scratch, row, first_row):
    """The vector of schedule row `row`: a tip's partials, or the scratch row of an internal
    node of the tree whose internal rows start at `first_row`."""
    if row < tips.shape[0]:
        return tips[row]
    return scratch[row - first_row]


@kernel
def _tree_log_likelihood(
    tips, scratch, transitions, child_rows, child_edges, root_rows, root_edges, frequencies,
    weights, pattern_weights, first_row, messages, site, rescale_range, scales, rescaled,
):  # fmt: skip
    """log L of one tree: its internal vectors into `scratch` (children first, each rescaled
    when out of range: rescaled[j] set and its per-pattern multipliers kept in scales[j]),
    then sum_p n_p (log site_p + log scale factors), site_p = sum_c w_c sum_i pi_i prod_k
    (P_ek L_k)[c, i, p] over the three root children (left in `site`)."""
    n_taxa = tips.shape[0]
    log_scale = 0.0
    for j in range(scratch.shape[0]):
        k = first_row - n_taxa + j
        rescaled[j] = _product_of_messages(
            transitions[child_edges[k, 0]], _vector(tips, scratch, child_rows[k, 0], first_row),
            transitions[child_edges[k, 1]], _vector(tips, scratch, child_rows[k, 1], first_row),
            scratch[j], site, rescale_range,
        )  # fmt: skip
        if rescaled[j]:
            log_scale += _rescale(scratch[j], site, pattern_weights)
            scales[j] = site  # _rescale leaves the multipliers 1 / maximum there
    for k in range(3):
        vector = _vector(tips, scratch, root_rows[k], first_row)
        _message(transitions[root_edges[k]], vector, messages[k])
    _site(messages[0], messages[1], messages[2], frequencies, weights, site)
    return _weighted_log_sum(site, pattern_weights) + log_scale


# Every node's site_u(p) = sum_c w_c sum_i D_u L_u equals the root's site(p) (push D_u up one
# edge at a time), so the outside pass needs only the root's coefficient n_p / site(p), up to
# the scale factors of the vectors a node reads. Computed from rescaled vectors, site_u
# carries every inside multiplier s_w except those of u and its ancestors (their inside
# vectors are not in D_u or u's children's messages), and the outside multipliers t_a of D
# on the path from the root to u; so the coefficient of u is its parent's times s_u / t_u:
#     c_u(p) = c_parent(u)(p) s_u(p) / t_u(p),   c_root = n_p / site(p).
# A node whose vectors were not rescaled shares its parent's row of coefficients.


@kernel
def _child_coefficient(
    coefficients, source, parent_row, child, scales, inside_rescaled, outside, outside_rescaled
):  # fmt: skip
    """Point source[child] at its row of `coefficients`: its parent's row (`parent_row`)
    when neither of its vectors was rescaled, else its own, c_parent * s_child / t_child
    (`scales[child]`: the inside multipliers; `outside`: the multipliers of its D)."""
    if not (inside_rescaled[child] or outside_rescaled):
        source[child] = parent_row
        return
    parent, own = coefficients[parent_row], coefficients[child]
    for p in range(own.size):
        value = parent[p]
        if inside_rescaled[child]:
            value *= scales[child, p]
        if outside_rescaled:
            value /= outside[p]
        own[p] = value
    source[child] = child


@kernel
def _root_gradient(
    tips, scratch, grad_transitions, grad_frequencies, grad_weights, transitions, root_rows,
    root_edges, frequencies, weights, pattern_weights, first_row, messages, coefficients,
    source, scales, inside_rescaled, maximum, rescale_range,
):  # fmt: skip
    """Root stage of one tree (`messages` hold its three root messages from the likelihood,
    the last row of `coefficients` n_p / site(p)): gradients of the three root edges (U of
    root child k: pi times the other two messages), of pi and of the category weights
    (`[4]`, `[C]`), and D for internal root children, written over their inside vectors in
    the pass that reads them for the edge gradient, with their coefficient rows."""
    n_categories, _, n_patterns = messages.shape[1:]
    root_row = coefficients.shape[0] - 1
    coefficient = coefficients[root_row]
    for c in range(n_categories):
        for i in range(4):
            m0, m1, m2 = messages[0, c, i], messages[1, c, i], messages[2, c, i]
            total = 0.0
            for p in range(n_patterns):
                total += coefficient[p] * m0[p] * m1[p] * m2[p]
            grad_frequencies[i] += weights[c] * total
            grad_weights[c] += frequencies[i] * total
    for k in range(3):
        first, second = messages[1 if k == 0 else 0], messages[1 if k == 2 else 2]
        below = _vector(tips, scratch, root_rows[k], first_row)
        internal = root_rows[k] >= tips.shape[0]
        rescaled = _edge_gradient(
            transitions[root_edges[k]], first, second, frequencies, below, coefficient, weights,
            grad_transitions[root_edges[k]], maximum, internal, rescale_range,
        )  # fmt: skip
        if rescaled:
            _rescale(below, maximum, pattern_weights)
        if internal:
            _child_coefficient(
                coefficients, source, root_row, root_rows[k] - first_row, scales,
                inside_rescaled, maximum, rescaled,
            )  # fmt: skip


@kernel
def _general_child_gradients(
    matrix0, matrix1, tips, scratch, first_row, row0, row1, down, coefficient, weights,
    out0, out1, messages, ones, maximum, rescale_range,
):  # fmt: skip
    """The gradients of both child edges of an internal node (rows row0, row1; D_u in
    `down`): U(child s) = D_u * message of the other child. The two messages first, then per
    child its edge gradient and, for an internal child, its outside vector written over its
    inside vector in the same pass. Returns, per child, whether that vector needs rescaling."""
    n_taxa = tips.shape[0]
    _message(matrix0, _vector(tips, scratch, row0, first_row), messages[0])
    _message(matrix1, _vector(tips, scratch, row1, first_row), messages[1])
    rescale0 = _edge_gradient(
        matrix0, down, messages[1], ones, _vector(tips, scratch, row0, first_row), coefficient,
        weights, out0, maximum, row0 >= n_taxa, rescale_range,
    )  # fmt: skip
    rescale1 = _edge_gradient(
        matrix1, down, messages[0], ones, _vector(tips, scratch, row1, first_row), coefficient,
        weights, out1, maximum, row1 >= n_taxa, rescale_range,
    )  # fmt: skip
    return rescale0, rescale1


@kernel
def _jukes_cantor_child_gradients(
    matrix0, matrix1, tips, scratch, first_row, row0, row1, down, coefficient, weights,
    out0, out1, messages, ones, maximum, rescale_range,
):  # fmt: skip
    """_general_child_gradients' results in one pass (jukes_cantor.child_gradients), which
    writes the outside vectors of internal children over the vectors it reads."""
    n_taxa = tips.shape[0]
    return jukes_cantor.child_gradients(
        matrix0, _vector(tips, scratch, row0, first_row),
        matrix1, _vector(tips, scratch, row1, first_row),
        down, coefficient, weights, out0, out1, row0 >= n_taxa, row1 >= n_taxa, rescale_range,
    )  # fmt: skip


_child_gradients = _by_matrix_kind(_general_child_gradients, _jukes_cantor_child_gradients, 0)


@kernel
def _node_gradient(
    tips, scratch, grad_transitions, transitions, j, child_rows, child_edges, weights,
    pattern_weights, first_row, messages, ones, coefficients, source, scales, inside_rescaled,
    maximum, rescale_range,
):  # fmt: skip
    """Internal node in scratch row j, whose row holds D_u: the edge gradients of both
    children, and D for internal children, written over their inside vectors (rescaled where
    out of range), with their coefficient rows."""
    n_taxa = tips.shape[0]
    k = first_row - n_taxa + j
    down = scratch[j]
    row0, row1 = child_rows[k, 0], child_rows[k, 1]
    edge0, edge1 = child_edges[k, 0], child_edges[k, 1]
    coefficient = coefficients[source[j]]
    rescale = _child_gradients(
        transitions[edge0], transitions[edge1], tips, scratch, first_row, row0, row1, down,
        coefficient, weights, grad_transitions[edge0], grad_transitions[edge1], messages, ones,
        maximum, rescale_range,
    )  # fmt: skip
    for s in range(2):
        row = child_rows[k, s]
        if row >= n_taxa:
            if rescale[s]:
                _rescale(scratch[row - first_row], maximum, pattern_weights)
            _child_coefficient(
                coefficients, source, source[j], row - first_row, scales, inside_rescaled,
                maximum, rescale[s],
            )  # fmt: skip


@kernel_in_parallel
def log_likelihoods(
    tips, scratch, transitions, child_rows, child_edges, root_child_rows, root_child_edges,
    frequencies, weights, pattern_weights, log_likelihood, with_gradient, grad_transitions,
    grad_frequencies, grad_weights, rescale_range,
):  # fmt: skip
    """log_likelihood `[B]`; with_gradient: also d log L_b / d (transitions of tree b, pi, w)
    into grad_transitions (shaped as transitions), grad_frequencies `[B, 4]`, grad_weights
    `[B, C]` (zero-filled by the caller). Block t of the trees uses scratch[t]. A vector is
    rescaled when some pattern's largest entry leaves `rescale_range`, a pair (below,
    above); where does not change the results."""
    n_blocks, n_inner, n_categories, _, n_patterns = scratch.shape
    n_taxa, n_trees = tips.shape[0], root_child_rows.shape[0]
    for block in prange(n_blocks):
        local = scratch[block]
        messages = np.empty((3, n_categories, 4, n_patterns))
        ones = np.ones(4)
        maximum = np.empty(n_patterns)
        scales = np.empty((n_inner, n_patterns))  # inside multipliers of rescaled vectors
        inside_rescaled = np.empty(n_inner, dtype=np.bool_)
        coefficients = np.empty((n_inner + 1, n_patterns))  # last row: the root's
        source = np.empty(n_inner, dtype=np.int64)  # each node's row of coefficients
        for b in range(block * n_trees // n_blocks, (block + 1) * n_trees // n_blocks):
            first_row = n_taxa + b * n_inner
            log_likelihood[b] = _tree_log_likelihood(
                tips, local, transitions, child_rows, child_edges, root_child_rows[b],
                root_child_edges[b], frequencies, weights, pattern_weights, first_row,
                messages, maximum, rescale_range, scales, inside_rescaled,
            )  # fmt: skip
            if not with_gradient:
                continue
            _coefficient(maximum, pattern_weights, coefficients[n_inner])  # maximum: site
            _root_gradient(
                tips, local, grad_transitions, grad_frequencies[b], grad_weights[b],
                transitions, root_child_rows[b], root_child_edges[b], frequencies, weights,
                pattern_weights, first_row, messages, coefficients, source, scales,
                inside_rescaled, maximum, rescale_range,
            )  # fmt: skip
            for j in range(n_inner - 1, -1, -1):
                _node_gradient(
                    tips, local, grad_transitions, transitions, j, child_rows, child_edges,
                    weights, pattern_weights, first_row, messages, ones, coefficients, source,
                    scales, inside_rescaled, maximum, rescale_range,
                )  # fmt: skip
