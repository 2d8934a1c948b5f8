"""The pruning kernel's per-edge loops for Jukes-Cantor transition matrices.

Under JC69 every transition matrix is P = a I + b J (J all ones; a = exp(-4/3 r t),
b = (1 - a) / 4), passed as its pair (a, b) per rate category, `[C, 2]`. A message is then
(P x)_i = a x_i + b sum_j x_j, 4 multiply-adds and a 4-term sum per pattern instead of a
4 x 4 product's 16, and the gradient with respect to P, G_ij = w_c sum_p k_p U_i L_j
(vbpi_mix.phylo.likelihood), reduces to two numbers:

    d log L / d a = sum_i G_ii = w_c sum_p k_p sum_i U_i L_i,
    d log L / d b = sum_ij G_ij = w_c sum_p k_p (sum_i U_i) (sum_j L_j).

The loops mirror the general ones in vbpi_mix.phylo.pruning_kernels (same arguments, same
range test) and are picked by the shape of the matrices; with two numbers a matrix instead of
sixteen they do less arithmetic per node (benchmarks/results/kernel.md). `child_gradients`
has no general twin: it does in one pass what the
general loops do in four for a node's two child edges.
"""

from __future__ import annotations

from vbpi_mix.compile_presets import kernel, kernel_into_caller
from vbpi_mix.phylo.pattern_loops import keep_pattern, out_of_range, state_rows


@kernel
def message(matrix, partial, out):
    """out[c] = P_c partial[c] with P_c = a I + b J (no range test, as the general one)."""
    for c in range(partial.shape[0]):
        x0, x1, x2, x3 = state_rows(partial, c)
        o0, o1, o2, o3 = state_rows(out, c)
        a, b = matrix[c, 0], matrix[c, 1]
        for p in range(out.shape[2]):
            shared = b * (x0[p] + x1[p] + x2[p] + x3[p])
            o0[p], o1[p] = a * x0[p] + shared, a * x1[p] + shared
            o2[p], o3[p] = a * x2[p] + shared, a * x3[p] + shared


@kernel
def product_of_messages(matrix1, partial1, matrix2, partial2, out, maximum, rescale_range):
    """out = (P1 partial1) * (P2 partial2) per category, its per-pattern maximum, and
    whether some maximum lies outside `rescale_range`."""
    maximum[:] = 0.0
    out_of_range = 0
    for c in range(partial1.shape[0]):
        x0, x1, x2, x3 = state_rows(partial1, c)
        y0, y1, y2, y3 = state_rows(partial2, c)
        o0, o1, o2, o3 = state_rows(out, c)
        a1, b1, a2, b2 = matrix1[c, 0], matrix1[c, 1], matrix2[c, 0], matrix2[c, 1]
        out_of_range = 0  # only the last category's pass sees the final maxima
        for p in range(maximum.size):
            s = b1 * (x0[p] + x1[p] + x2[p] + x3[p])
            t = b2 * (y0[p] + y1[p] + y2[p] + y3[p])
            r0 = (a1 * x0[p] + s) * (a2 * y0[p] + t)
            r1 = (a1 * x1[p] + s) * (a2 * y1[p] + t)
            r2 = (a1 * x2[p] + s) * (a2 * y2[p] + t)
            r3 = (a1 * x3[p] + s) * (a2 * y3[p] + t)
            out_of_range += keep_pattern(o0, o1, o2, o3, p, r0, r1, r2, r3, maximum, rescale_range)
    return out_of_range > 0


@kernel
def edge_gradient(
    matrix, first, second, factors, lower, coefficient, weights, out, maximum, push_down,
    rescale_range,
):  # fmt: skip
    """out[c] = (d log L / d a, d log L / d b) of the edge above `lower`, with the upper
    vector U = f * first * second: w_c sum_p k_p (sum_i U_i L_i, sum_i U_i sum_j L_j).

    With push_down, also the outside vector below the edge, P^T U = a U + b sum_i U_i (P is
    symmetric), written over `lower` in the same pass, and whether some pattern's maximum
    lies outside `rescale_range` (the caller rescales it); False otherwise."""
    maximum[:] = 0.0
    out_of_range = 0
    f0, f1, f2, f3 = factors[0], factors[1], factors[2], factors[3]
    for c in range(first.shape[0]):
        u0, u1, u2, u3 = state_rows(first, c)
        v0, v1, v2, v3 = state_rows(second, c)
        l0, l1, l2, l3 = state_rows(lower, c)
        a, b = matrix[c, 0], matrix[c, 1]
        diagonal = everything = 0.0
        out_of_range = 0  # only the last category's pass sees the final maxima
        for p in range(coefficient.size):
            x0, x1 = f0 * u0[p] * v0[p], f1 * u1[p] * v1[p]
            x2, x3 = f2 * u2[p] * v2[p], f3 * u3[p] * v3[p]
            k, total = coefficient[p], x0 + x1 + x2 + x3
            diagonal += k * (x0 * l0[p] + x1 * l1[p] + x2 * l2[p] + x3 * l3[p])
            everything += k * total * (l0[p] + l1[p] + l2[p] + l3[p])
            if push_down:  # loop-invariant: compiled as two loops
                shared = b * total
                r0, r1, r2, r3 = a * x0 + shared, a * x1 + shared, a * x2 + shared, a * x3 + shared
                out_of_range += keep_pattern(
                    l0, l1, l2, l3, p, r0, r1, r2, r3, maximum, rescale_range
                )
        out[c, 0], out[c, 1] = weights[c] * diagonal, weights[c] * everything
    return out_of_range > 0


