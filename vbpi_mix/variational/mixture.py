"""Uniform mixture of A VBPI components (Kviman et al. 2023): each component an SBN and a
branch-length model with its own parameters, stacked along a leading component dimension.

    q(tau, b) = (1/A) sum_a SBN_a(tau) LogNormal_a(b | tau)

`sample_and_score` draws a batch of particles and scores it under every component in one
call, `[n, A]`. A = 1 is plain VBPI. Components start from different seeded perturbations,
or they never separate; or, for a split start, as copies of one trained component
(`component_copy`, `tie_to`: a mixture of identical components is that component's
distribution).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vbpi_mix.trees.subsplits import SubsplitIndex, TopologyTables
from vbpi_mix.variational.branch_lengths import (
    BranchFeatures,
    BranchLengthModel,
    EdgeFeatures,
    edge_features,
)
from vbpi_mix.variational.sbn import SBN, SBNInit

DEFAULT_PERTURBATION = 0.1


@dataclass(frozen=True)
class Particles:
    """n particles: parent arrays `[n, 2N-3]`, scoring tables, edge features, branch lengths
    `[n, E]` (reparameterised), and the component that drew each `[n]`."""

    parents: np.ndarray
    tables: TopologyTables
    edges: EdgeFeatures
    branch_lengths: torch.Tensor
    components: np.ndarray


class Mixture(nn.Module):
    """The variational family; `sample` draws from chosen components, `sample_and_score`
    also scores the draw under every (or the chosen) component."""

    def __init__(
        self,
        index: SubsplitIndex,
        n_components: int = 1,
        branch_features: BranchFeatures = "psp",
        init: SBNInit = "uniform",
        perturbation: float | None = None,
        seed: int = 0,
        max_branch_std: float | None = None,
    ) -> None:
        super().__init__()
        if perturbation is None:
            perturbation = DEFAULT_PERTURBATION if n_components > 1 else 0.0
        generator = torch.Generator().manual_seed(seed)
        self.sbn = SBN(index, n_components, init, perturbation, generator)
        self.branches = BranchLengthModel(
            index, n_components, branch_features, perturbation, generator, max_branch_std
        )

    @property
    def n_components(self) -> int:
        return self.sbn.n_components

    @torch.no_grad()
    def component_copy(self, source: int) -> Mixture:
        """A one-component family equal to component `source` (every parameter has the
        component as its leading dimension), with parameters of its own: what the lone phase
        of a split start trains, at the cost of plain VBPI."""
        lone = copy.deepcopy(self)
        for module in lone.modules():
            for name, parameter in list(module.named_parameters(recurse=False)):
                setattr(module, name, nn.Parameter(parameter.detach()[source : source + 1].clone()))
        return lone

    @torch.no_grad()
    def tie_to(self, lone: Mixture) -> None:
        """Make every component a copy of `lone`'s single component."""
        for parameter, source in zip(self.parameters(), lone.parameters(), strict=True):
            parameter.copy_(source.expand_as(parameter))

    def sample(self, components: np.ndarray, generator: torch.Generator | None = None) -> Particles:
        """One particle per entry of `components`; branch lengths keep their gradient path."""
        topologies = self.sbn.sample(components, generator)
        edges = edge_features(topologies.tables)
        lengths = self.branches.rsample(edges, components, generator)
        return Particles(
            topologies.parents, topologies.tables, edges, lengths, np.asarray(components)
        )

    def select(self, indices: np.ndarray) -> SubMixture:
        """The uniform mixture of the components `indices` alone (see SubMixture)."""
        return SubMixture(self, indices)

    def sample_and_score(
        self, components: np.ndarray, generator: torch.Generator | None = None
    ) -> tuple[Particles, torch.Tensor, torch.Tensor]:
        """One particle per entry of `components`, with log q_a(tau) and log q_a(b | tau) of
        every particle under every component, each `[n, A]`; their sum is log q_a(tau, b).
        The branch lengths are drawn and scored in one compiled pass, and the draw uses the
        generator as `sample` does."""
        return self._draw_and_score(np.asarray(components, dtype=np.int64), None, generator)

    def _draw_and_score(
        self, components: np.ndarray, scored: np.ndarray | None, generator: torch.Generator | None
    ) -> tuple[Particles, torch.Tensor, torch.Tensor]:
        """`sample_and_score`, the scores under the sorted components `scored` only when
        given (they hold every drawing component)."""
        rows = components if scored is None else np.searchsorted(scored, components)
        topologies = self.sbn.sample(components, generator)
        edges = edge_features(topologies.tables)
        lengths, log_q_branches = self.branches.rsample_and_log_prob(edges, rows, scored, generator)
        particles = Particles(topologies.parents, topologies.tables, edges, lengths, components)
        log_q_topology = self.sbn.log_prob(topologies.tables, scored)
        return particles, log_q_topology.T, log_q_branches.T


class SubMixture:
    """The uniform mixture of some components of a Mixture, (1/S) sum_{j in I} q_j: a
    family of its own, whose component s is the parent's indices[s], drawing and scoring with
    the parent's parameters (gradients reach them). S2S weighs its particles against the
    drawn components' mixture; a split start trains the first component alone."""

    def __init__(self, parent: Mixture, indices: np.ndarray) -> None:
        self.parent = parent
        self.indices = np.sort(np.asarray(indices, dtype=np.int64))

    @property
    def n_components(self) -> int:
        return len(self.indices)

    def sample_and_score(
        self, components: np.ndarray, generator: torch.Generator | None = None
    ) -> tuple[Particles, torch.Tensor, torch.Tensor]:
        """Mixture.sample_and_score in this family's terms: `components` and the score
        columns `[n, S]` index its own components."""
        drawn = self.indices[np.asarray(components, dtype=np.int64)]
        return self.parent._draw_and_score(drawn, self.indices, generator)
