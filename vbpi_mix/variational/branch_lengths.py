"""Diagonal log-normal branch-length model with split or PSP features (Zhang & Matsen 2019),
stacked over A mixture components.

For edge e of a topology, with features F(e) (its split, and with PSP also the subsplit of
each side next to e, keyed by (side, subsplit) as the root-case SBN entry):

    mu_e = -2 + sum_{f in F(e)} m[f],      log sigma_e = min(sum_{f in F(e)} s[f], log sigma_max)
    log b_e = mu_e + sigma_e eps_e,  eps_e ~ N(0, 1)
    log q(b | tau) = sum_e [ log N(log b_e; mu_e, sigma_e) - log b_e ]

Features do not depend on where the tree's encoding is rooted. The cap sigma_max (none by
default) bounds the tails: a multi-sample bound barely feels a component whose log-normal
is far wider than any posterior (the particles out in its tail get no weight), yet such a
tail costs the ELBO E[-lambda b] = -lambda exp(mu + sigma^2 / 2) nats under the exponential
branch prior. Posteriors of log b rarely spread wider than the prior's own, whose standard
deviation is pi / sqrt(6) = 1.28 whatever its rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from vbpi_mix.compile_presets import compiled
from vbpi_mix.trees.subsplits import SubsplitIndex, TopologyTables
from vbpi_mix.variational.branch_draws import draw_and_score
from vbpi_mix.variational.parameter_tables import component_rows

BranchFeatures = Literal["split", "psp"]
MEAN_SHIFT = -2.0  # as the reference implementation: b ~ exp(-2) ~ 0.14 at the start
MIXTURE_MAX_STD = 2.0  # the default cap for a mixture's components (none for A = 1)


def default_max_std(n_components: int) -> float | None:
    """The default cap on sigma: MIXTURE_MAX_STD for a mixture, none for plain VBPI (the
    published family). A mixture's components, pushed apart by the shared denominators of
    their weights, grew sigmas of 3-11 on some edges without it, and ELBOs millions of nats
    below their MLLs (benchmarks/results/mixtures_equal_time/)."""
    return MIXTURE_MAX_STD if n_components > 1 else None


@dataclass(frozen=True)
class EdgeFeatures:
    """Feature indices per edge: `splits [B, E]` (root-split ids) and `psp [B, E, 2]`
    (entry ids of the lower and upper side's subsplit; -1 where there is none)."""

    splits: np.ndarray
    psp: np.ndarray


@compiled
def _psp_ids(candidate_ids: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """`[B, E, 2]` entry ids of the subsplits on both ends of every edge (the edge above node
    e): candidate 3k + 0 of each end node, k its slot towards the other end (slot 2, the
    parent, for the lower end); -1 below a tip."""
    n_trees, n_inner = candidate_ids.shape[:2]
    n_taxa, root = n_inner + 2, n_inner - 1
    psp = np.empty((n_trees, 2 * n_taxa - 3, 2), dtype=np.int64)
    for b in range(n_trees):
        for v in range(n_inner):
            for j in range(3 if v == root else 2):
                child = neighbours[b, v, j]
                psp[b, child, 0] = candidate_ids[b, child - n_taxa, 6] if child >= n_taxa else -1
                psp[b, child, 1] = candidate_ids[b, v, 3 * j]
    return psp


def edge_features(tables: TopologyTables) -> EdgeFeatures:
    """Features of every edge of a batch from its scoring tables: the root split of the edge
    and the subsplits of both its ends when the tree is rooted on it."""
    return EdgeFeatures(tables.root_ids, _psp_ids(tables.candidate_ids, tables.neighbours))


def _feature_sums(
    split_table: torch.Tensor, psp_table: torch.Tensor, splits: np.ndarray, psp: np.ndarray
) -> torch.Tensor:
    """split_table[a, s] + sum_v psp_table[a, f_v] `[A, B, E]` for every edge, an id of -1
    adding nothing (it reads a zero column appended to each table); plain torch indexing,
    differentiable. Training draws and scores through vbpi_mix.variational.branch_draws;
    this serves the export's branch-length summaries (and the tests' reference density)."""

    def padded(table: torch.Tensor) -> torch.Tensor:
        return torch.cat([table, table.new_zeros((table.shape[0], 1))], dim=-1)

    split_ids, psp_ids = torch.as_tensor(splits), torch.as_tensor(psp)
    return padded(split_table)[:, split_ids] + padded(psp_table)[:, psp_ids].sum(dim=-1)


class BranchLengthModel(nn.Module):
    """Log-normal branch lengths given the topology; `rsample` is reparameterised."""

    def __init__(
        self,
        index: SubsplitIndex,
        n_components: int = 1,
        features: BranchFeatures = "psp",
        perturbation: float = 0.0,
        generator: torch.Generator | None = None,
        max_std: float | None = None,
    ) -> None:
        super().__init__()
        if features not in ("split", "psp"):
            raise ValueError(f"unknown branch features {features!r}")
        self.features = features
        self.max_log_std = math.inf if max_std is None else math.log(max_std)

        def parameter(size: int) -> nn.Parameter:
            noise = torch.randn(n_components, size, generator=generator, dtype=torch.float64)
            return nn.Parameter(perturbation * noise)

        self.split_mean = parameter(index.n_root_splits)
        self.split_log_std = parameter(index.n_root_splits)
        if features == "psp":
            self.psp_mean = parameter(index.n_entries)
            self.psp_log_std = parameter(index.n_entries)

    def _tables(self, components: np.ndarray | None) -> tuple[torch.Tensor, ...]:
        """The chosen components' rows of the split mean and log-std `[A, R]` and of the PSP
        mean and log-std `[A, M]` (empty `[A, 0]` with split features)."""
        split_mean = component_rows(self.split_mean, components)
        split_log_std = component_rows(self.split_log_std, components)
        if self.features == "psp":
            psp_mean = component_rows(self.psp_mean, components)
            psp_log_std = component_rows(self.psp_log_std, components)
        else:
            psp_mean = psp_log_std = split_mean[:, :0]
        return split_mean, split_log_std, psp_mean, psp_log_std

    def _psp_ids(self, edges: EdgeFeatures) -> np.ndarray:
        """The edges' PSP ids `[B, E, 2]` (none, `[B, E, 0]`, with split features)."""
        return edges.psp if self.features == "psp" else edges.psp[..., :0]

    def mean_and_log_std(
        self, edges: EdgeFeatures, components: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """mu and log sigma `[A, B, E]` of every edge under every component (or under the
        given components only)."""
        split_mean, split_log_std, psp_mean, psp_log_std = self._tables(components)
        psp = self._psp_ids(edges)
        mean = MEAN_SHIFT + _feature_sums(split_mean, psp_mean, edges.splits, psp)
        log_std = _feature_sums(split_log_std, psp_log_std, edges.splits, psp)
        return mean, log_std.clamp(max=self.max_log_std)

    def rsample_and_log_prob(
        self,
        edges: EdgeFeatures,
        rows: np.ndarray,
        components: np.ndarray | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`rsample`'s branch lengths `[B, E]` (tree b from row rows[b] of the given
        components, or of all) and their log q_a(b | tau) under those components `[A, B]`, in
        one compiled pass (vbpi_mix.variational.branch_draws); the same noise as `rsample`."""
        noise = torch.randn(edges.splits.shape, generator=generator, dtype=torch.float64)
        return draw_and_score(
            self._tables(components), MEAN_SHIFT, self.max_log_std, edges.splits,
            self._psp_ids(edges), rows, noise,
        )  # fmt: skip

    def rsample(
        self,
        edges: EdgeFeatures,
        components: np.ndarray,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Branch lengths `[B, E]`, tree b drawn from component `components[b]`,
        reparameterised."""
        return self.rsample_and_log_prob(edges, components, None, generator)[0]