@kernel
def _push_down(a, b, u0, u1, u2, u3, out0, out1, out2, out3, p, rescale_range):
    """Store pattern p of the outside vector P^T U = a U + b sum_i U_i below an edge (P is
    symmetric) in the state rows out0..out3; 1 when its largest entry lies outside
    `rescale_range`, else 0 (inlined by LLVM; the loops still vectorise)."""
    shared = b * (u0 + u1 + u2 + u3)
    r0, r1, r2, r3 = a * u0 + shared, a * u1 + shared, a * u2 + shared, a * u3 + shared
    out0[p], out1[p], out2[p], out3[p] = r0, r1, r2, r3
    return out_of_range(max(max(r0, r1), max(r2, r3)), rescale_range)


def _child_gradients_loop(write0: bool, write1: bool):
    """The compiled pass of `child_gradients` for children whose outside vectors are written
    (write_s: child s is internal) or not (a tip's is never needed), the flags constants of
    each loop: flags passed as arguments and tested inside the loop kept LLVM from
    vectorising it, and a tip's partials are read in place rather than copied."""

    @kernel_into_caller
    def loop(
        matrix0, lower0, matrix1, lower1, down, coefficient, weights, out0, out1, rescale_range
    ):  # fmt: skip
        out_of_range0 = out_of_range1 = 0
        for c in range(down.shape[0]):
            x0, x1, x2, x3 = state_rows(lower0, c)
            y0, y1, y2, y3 = state_rows(lower1, c)
            d0, d1, d2, d3 = state_rows(down, c)
            a0, b0, a1, b1 = matrix0[c, 0], matrix0[c, 1], matrix1[c, 0], matrix1[c, 1]
            diagonal0 = everything0 = diagonal1 = everything1 = 0.0
            for p in range(coefficient.size):
                sum0, sum1 = x0[p] + x1[p] + x2[p] + x3[p], y0[p] + y1[p] + y2[p] + y3[p]
                shared0, shared1 = b0 * sum0, b1 * sum1
                # U_0 = D_u * (P_1 L_1), U_1 = D_u * (P_0 L_0)
                u0, u1 = d0[p] * (a1 * y0[p] + shared1), d1[p] * (a1 * y1[p] + shared1)
                u2, u3 = d2[p] * (a1 * y2[p] + shared1), d3[p] * (a1 * y3[p] + shared1)
                v0, v1 = d0[p] * (a0 * x0[p] + shared0), d1[p] * (a0 * x1[p] + shared0)
                v2, v3 = d2[p] * (a0 * x2[p] + shared0), d3[p] * (a0 * x3[p] + shared0)
                k, total_u, total_v = coefficient[p], u0 + u1 + u2 + u3, v0 + v1 + v2 + v3
                diagonal0 += k * (u0 * x0[p] + u1 * x1[p] + u2 * x2[p] + u3 * x3[p])
                everything0 += k * total_u * sum0
                diagonal1 += k * (v0 * y0[p] + v1 * y1[p] + v2 * y2[p] + v3 * y3[p])
                everything1 += k * total_v * sum1
                if write0:
                    out_of_range0 += _push_down(
                        a0, b0, u0, u1, u2, u3, x0, x1, x2, x3, p, rescale_range
                    )
                if write1:
                    out_of_range1 += _push_down(
                        a1, b1, v0, v1, v2, v3, y0, y1, y2, y3, p, rescale_range
                    )
            out0[c, 0], out0[c, 1] = weights[c] * diagonal0, weights[c] * everything0
            out1[c, 0], out1[c, 1] = weights[c] * diagonal1, weights[c] * everything1
        return out_of_range0 > 0, out_of_range1 > 0

    return loop


_both_internal = _child_gradients_loop(True, True)
_first_internal = _child_gradients_loop(True, False)
_second_internal = _child_gradients_loop(False, True)
_both_tips = _child_gradients_loop(False, False)


@kernel_into_caller
def child_gradients(
    matrix0, lower0, matrix1, lower1, down, coefficient, weights, out0, out1, internal0, internal1,
    rescale_range,
):  # fmt: skip
    """Both child edges of an internal node u in one pass: out_s[c] = (d log L / d a,
    d log L / d b) of the edge to child s, whose upper vector is U_s = D_u * (message of the
    other child), and, for an internal child (internal_s), the outside vector below it,
    P_s^T U_s, written over lower_s; a tip's partials are only read. Returns, per child,
    whether some category's per-pattern maximum of that vector lies outside `rescale_range`
    (the caller rescales it; a conservative test when there are several categories; False
    for a tip).

    The messages are formed on the fly and never stored: the separate passes (two messages,
    then an edge gradient and outside vector per child, as for the general matrices) read
    and wrote 48 state rows per node, this one 20. Each outside vector is written over the
    vector it is computed from, and the range test keeps no per-pattern maxima: with separate
    output arrays or maxima arrays LLVM left the loop scalar.
    """
    if internal0 and internal1:
        return _both_internal(
            matrix0, lower0, matrix1, lower1, down, coefficient, weights, out0, out1,
            rescale_range,
        )  # fmt: skip
    if internal0:
        return _first_internal(
            matrix0, lower0, matrix1, lower1, down, coefficient, weights, out0, out1,
            rescale_range,
        )  # fmt: skip
    if internal1:
        return _second_internal(
            matrix0, lower0, matrix1, lower1, down, coefficient, weights, out0, out1,
            rescale_range,
        )  # fmt: skip
    return _both_tips(
        matrix0, lower0, matrix1, lower1, down, coefficient, weights, out0, out1, rescale_range
    )
