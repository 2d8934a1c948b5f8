"""Selecting mixture components' rows of stacked parameters, and reading them at ids."""

from __future__ import annotations

import numpy as np
import torch


def component_rows(components: np.ndarray | None) -> slice | torch.Tensor:
    """Index of the chosen components' parameter rows (every row for None)."""
    return slice(None) if components is None else torch.as_tensor(np.asarray(components))


def gather_columns(table: torch.Tensor, ids: np.ndarray | torch.Tensor, missing: float):
    """`table [A, K]` read at column ids (any shape; -1 reads `missing`): `[A, *ids.shape]`.

    One index_select over the flattened ids: its backward is an index_add, measured 1.5x
    faster than the accumulating index_put behind advanced indexing (A=10, 100 DS1 trees).
    """
    ids = torch.as_tensor(ids)
    flat = ids.reshape(-1)
    flat = torch.where(flat < 0, table.shape[1], flat)
    padded = torch.cat([table, table.new_full((table.shape[0], 1), missing)], dim=-1)
    return padded.index_select(1, flat).view(table.shape[0], *ids.shape)
