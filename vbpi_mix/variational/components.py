"""Selecting mixture components' rows of stacked parameters."""

from __future__ import annotations

import numpy as np
import torch


def component_rows(components: np.ndarray | None) -> slice | torch.Tensor:
    """Index of the chosen components' parameter rows (every row for None)."""
    return slice(None) if components is None else torch.as_tensor(np.asarray(components))
