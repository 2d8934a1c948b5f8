"""Compile options and the rescaling range shared by the pruning kernels
(vbpi_mix.phylo.pruning_kernels, vbpi_mix.phylo.jukes_cantor_kernels).

numba freezes these constants into the cached machine code of the modules that use them and
checks only those modules' own files for changes: after editing a value here, delete their
`__pycache__` (or touch them) so that they are compiled again."""

from __future__ import annotations

import numba
import numpy as np

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
compiled = numba.njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
# Compiled into each caller (numba inlining) rather than called as a separate function: the
# fused child-gradient loop, called, ran slower in a kernel loaded from numba's cache than in
# a freshly compiled one; inlined, it runs as fast either way.
compiled_into_caller = numba.njit(
    cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy", inline="always"
)
compiled_in_parallel = numba.njit(
    cache=True, nogil=True, parallel=True, fastmath=_FASTMATH, error_model="numpy"
)


@compiled
def keep_pattern(out0, out1, out2, out3, p, r0, r1, r2, r3, maximum):
    """Store the four states (r0..r3) of pattern p, raise maximum[p] to their largest, and
    return 1 when that maximum lies outside [RESCALE_BELOW, RESCALE_ABOVE], else 0: the
    common tail of every loop that writes a vector (inlined by LLVM; the loops still
    vectorise)."""
    out0[p], out1[p], out2[p], out3[p] = r0, r1, r2, r3
    largest = max(maximum[p], max(max(r0, r1), max(r2, r3)))
    maximum[p] = largest
    return out_of_range(largest)


@compiled
def out_of_range(largest):
    """1 when a pattern's largest entry lies outside [RESCALE_BELOW, RESCALE_ABOVE], else 0."""
    return (largest < RESCALE_BELOW) | (largest > RESCALE_ABOVE)


@compiled
def state_rows(vector, c):
    """The four state rows of rate category c of a `[C, 4, P]` vector, as one-dimensional
    views for the pattern loops (indexing the 3-d array inside a loop keeps LLVM from
    vectorising it)."""
    return vector[c, 0], vector[c, 1], vector[c, 2], vector[c, 3]
