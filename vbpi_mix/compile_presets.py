"""The numba compile presets of every compiled loop in the package, in one place.

All cache their machine code (`cache=True`: compiled once per machine, then loaded) and
release the GIL (`nogil=True`). Divisions and logs follow numpy's rules (`error_model=
"numpy"`): a log of zero is -inf and a zero divisor gives inf or NaN, as in the numpy code
they replace, rather than an exception inside a loop.

The likelihood kernels (`kernel*`) also allow reassociation and contraction, which let their
pattern loops vectorise; no-NaN/no-inf assumptions are left out, so a zero site likelihood
still gives -inf (and an infinite gradient) rather than undefined behaviour.

numba checks only a function's own file when it decides whether its cached code is stale,
so nothing that a compiled function reads as a global may live in another module and be
expected to change: such values are passed as arguments (e.g. the rescaling range of
vbpi_mix.phylo.pruning_kernels).
"""

from __future__ import annotations

import numba

compiled = numba.njit(cache=True, nogil=True, error_model="numpy")
compiled_in_parallel = numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
# Small helpers called inside compiled loops (e.g. the clade-word operations), compiled into
# each caller (numba inlining): called as separate functions, their arguments' reference counts
# and the calls themselves cost more than the few word operations they do.
compiled_into_caller = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")

_KERNEL_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
kernel = numba.njit(cache=True, nogil=True, fastmath=_KERNEL_FASTMATH, error_model="numpy")
kernel_in_parallel = numba.njit(
    cache=True, nogil=True, parallel=True, fastmath=_KERNEL_FASTMATH, error_model="numpy"
)
# Compiled into each caller (numba inlining) rather than called as a separate function: the
# fused child-gradient loop, called, ran slower in a kernel loaded from numba's cache than in
# a freshly compiled one; inlined, it runs as fast either way.
kernel_into_caller = numba.njit(
    cache=True, nogil=True, fastmath=_KERNEL_FASTMATH, error_model="numpy", inline="always"
)
