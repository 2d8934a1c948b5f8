"""Selecting mixture components' rows of stacked parameters."""

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
