"""The pattern-loop helpers shared by the pruning kernels (vbpi_mix.phylo.pruning_kernels,
vbpi_mix.phylo.jukes_cantor_kernels), and the rescaling range they are called with.

The range is an argument of the kernels, not a constant compiled into them: numba would
freeze a constant from this module into their cached code and miss a change to it."""

from __future__ import annotations

import numpy as np

from vbpi_mix.compile_presets import kernel

TINY = np.finfo(np.float64).tiny
# A node's vector is rescaled only when some pattern's largest entry leaves [2^-256, 2^256].
# Vectors left as they are keep every pattern's maximum at 2^-256 or more, so a product of two
# (at the root three) messages starts from 2^-768 times the transition probabilities along
# the way (a message's largest entry is at least P_ii(t) >= pi_i times its vector's), above
# float64's smallest normal number, 2^-1022, for any base frequency over 2^-80; at most
# 2^768 above. Rescaling is the kernels' slow path (every node of the tree then works out its
# own site likelihood in the outside pass), so the range is as wide as that allows: a
# 128-taxon alignment whose sites average -154 nats (2^-222) then needs no rescaling.
RESCALE_RANGE = (2.0**-256, 2.0**256)


@kernel
def keep_pattern(out0, out1, out2, out3, p, r0, r1, r2, r3, maximum, rescale_range):
    """Store the four states (r0..r3) of pattern p, raise maximum[p] to their largest, and
    return 1 when that maximum lies outside `rescale_range`, else 0: the common tail of every
    loop that writes a vector (inlined by LLVM; the loops still vectorise)."""
    out0[p], out1[p], out2[p], out3[p] = r0, r1, r2, r3
    largest = max(maximum[p], max(max(r0, r1), max(r2, r3)))
    maximum[p] = largest
    return out_of_range(largest, rescale_range)


@kernel
def out_of_range(largest, rescale_range):
    """1 when a pattern's largest entry lies outside `rescale_range` (below, above), else 0."""
    return (largest < rescale_range[0]) | (largest > rescale_range[1])


@kernel
def state_rows(vector, c):
    """The four state rows of rate category c of a `[C, 4, P]` vector, as one-dimensional
    views for the pattern loops (indexing the 3-d array inside a loop keeps LLVM from
    vectorising it)."""
    return vector[c, 0], vector[c, 1], vector[c, 2], vector[c, 3]
