"""Parameter tables handed to the compiled (numba) loops of the variational families."""

from __future__ import annotations

import numpy as np
import torch


def as_float64_array(table: torch.Tensor) -> np.ndarray:
    """A C-contiguous float64 numpy array of a (detached) tensor: a view when it already is
    one, so the loops read the parameters in place."""
    return np.ascontiguousarray(table.detach().numpy(), dtype=np.float64)
