"""Parameter tables handed to the compiled (numba) loops of the variational families, and
the compile options of those loops that take log-probabilities (numpy's error model: a log
of zero is -inf, not an exception)."""

from __future__ import annotations

import numba
import numpy as np
import torch

compiled = numba.njit(cache=True, nogil=True, error_model="numpy")
compiled_in_parallel = numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")


def as_float64_array(table: torch.Tensor) -> np.ndarray:
    """A C-contiguous float64 numpy array of a (detached) tensor: a view when it already is
    one, so the loops read the parameters in place."""
    return np.ascontiguousarray(table.detach().numpy(), dtype=np.float64)
