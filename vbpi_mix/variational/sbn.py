"""Subsplit Bayesian network over unrooted topologies (Zhang & Matsen 2018), stacked over A
mixture components.

    q(T_rooted) = q_root(S_root) * prod_v q(child subsplit of v | parent subsplit of v)
    q(tau)      = sum over the 2N-3 rootings of tau of q(T_rooted)

Parameters: one logit per root split `[A, R]` and one per conditional entry `[A, M]`;
probabilities are (masked) softmaxes computed from them when used, never cached. Scoring uses
the tables of vbpi_mix.trees.subsplits: only the families of the entries the batch reads
are normalised (vbpi_mix.variational.read_entries, compiled in .family_softmax), and one
compiled pass sums every tree's rootings in O(N) (vbpi_mix.variational.rooting_sums), for the
whole batch and every component.
"""

from __future__ import annotations

import threading
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from vbpi_mix.errors import stop_if_asked
from vbpi_mix.trees.subsplits import SubsplitIndex, TopologyTables, topology_tables
from vbpi_mix.variational.family_softmax import read_entry_log_probs
from vbpi_mix.variational.parameter_tables import component_rows
from vbpi_mix.variational.read_entries import read_entries
from vbpi_mix.variational.rooting_sums import rooting_log_sum
from vbpi_mix.variational.sbn_sampling import sample_parent_arrays

SBNInit = Literal["uniform", "counts"]


class SampledTopologies(NamedTuple):
    """Sampled trees as parent arrays `[n, 2N-3]` and their scoring tables."""

    parents: np.ndarray
    tables: TopologyTables


class SBN(nn.Module):
    """A stacked SBN: `log_prob` scores a batch under every component, `sample` draws from any."""

    def __init__(
        self,
        index: SubsplitIndex,
        n_components: int = 1,
        init: SBNInit = "uniform",
        perturbation: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.index = index
        root = torch.zeros(n_components, index.n_root_splits, dtype=torch.float64)
        entries = torch.zeros(n_components, index.n_entries, dtype=torch.float64)
        if init == "counts":
            root += torch.as_tensor(np.log(index.root_counts))
            entries += torch.as_tensor(np.log(index.entry_counts))
        elif init != "uniform":
            raise ValueError(f"unknown SBN initialisation {init!r}")
        if perturbation:
            root += perturbation * torch.randn(root.shape, generator=generator, dtype=root.dtype)
            entries += perturbation * torch.randn(
                entries.shape, generator=generator, dtype=entries.dtype
            )
        self.root_logits = nn.Parameter(root)
        self.entry_logits = nn.Parameter(entries)
        self.register_buffer("entry_parent", torch.as_tensor(index.entry_parent))
        self.n_parents = index.members.shape[0]

    @property
    def n_components(self) -> int:
        return self.root_logits.shape[0]

    def root_log_probs(self, components: np.ndarray | None = None) -> torch.Tensor:
        """log q_root `[A, R]` (or of the given components only)."""
        return torch.log_softmax(component_rows(self.root_logits, components), dim=-1)

    def tables(self, parents: np.ndarray) -> TopologyTables:
        """Scoring tables for parent arrays `[B, 2N-3]` (component-independent, reusable)."""
        return topology_tables(self.index, parents)

    def log_prob(
        self, topologies: TopologyTables | np.ndarray, components: np.ndarray | None = None
    ) -> torch.Tensor:
        """log q_a(tau) `[A, B]` for every component (or `[len(components), B]` for those
        given); -inf outside the support. Only the entry families the batch reads are
        normalised (vbpi_mix.variational.read_entries, .family_softmax)."""
        tables = topologies if isinstance(topologies, TopologyTables) else self.tables(topologies)
        read = read_entries(tables.candidate_ids, self.index.entry_parent, self.index.members)
        entries = read_entry_log_probs(component_rows(self.entry_logits, components), read)
        return rooting_log_sum(self.root_log_probs(components), entries, tables, read.remapped)

    @torch.no_grad()
    def mixture_log_prob(
        self, parents: np.ndarray, chunk: int = 2048, stop: threading.Event | None = None
    ) -> np.ndarray:
        """log q(tau) = log (1/A) sum_a q_a(tau) of the uniform mixture of the components,
        for parent arrays `[B, 2N-3]` scored `chunk` at a time; -inf outside the support.
        Setting `stop` ends it after the chunk under way (vbpi_mix.errors.Stopped)."""
        values = []
        for start in range(0, len(parents), chunk):
            values.append(torch.logsumexp(self.log_prob(parents[start : start + chunk]), 0))
            stop_if_asked(stop)
        return torch.cat(values).numpy() - np.log(self.n_components)

    @torch.no_grad()
    def sample(
        self, components: np.ndarray, generator: torch.Generator | None = None
    ) -> SampledTopologies:
        """One unrooted topology per entry of `components` (component indices `[n]`): parent
        arrays `[n, 2N-3]` ready for the likelihood kernel (not in canonical form) and the
        tables that score them under every component.

        Draw a root split, then split every clade given its parent subsplit down to the tips
        (compiled, `sbn_sampling`, from the logits of the families visited, not every
        component's whole support normalised first); the root
        split's internal side becomes the trifurcating root.
        """
        index, n = self.index, self.index.n_taxa
        components = np.asarray(components, dtype=np.int64)
        root_cumulative = self.root_log_probs().exp().cumsum(-1)
        uniforms = torch.rand((components.size, n - 1), generator=generator, dtype=torch.float64)
        parents = sample_parent_arrays(
            components, uniforms[:, 0].numpy(), uniforms[:, 1:].numpy(), root_cumulative.numpy(),
            self.entry_logits.detach().numpy(), index.members, index.entry_child,
            index.root_splits, index.clades, index.clade_slots, index.parent_keys,
            index.parent_slots, n,
        )  # fmt: skip
        return SampledTopologies(parents, self.tables(parents))
