"""The stacked parameter tables of the variational families (`[A, ...]`, one row per
mixture component): the rows of chosen components for autograd, and float64 views for the
compiled (numba) loops."""

from __future__ import annotations

import numpy as np
import torch


def component_rows(table: torch.Tensor, components: np.ndarray | None) -> torch.Tensor:
    """The chosen components' rows of a stacked parameter `[A, ...]`, or the parameter itself
    for None (a full slice would hand autograd a zero-filled copy of the table's gradient to
    fill). index_select's backward is an index_add."""
    if components is None:
        return table
    return table.index_select(0, torch.as_tensor(np.asarray(components, dtype=np.int64)))


def as_float64_array(table: torch.Tensor) -> np.ndarray:
    """A C-contiguous float64 numpy array of a (detached) tensor: a view when it already is
    one, so the loops read the parameters in place."""
    return np.ascontiguousarray(table.detach().numpy(), dtype=np.float64)
